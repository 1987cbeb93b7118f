"""The session: one `overnight run` from lock to release, with its stop flags and limits."""

from __future__ import annotations

import fcntl
import os
import threading
import time
from dataclasses import dataclass
from typing import IO

from overnight.loop.jobs import LoopError
from overnight.track import Track


@dataclass
class Limits:
    max_experiments: int | None = None
    hours: float | None = None


class Session:
    """Owns the track's lock, the stop/halt/proposer-stop events, the limits and the count of started experiments."""

    def __init__(self, track: Track, limits: Limits, stop: threading.Event):
        self.track, self.limits = track, limits
        self.stop = stop  # the user's stop (Ctrl-C)
        self.halt = threading.Event()  # stops the runs: the user's stop, or an error
        self.pstop = threading.Event()  # stops the proposer (ProposalContext.stop)
        self.started = 0  # experiments started or recorded: what --max-experiments counts
        self.deadline: float | None = None
        self._lock_file: IO[str] | None = None

    def acquire(self) -> None:
        self.track.ensure_state()
        f = open(self.track.paths.lock, "a+")  # noqa: SIM115 - held for the loop's lifetime
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            pid = f.read().strip() or "?"
            f.close()
            raise LoopError(f"another `overnight run` is active on {self.track.dir} (pid {pid})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def release(self) -> None:
        if self._lock_file:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def set_deadline(self) -> float | None:
        if self.limits.hours:
            self.deadline = time.time() + self.limits.hours * 3600
        return self.deadline

    def count(self) -> None:
        self.started += 1

    def remaining(self) -> int | None:
        """Experiments --max-experiments still allows (None: no limit)."""
        m = self.limits.max_experiments
        return None if m is None else m - self.started

    def may_start(self) -> bool:
        if self.stop.is_set() or self.halt.is_set():
            return False
        left = self.remaining()
        if left is not None and left <= 0:
            return False
        return not (self.deadline and time.time() >= self.deadline)
