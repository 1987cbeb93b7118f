"""What every executor shares: slots, run jobs, the executor protocol (no executor imports another)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from overnight.execution.runner import RunOutcome

Done = Callable[[RunOutcome], None]


@dataclass
class Slot:
    """One place a run can happen: its own worktree, GPU and/or core set."""

    index: int
    label: str
    env: dict[str, str] = field(default_factory=dict)  # e.g. CUDA_VISIBLE_DEVICES
    cores: list[int] | None = None
    worktree: Path | None = None
    busy: bool = False
    commit: str | None = None  # what its worktree has checked out


@dataclass
class RunJob:
    workdir: Path
    run_dir: Path
    seed: int
    token: str


class Executor(Protocol):
    name: str
    slots: list[Slot]
    requeued: int

    def submit(self, slot: Slot, job: RunJob, done: Done) -> None:
        """Start the run in the background; `done(outcome)` is called exactly once."""
        ...

    def platform(self) -> dict | None:
        """The fingerprint of where runs happen (None: the driver's own)."""
        ...

    def close(self) -> None: ...
