"""How a verifier judges one claim, with the project's one judge (`overnight.judge.make_policy`).

* **p < 0.01 for everyone.** Each claim gets a fresh noise-aware policy at alpha <= VERIFY_ALPHA, so no
  earlier submission shapes its noise model (the pooled floor holds only this claim's head runs, measured
  by the verifier, and its own re-runs). A trusted contributor's claim is decided within fewer re-runs
  (`TRUSTED_MAX_RUNS`) at the same alpha: trust saves runs and costs power, never the false-accept rate.
* **A false claim** is a reject whose re-runs contradict the claim: the claimed improvement exceeds the
  verified one by more than the noise of both measurements allows at one-sided level VERIFY_ALPHA. A true
  gain missed within noise is a reject that costs no trust.
"""

from __future__ import annotations

import math
from statistics import fmean
from typing import Any

from scipy import special as sp

from overnight.core.spec import Spec
from overnight.judge.policy import Policy, Verdict, make_policy

VERIFY_ALPHA = 0.01  # entering a shared chain takes the records' standard (p < 0.01), stricter than a local keep
TRUSTED_MAX_RUNS = 3  # a trusted contributor's claim: at most this many re-runs, same alpha
MIN_HEAD_RUNS = 3  # the verifier's own head measurement, whatever the track's baseline_runs
MAX_ABS_METRIC = 1e15  # larger or non-finite values are not measurements (JSON- and arithmetic-safe)


def verification_policy(spec: Spec, trusted: bool = False) -> Policy:
    """A fresh noise-aware rule for one claim, whatever rule the track uses locally."""
    p = spec.policy
    update: dict[str, Any] = {"rule": "noise", "alpha": min(p.alpha, VERIFY_ALPHA),
                              "baseline_runs": max(p.baseline_runs, MIN_HEAD_RUNS),
                              "max_runs": max(2, min(p.max_runs, TRUSTED_MAX_RUNS) if trusted else p.max_runs)}
    return make_policy(spec.model_copy(update={"policy": p.model_copy(update=update)}))


def sane(value: float | None) -> bool:
    return value is not None and math.isfinite(value) and abs(value) <= MAX_ABS_METRIC


def settled(verdict: Verdict) -> bool:
    return verdict.action != "more"


def claimed_improvement(sub: dict[str, Any], spec: Spec, head_mean: float) -> float:
    """What the contributor claims to gain, positive = better (its own head measurement when it sent one)."""
    if sub.get("claimed_head") is not None:
        return float(sub.get("claimed_gain") or 0.0)
    d = head_mean - float(sub["claimed_metric"])
    return d if spec.minimize else -d


def false_claim(verdict: Verdict, spec: Spec, sub: dict[str, Any], values: list[float], head: list[float]) -> bool:
    """True when the re-runs contradict the claim beyond both measurements' noise (one-sided, VERIFY_ALPHA)."""
    hm, cm = fmean(head), fmean(values)
    verified = hm - cm if spec.minimize else cm - hm
    claimed = claimed_improvement(sub, spec, hm)
    sigma, df = float(verdict.stats.get("sigma", 0.0)), float(verdict.stats.get("df", 0.0))
    if not (sigma > 0 and df > 0 and math.isfinite(sigma)):
        return claimed > verified + 1e-9 * max(1.0, abs(verified))  # no noise: compare exactly
    n_claim = max(1, len(sub.get("claimed_runs") or []))
    n_head = MIN_HEAD_RUNS if sub.get("claimed_head") is not None else 0  # the contributor's head runs: unknown
    var = 1 / len(values) + 1 / len(head) + 1 / n_claim + (1 / n_head if n_head else 0.0)
    t = (claimed - verified) / (sigma * math.sqrt(var))
    return t > float(sp.stdtrit(df, 1 - VERIFY_ALPHA))


def outcome(verdict: Verdict, values: list[float], head: list[float], spec: Spec, sub: dict[str, Any]
            ) -> dict[str, Any]:
    """The report for a finished re-run series (accept or reject, with the evidence)."""
    mean, hmean = fmean(values), fmean(head)
    gain = hmean - mean if spec.minimize else mean - hmean
    result = {"metric": mean, "head_metric": hmean, "gain": gain, "runs": values, "head_runs": head,
              "stats": {k: float(v) for k, v in verdict.stats.items() if math.isfinite(float(v))}}
    if verdict.action == "keep":
        return {**result, "outcome": "accept", "reason": verdict.reason}
    lied = false_claim(verdict, spec, sub, values, head)
    claimed = sub.get("claimed_metric")
    why = ("the re-runs contradict the claim" if lied else
           "within noise of the claim: not counted against the contributor")
    return {**result, "outcome": "reject", "false_claim": lied,
            "reason": f"claimed {spec.metric.name} {claimed:.6g}, re-measured {mean:.6g} over "
                      f"{len(values)} run(s) ({why}): {verdict.reason}"}
