"""The policy: keep, discard, or run the candidate again before deciding.

The loop asks after every finished run; a policy that wants more evidence says
`more` and the loop runs the candidate again with a fresh seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import fmean
from typing import Literal, Protocol

from overnight.core.spec import Spec


@dataclass
class Verdict:
    action: Literal["keep", "discard", "more"]
    reason: str
    stats: dict[str, float] = field(default_factory=dict)


class Policy(Protocol):
    name: str
    baseline_runs: int

    def decide(self, head: list[float], candidate: list[float], *, lines_delta: int = 0) -> Verdict:
        """`head` and `candidate` are the metric values of their finished runs on this platform."""
        ...


class GreedyPolicy:
    """autoresearch's rule: keep when one run is strictly better than the head's mean."""

    name = "greedy"
    baseline_runs = 1

    def __init__(self, spec: Spec):
        self.spec = spec

    def decide(self, head: list[float], candidate: list[float], *, lines_delta: int = 0) -> Verdict:
        h, c = fmean(head), fmean(candidate)
        delta = c - h
        stats = {"delta": delta, "head_mean": h, "candidate_mean": c}
        if self.spec.better(c, h):
            return Verdict("keep", f"{self.spec.metric.name} {c:.6g} beats head {h:.6g}", stats)
        return Verdict("discard", f"{self.spec.metric.name} {c:.6g} does not beat head {h:.6g}", stats)


def make_policy(spec: Spec) -> Policy:
    if spec.policy.rule == "greedy":
        return GreedyPolicy(spec)
    from overnight.judge.noise import NoisePolicy  # the noise-aware rule

    return NoisePolicy(spec)
