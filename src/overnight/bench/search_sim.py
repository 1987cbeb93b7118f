"""The pieces every simulated night of `overnight bench search` shares: its result, its noise, its judge."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from statistics import fmean
from typing import Any

from overnight.core.status import Status
from overnight.judge.policy import Policy
from overnight.loop.head import HeadTracker


@dataclass
class Night:
    truth: float
    runs: int
    experiments: int
    solved_at: int | None = None  # experiments (baseline included) until the head was optimal
    rejected: int = 0
    operators: dict[str, int] = field(default_factory=dict)  # proposals per operator
    point: Any = None  # what the method ends with (an agent night's edits)


class Noise:
    def __init__(self, f: Callable[[Any], float], sigma: float, rng: random.Random):
        self.f, self.sigma, self.rng, self.runs = f, sigma, rng, 0

    def __call__(self, x: Any) -> float:
        self.runs += 1
        return self.f(x) + self.rng.gauss(0.0, self.sigma)



class SimLoop:
    """The loop's schedule of runs on one slot, with the real judge and the real head tracker
    (`loop/head.py`): the baseline's runs are the head's first, the head is measured afresh after
    a keep, again every `refresh_every` candidate runs, and beside a promising candidate when the
    judge asks (`head`: a keep waits for a noise floor it can trust). Every run, the head's too,
    goes through `noise`, so the compute a night used is `noise.runs`."""

    def __init__(self, policy: Policy, noise: Noise, point: Any):
        self.policy, self.noise, self.point = policy, noise, point
        self.kept: float | None = None  # the new head's recorded metric until its fresh runs land
        self.head = HeadTracker(policy)
        self.head.reset(point)
        for _ in range(policy.baseline_runs):
            self._head_run()

    def _head_run(self) -> None:
        self.head.record(0, self.noise(self.point))

    @property
    def metric(self) -> float:
        """The head's value now, as the loop reports it (the mean of its fresh runs, else its recorded one)."""
        vs = self.head.values()
        return fmean(vs) if vs else float(self.kept if self.kept is not None else "nan")

    def judged(self, run: Callable[[], float | None], lines_delta: int = 0) -> tuple[str, list[float], dict[str, Any]]:
        """One candidate until the judge decides: (status, its values, the last verdict's statistics)."""
        values: list[float] = []
        first = self.head.count(0)
        while True:
            while self.head.needs(0):
                self._head_run()
            v = run()
            self.head.ran_candidate(0)
            if v is None:
                return Status.CRASH, values, {}
            values.append(v)
            while True:
                verdict = self.policy.decide(self.head.reference(0), values, lines_delta=lines_delta,
                                             bracketed=self.head.count(0) > first)
                if verdict.action != "head":
                    break
                self._head_run()
            if verdict.action != "more":
                return verdict.action, values, dict(verdict.stats)

    def keep(self, point: Any, values: list[float]) -> None:
        """A new head: a contemporaneous judge measures it afresh, greedy reuses the runs that kept it."""
        self.point, self.kept = point, fmean(values)
        self.head.reset(point, values)
