"""Small shared pieces of the loop: its errors, the job an experiment is while it runs, slot views."""

from __future__ import annotations

from dataclasses import dataclass, field

from overnight.storage.ledger import Experiment

MAX_CONSECUTIVE_ERRORS = 5
IDEA_LEASE_SECONDS = 3600
MAX_RETRIES = 2  # re-queues of a candidate whose keep lost the race to another keep


class LoopError(Exception):
    """The loop cannot start or go on; the message says why and what to do."""


class Interrupted(Exception):
    pass


@dataclass
class Job:
    """An experiment on one or more slots until decided.

    `baseline` and `head` jobs measure a commit `need` times and may spread over
    several slots; a `candidate` job holds one slot and runs until the policy decides.
    """

    exp: Experiment
    kind: str  # baseline | head | candidate
    need: int = 1
    values: list[float] = field(default_factory=list)
    head_values: list[float] = field(default_factory=list)
    next_index: int = 0  # the next run's index (seed and folder)
    launched: int = 0  # runs started by this job
    running: dict[int, int] = field(default_factory=dict)  # slot index -> run id
    failed: str = ""  # why a measuring run failed
    interrupted: bool = False


@dataclass
class SlotView:
    """One slot as the live view and `overnight status` show it."""

    index: int
    label: str
    exp_id: int | None = None
    description: str = ""
    run: int = 0
    run_started: float | None = None


def lines_delta(diff: str) -> int:
    added = sum(1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
    return added - removed
