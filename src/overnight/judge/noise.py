"""The noise-aware keep rule: a candidate is kept only when it beats the head by more than luck.

Design (also in docs/integrity.md):

* **Noise floor.** Seed-to-seed noise is a property of the track on a platform, not of one
  candidate, so the policy pools the within-experiment variance of every series it has seen
  (the head's runs and each decided candidate's runs) into one estimate `sigma` with many
  degrees of freedom. With only K=3 head runs, Welch's test has about 2 degrees of freedom and
  cannot reach useful power; the pooled estimate is the documented equivalent. Welch's p-value
  is still computed and recorded (`welch_p`) for the reader.
* **Test.** One-sided Student t on the improvement `d = head_mean - cand_mean` (sign flipped
  when maximizing) against the margin `min_effect`: t = (d - margin) / (sigma*sqrt(1/nh + 1/nc)).
* **Sequential design without peeking inflation.** The candidate is run at most `max_runs`
  times. Efficacy (keep) is allowed only at a few planned looks, and the alpha spent at those
  looks sums to `alpha` (Bonferroni spending: P(any look falsely keeps) <= sum of the spent
  alphas, whatever the correlation between looks). All other looks may only stop for futility
  (discard), which can never raise the false-keep rate.
* **min_effect.** Default: 0.05 * sigma (a twentieth of the seed noise: smaller gains cannot be
  told from luck at these run counts, and a margin protects against keeping them). A number in the spec overrides it.
* **Simplicity.** Within the noise band (improvement below min_effect) removing code wins:
  a candidate with lines_delta < 0 is tested against margin 0, one that adds code against
  min_effect. A null edit is therefore never kept with probability above alpha.
* **Lucky seeds.** Runs with different seeds that do not vary like the noise floor (identical
  values, or a chi-square lower-tail p < 0.001) mean the candidate ignores OVERNIGHT_SEED:
  its runs measure one fixed draw, so it is discarded with that reason.
"""

from __future__ import annotations

import math
from statistics import fmean

from scipy import special as sp  # the plain t/chi2 functions: scipy.stats' wrappers cost ~1 ms a call

from overnight.core.spec import Spec
from overnight.judge.policy import Verdict

LUCKY_SEED_P = 0.001  # chi-square lower tail below this: the runs ignore their seeds
FUTILITY_T = (-1.0, -0.5)  # discard at run 1 below the first value, later below the second
MIN_EFFECT_SIGMAS = 0.05  # default margin, in units of the noise floor


def _ss(values: list[float]) -> float:
    m = fmean(values)
    return sum((v - m) ** 2 for v in values)


def efficacy_looks(max_runs: int, alpha: float) -> dict[int, float]:
    """Run counts at which a keep is allowed and the alpha spent there (sums to `alpha`)."""
    if max_runs <= 2:
        return {max_runs: alpha}
    # One early look with a fifth of alpha lets clear wins stop at 2 runs; the rest at the cap
    # (tuned with `overnight bench noise`: power and overhead both meet their targets).
    return {2: alpha / 5, max_runs: alpha - alpha / 5}


class NoisePolicy:
    """Keep only on a one-sided test against the pooled noise floor, with a capped sequential design."""

    name = "noise"

    def __init__(self, spec: Spec):
        p = spec.policy
        self.spec = spec
        self.alpha = p.alpha
        self.baseline_runs = p.baseline_runs
        self.max_runs = p.max_runs
        self.min_effect = p.min_effect
        self.simplicity = p.simplicity
        self.looks = efficacy_looks(self.max_runs, self.alpha)
        self._pool_ss = 0.0  # within-series sum of squares of decided series
        self._pool_df = 0
        self._heads: set[tuple[float, ...]] = set()

    # --- noise floor ------------------------------------------------------------------------------
    def _absorb(self, values: list[float]) -> None:
        if len(values) > 1:
            self._pool_ss += _ss(values)
            self._pool_df += len(values) - 1

    def noise_floor(self, head: list[float], candidate: list[float]) -> tuple[float, int]:
        """(sigma, degrees of freedom) pooled over history, the head and this candidate."""
        ss, df = self._pool_ss, self._pool_df
        if tuple(head) not in self._heads:
            ss, df = ss + (_ss(head) if len(head) > 1 else 0.0), df + max(0, len(head) - 1)
        if len(candidate) > 1:
            ss, df = ss + _ss(candidate), df + len(candidate) - 1
        return (math.sqrt(ss / df) if df else 0.0), df

    def _done(self, verdict: Verdict, head: list[float], candidate: list[float]) -> Verdict:
        if verdict.action != "more":  # a decided series joins the pooled noise floor
            if tuple(head) not in self._heads:
                self._heads.add(tuple(head))
                self._absorb(head)
            self._absorb(candidate)
        return verdict

    # --- decision ---------------------------------------------------------------------------------
    def decide(self, head: list[float], candidate: list[float], *, lines_delta: int = 0) -> Verdict:
        return self._done(self._decide(head, candidate, lines_delta), head, candidate)

    def _decide(self, head: list[float], candidate: list[float], lines_delta: int) -> Verdict:
        name = self.spec.metric.name
        nh, nc = len(head), len(candidate)
        hm, cm = fmean(head), fmean(candidate)
        sign = 1.0 if self.spec.minimize else -1.0
        d = sign * (hm - cm)  # the improvement: positive is better, in either direction
        sigma, df = self.noise_floor(head, candidate)
        min_effect = self.min_effect if self.min_effect is not None else MIN_EFFECT_SIGMAS * sigma
        margin = 0.0 if (self.simplicity and lines_delta < 0) else min_effect
        stats: dict[str, float] = {"n": nc, "head_n": nh, "head_mean": hm, "candidate_mean": cm,
                                   "delta": cm - hm, "improvement": d, "sigma": sigma, "df": df,
                                   "min_effect": min_effect, "margin": margin}
        desc = f"{name} {cm:.6g} vs head {hm:.6g} over {nc} run(s)"
        if sigma == 0.0 or df == 0:
            return self._deterministic(d, margin, desc, stats, nc)
        if head_var_positive(head) and nc >= 2 and _ignores_seed(candidate, sigma):
            return Verdict("discard", f"runs with different seeds do not vary ({desc}): the candidate "
                           "ignores OVERNIGHT_SEED, so its result is one lucky or unlucky draw", stats)
        se = sigma * math.sqrt(1 / nh + 1 / nc)
        t = (d - margin) / se
        p = float(sp.stdtr(df, -t))  # upper tail of Student t with df degrees of freedom
        q = float(sp.stdtrit(df, 1 - self.alpha))
        # Two-sided (1 - 2 alpha) interval on delta = cand - head: its near end is the one-sided bound.
        delta = cm - hm
        stats.update(t=t, p_value=p, ci_low=delta - q * se, ci_high=delta + q * se)
        welch = _welch(head, candidate, sign) if nh > 1 and nc > 1 else math.nan
        if not math.isnan(welch):  # recorded for the reader; the decision uses the pooled noise floor
            stats["welch_p"] = welch
        level = self.looks.get(nc)
        if level is not None and p < level:
            why = "removes code, " if margin < min_effect else ""
            return Verdict("keep", f"{desc}: better by {d:.4g} ({why}p={p:.3g} < {level:.3g}, "
                           f"noise sigma {sigma:.3g})", stats)
        if nc >= self.max_runs:
            return Verdict("discard", f"{desc}: not better beyond noise (p={p:.3g}, improvement {d:.4g}, "
                           f"needs > {margin:.3g} at level {level or self.alpha:.3g})", stats)
        if t < FUTILITY_T[0 if nc == 1 else 1]:
            return Verdict("discard", f"{desc}: not better than the head (improvement {d:.4g}, "
                           f"noise sigma {sigma:.3g}); stopped early for futility", stats)
        return Verdict("more", f"{desc}: p={p:.3g}, confirming with a fresh seed", stats)

    def _deterministic(self, d: float, margin: float, desc: str, stats: dict[str, float], nc: int) -> Verdict:
        """No measurable noise yet: one more run when possible, else compare exactly."""
        if nc < min(2, self.max_runs):
            return Verdict("more", f"{desc}: no noise estimate yet, running again", stats)
        stats.update(p_value=0.0 if d > margin else 1.0)
        if d > margin:
            return Verdict("keep", f"{desc}: better by {d:.4g}; the metric does not vary with the seed", stats)
        return Verdict("discard", f"{desc}: not better by more than {margin:.3g}", stats)


def head_var_positive(head: list[float]) -> bool:
    return len(head) > 1 and len(set(head)) > 1


def _ignores_seed(candidate: list[float], sigma: float) -> bool:
    if len(set(candidate)) == 1:
        return True  # identical values from different seeds
    if len(candidate) < 3:
        return False
    ratio = _ss(candidate) / sigma**2  # ~ chi2(n-1) when the candidate varies like the noise floor
    return float(sp.chdtr(len(candidate) - 1, ratio)) < LUCKY_SEED_P


def _welch(head: list[float], candidate: list[float], sign: float) -> float:
    """One-sided Welch p-value that the candidate is better (Welch-Satterthwaite degrees of freedom)."""
    nh, nc = len(head), len(candidate)
    vh, vc = _ss(head) / (nh - 1) / nh, _ss(candidate) / (nc - 1) / nc
    if vh + vc == 0:
        return math.nan
    t = sign * (fmean(head) - fmean(candidate)) / math.sqrt(vh + vc)
    df = (vh + vc) ** 2 / ((vh**2 / (nh - 1) if vh else 0.0) + (vc**2 / (nc - 1) if vc else 0.0))
    return float(sp.stdtr(df, -t))
