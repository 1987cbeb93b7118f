"""The head tracker: the kept commit the loop builds on, and its runs per slot on this platform.

A contemporaneous judge gets fresh head runs on every slot (after each keep, after a restart, and
every `refresh_every` candidate runs on the slot), so a candidate is compared with the head as the
slot is now; a judge that is not (greedy) reuses one list of values, as autoresearch does.
Plain data: the scheduler asks what a slot needs and reports what ran; nothing here does I/O.
"""

from __future__ import annotations

from statistics import fmean
from typing import Any

from overnight.judge.verdict import Policy

SHARED = -1  # the slot key of a judge that measures the head once for all slots


class HeadTracker:
    def __init__(self, policy: Policy):
        self.policy = policy
        self.exp: Any = None  # the head's experiment row (ledger data, read only here)
        self.generation = 0  # bumps on every head change: keys the judge's noise series
        self.runs: dict[int, list[float]] = {}  # slot -> the current head's values there, oldest first
        self.since: dict[int, int] = {}  # slot -> candidate runs there since its last head run
        self.total = 0  # head runs of this head recorded in this session, on all slots

    @property
    def contemporaneous(self) -> bool:
        return bool(getattr(self.policy, "contemporaneous", False))

    def _key(self, slot: int) -> int:
        return slot if self.contemporaneous else SHARED

    def reset(self, exp: Any, values: list[float] | None = None) -> None:
        """A new head; `values`: runs of it to reuse (ignored by a contemporaneous judge, which measures afresh)."""
        self.exp = exp
        self.generation += 1
        self.runs, self.since, self.total = {}, {}, 0
        if values and not self.contemporaneous:
            self.runs[SHARED] = list(values)
            self._observe(SHARED)

    def needs(self, slot: int) -> int:
        """Head runs `slot` must make before its next candidate run."""
        have = len(self.runs.get(self._key(slot), []))
        if have < self.policy.baseline_runs:
            return self.policy.baseline_runs - have
        every = getattr(self.policy, "refresh_every", None)
        if self.contemporaneous and every and self.since.get(slot, 0) >= every:
            return 1
        return 0

    def record(self, slot: int, value: float) -> None:
        key = self._key(slot)
        self.runs.setdefault(key, []).append(value)
        self.since[slot] = 0
        self.total += 1
        self._observe(key)

    def _observe(self, key: int) -> None:
        observe = getattr(self.policy, "observe_head", None)
        if observe is not None:
            observe((self.generation, key), self.runs[key])

    def ran_candidate(self, slot: int) -> None:
        self.since[slot] = self.since.get(slot, 0) + 1

    def count(self, slot: int) -> int:
        """Head runs recorded on `slot` so far (a candidate notes it at its first run: later ones bracket it)."""
        return len(self.runs.get(self._key(slot), []))

    def reference(self, slot: int) -> list[float]:
        """The head's values a candidate on `slot` is compared with: its latest `reference_runs` there."""
        n = getattr(self.policy, "reference_runs", self.policy.baseline_runs)
        return list(self.runs.get(self._key(slot), [])[-n:])

    def values(self) -> list[float]:
        return [v for vs in self.runs.values() for v in vs]

    @property
    def metric(self) -> float | None:
        """The head's value now: the mean of its fresh runs, else its recorded metric."""
        vs = self.values()
        return fmean(vs) if vs else (self.exp.metric if self.exp is not None else None)
