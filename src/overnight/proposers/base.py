"""The proposer seam: what a proposer is given and what it hands back."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from overnight.storage.ledger import Experiment, Idea
    from overnight.track import Track


class FatalProposerError(Exception):
    """The proposer cannot go on (bad credentials, missing tool): stop the loop, burn nothing."""


class StopProposing(Exception):
    """A clean stop asked by the proposer (e.g. the next proposal would exceed --max-cost)."""


@dataclass
class ProposalContext:
    track: Track
    tag: str
    workdir: Path  # the track folder inside the candidate's worktree: edit here
    parent_commit: str
    head_metric: float | None
    idea: Idea | None = None
    stop: threading.Event = field(default_factory=threading.Event)


@dataclass
class Proposal:
    description: str
    proposer: str
    error: str | None = None  # set when the proposer failed; the experiment is recorded as `error`
    transcript: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    operator: str = "improve"  # what it did to the research tree (proposers/operators.py)
    parent_id: int | None = None  # the node experiment it branched from; None: the head it was proposed on
    parent_commit: str | None = None  # the commit its edit started from when not the head (a draft)


class Proposer(Protocol):
    name: str

    def propose(self, ctx: ProposalContext) -> Proposal:
        """Edit files under ctx.workdir; the harness commits, checks and runs the result."""
        ...

    def observe(self, experiment: Experiment) -> None:
        """Learn from a finished experiment (the decision and metric are on it)."""
        ...

    def baseline(self, experiment: Experiment) -> None:
        """Told once about the finished baseline."""
        ...

    # Optional: `withdraw(meta)`, told when a proposal will never run (it conflicts with a new head),
    # with the `meta` it proposed; a proposer that tracks what it proposed lets it go (proposers/optuna.py).
