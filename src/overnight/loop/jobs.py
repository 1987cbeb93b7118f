"""Small shared pieces of the loop: its errors, the job an experiment is while it runs, slot views."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from overnight.judge.diff import lines_delta

__all__ = ["IDEA_LEASE_SECONDS", "MAX_CONSECUTIVE_ERRORS", "MAX_RETRIES", "Interrupted", "Job", "LoopError",
           "SlotView", "lines_delta"]

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

    `baseline` and shared `head` jobs (slot None) measure a commit `need` times on any slots and
    hold candidates back; a slot `head` job measures the head on its slot; a `candidate` job holds
    one slot, runs the candidate (and the head beside it when the judge asks) until decided;
    a `replicate` job runs the old and the new head in turn on one slot after a keep.
    """

    exp: Any  # the experiment row (ledger data)
    kind: str  # baseline | head | candidate | replicate
    need: int = 1
    slot: int | None = None  # the slot it is bound to; None: any
    values: list[float] = field(default_factory=list)
    by_slot: list[tuple[int, float]] = field(default_factory=list)  # measuring runs: (slot, value)
    head_exp: Any = None  # candidate: the head it is compared with; replicate: the head it replaced
    head_gen: int = 0  # the head tracker's generation when it started (a keep elsewhere bumps it)
    head_values: list[float] = field(default_factory=list)  # that head's runs on the job's slot, oldest first
    head_first: int = 0  # len(head_values) when the candidate's first run started
    head_next: int = 0  # head runs to make on the slot before the next candidate run
    redecide: bool = False  # decide again after those head runs (the judge asked for them)
    old_values: list[float] = field(default_factory=list)  # replicate: fresh runs of the replaced head
    last_out: Any = None  # the candidate's last run outcome (decided on after a head run beside it)
    next_index: int = 0  # the next run's index (seed and folder)
    launched: int = 0  # runs started by this job
    running: dict[int, int] = field(default_factory=dict)  # slot index -> run id
    interrupted: bool = False

    @property
    def bracketed(self) -> bool:
        """The head was measured beside the candidate after its first run."""
        return len(self.head_values) > self.head_first


@dataclass
class SlotView:
    """One slot as the live view and `overnight status` show it."""

    index: int
    label: str
    exp_id: int | None = None
    description: str = ""
    run: int = 0
    run_started: float | None = None
