"""The pieces every simulated night of `overnight bench search` shares: its result, its noise, its judge."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from overnight.core.status import Status
from overnight.judge.policy import Policy


@dataclass
class Night:
    truth: float
    runs: int
    experiments: int
    solved_at: int | None = None  # experiments (baseline included) until the head was optimal
    rejected: int = 0
    operators: dict[str, int] = field(default_factory=dict)  # proposals per operator


class Noise:
    def __init__(self, f: Callable[[Any], float], sigma: float, rng: random.Random):
        self.f, self.sigma, self.rng, self.runs = f, sigma, rng, 0

    def __call__(self, x: Any) -> float:
        self.runs += 1
        return self.f(x) + self.rng.gauss(0.0, self.sigma)


def judge(policy: Policy, head: list[float], run: Callable[[], float | None], lines_delta: int = 0
          ) -> tuple[str, list[float]]:
    """The loop's decision for one candidate: runs until the policy stops asking for more."""
    status, values, _ = judged(policy, head, run, lines_delta)
    return status, values


def judged(policy: Policy, head: list[float], run: Callable[[], float | None], lines_delta: int = 0
           ) -> tuple[str, list[float], dict[str, Any]]:
    """`judge`, with the statistics of the last verdict (improvement, sigma) that the operators read."""
    values: list[float] = []
    while True:
        v = run()
        if v is None:
            return Status.CRASH, values, {}
        values.append(v)
        verdict = policy.decide(head, values, lines_delta=lines_delta)
        if verdict.action != "more":
            return verdict.action, values, dict(verdict.stats)
