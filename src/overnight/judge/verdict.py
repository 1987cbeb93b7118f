"""What a judge says about a candidate, and the protocol every keep rule follows (no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

Action = Literal["keep", "discard", "more", "head"]


@dataclass
class Verdict:
    """`more`: run the candidate again; `head`: measure the head once beside it first (same slot)."""

    action: Action
    reason: str
    stats: dict[str, float] = field(default_factory=dict)


class Policy(Protocol):
    name: str
    baseline_runs: int
    contemporaneous: bool  # the loop measures the head afresh beside candidates (per slot, on a schedule)
    refresh_every: int | None  # candidate runs on a slot between two head runs there; None: never

    def decide(self, head: list[float], candidate: list[float], *, lines_delta: int = 0,
               bracketed: bool = True) -> Verdict:
        """`head` and `candidate` are the metric values of their finished runs on this platform;
        `bracketed`: `head` holds a run taken after the candidate's first run (on its slot)."""
        ...

    def observe_head(self, key: object, values: list[float]) -> None:
        """A series of the head's own runs (one commit, one slot): the only input of the noise model."""
        ...
