"""The keep rules by name: `make_policy(spec)` gives the track's; greedy and the 2-sd floor are the
rules overnight is measured against (`overnight bench noise`).

The loop asks after every finished run; a rule that wants more evidence says `more` and the loop
runs the candidate again with a fresh seed (or `head`: measure the head beside it first).
"""

from __future__ import annotations

from statistics import fmean

from overnight.core.spec import Spec
from overnight.judge.noise import NoisePolicy
from overnight.judge.stats import pooled_sd
from overnight.judge.verdict import Policy, Verdict

__all__ = ["GreedyPolicy", "NoisePolicy", "Policy", "TwoSigmaPolicy", "Verdict", "make_policy"]


class GreedyPolicy:
    """autoresearch's rule: keep when one run is strictly better than the head's mean."""

    name = "greedy"
    baseline_runs = 1
    contemporaneous = False
    refresh_every = None

    def __init__(self, spec: Spec):
        self.spec = spec

    def observe_head(self, key: object, values: list[float]) -> None:
        pass  # no noise model

    def decide(self, head: list[float], candidate: list[float], *, lines_delta: int = 0,
               bracketed: bool = True) -> Verdict:
        h, c = fmean(head), fmean(candidate)
        stats = {"delta": c - h, "head_mean": h, "candidate_mean": c}
        if self.spec.better(c, h):
            return Verdict("keep", f"{self.spec.metric.name} {c:.6g} beats head {h:.6g}", stats)
        return Verdict("discard", f"{self.spec.metric.name} {c:.6g} does not beat head {h:.6g}", stats)


class TwoSigmaPolicy(GreedyPolicy):
    """The noise-floor rule proposed to autoresearch: one run, kept when better by more than 2 sd of
    the baseline's runs (a comparator for the benches, not a track setting)."""

    name = "floor"
    baseline_runs = 3

    def __init__(self, spec: Spec):
        super().__init__(spec)
        self.sd: float | None = None

    def observe_head(self, key: object, values: list[float]) -> None:
        if self.sd is None and len(values) >= self.baseline_runs:
            self.sd = pooled_sd([values])[0]  # measured once, on the baseline

    def decide(self, head: list[float], candidate: list[float], *, lines_delta: int = 0,
               bracketed: bool = True) -> Verdict:
        v = super().decide(head, candidate)
        d = (fmean(head) - fmean(candidate)) * (1 if self.spec.minimize else -1)
        if v.action == "keep" and d < 2 * (self.sd or 0.0):
            return Verdict("discard", f"{v.reason}, but by less than 2 sd ({self.sd:.3g})", v.stats)
        return v


def make_policy(spec: Spec) -> Policy:
    if spec.policy.rule == "greedy":
        return GreedyPolicy(spec)
    return NoisePolicy(spec)
