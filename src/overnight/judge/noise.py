"""The noise-aware keep rule: a candidate is kept only when it beats the head, measured beside it,
by more than luck. The design and its cost in runs are in docs/noise.md; in short:

* **Noise model from the head only.** sigma pools the within-series spread of the head's own runs
  (one series per head commit and slot, each counted once). No candidate's runs enter it, so a
  candidate (one that ignores its seed, say) cannot shrink the floor the next one is judged by.
* **Contemporaneous head.** The loop measures the head on each slot and again every
  `refresh_every` candidate runs there; a keep needs a head run taken after the candidate's first
  run on its slot (`bracketed`), else the verdict is `head`: measure it now, then decide.
* **Unequal noise.** The candidate's variance is its own when it is larger than the head's
  (Welch-Satterthwaite degrees of freedom), so a noisier candidate is not judged with the head's sigma.
* **Test.** One-sided Student t on the improvement against a margin, keeps only at planned looks
  whose alphas sum to alpha (Bonferroni spending); the other looks stop only for futility.
* **Seeds.** Runs with different seeds that vary far less than the head's (identical, or a
  chi-square lower tail below `SEED_P`) mean the candidate ignores OVERNIGHT_SEED: discarded.
* **Runs that ignore their seed are not independent draws** (`mean_var`): a series that varies less
  than the head counts as about one draw on either side of the test.
* **Replication** (`[policy] night_alpha`): a keep must reproduce on fresh runs of the old and the
  new head (`replicate`), and its fresh runs must follow their seeds, or the loop reverts it.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from statistics import fmean

from overnight.core.spec import Spec
from overnight.judge.diff import only_changes_seed
from overnight.judge.stats import (
    chi2_lower,
    chi2_lower_quantile,
    chi2_upper,
    f_lower_quantile,
    f_upper,
    ss,
    t_quantile,
    t_upper,
    welch_df,
)
from overnight.judge.verdict import Verdict

SERIES_SEED_P = 0.05  # a head series this far below the pool so far is left out of it
SEED_P = 0.001  # chi-square lower tail below this at any look: the runs ignore their seeds
JITTER_SD = 0.3  # a keep must show seed noise above this many head sigmas (pinned seeds with jitter stay below)
SEED_KEEP_P = 0.15  # ... at this level at every look; a win that fails it at max_runs gets more seeds,
SEED_RUNS = 2  # ... up to this many times max_runs runs in all, judged once, on its fresh runs alone (gain and spread):
# a pinned 4 sd lucky draw with JITTER_SD of jitter is kept 30 % of the time, an honest 3 sd win lost 1.3 %
# (at 0.3, discarded at max_runs: 43 % and 2.2 %; 4000 draws each, tests/test_noise.py's seed-check tests)
NOISIER_P = 0.2  # F-test upper tail below this: the candidate's own variance, not the head's
FUTILITY_T = (-0.5, -0.5)  # discard for futility below this t (it can only lower the false-keep rate)
SEED_JITTER = 1e-6  # runs closer than this (relative) ignore their seeds, up to clock jitter
MIN_EFFECT_SIGMAS = 0.05  # default margin, in units of the noise floor
MIN_KEEP_DF = 10  # a keep waits for a noise floor this well known (the loop measures the head more)
MIN_KEEP_RUNS = 3  # the first look at which a keep is allowed: the seed check needs 3 runs to see jitter
REFRESH_EVERY = 2  # candidate runs on a slot between two scheduled head runs there
NIGHT_CANDIDATES = 100  # the night size night_alpha is spread over (docs/noise.md)
NIGHT_MARGIN = 0.5  # ... and half of it only: a noisier candidate's first stage sits at alpha itself (the bench)
REPLICATION_RUNS = 8  # fresh runs of each head (old and new) that a keep must reproduce on
REPLICATION_SEED_P = 0.001  # at replication, the fresh runs must reject "sd <= JITTER_SD sigma" at this level (F test)
REPLICATION_MAX_RUNS = 16  # ... more fresh pairs, up to this many, while that check is unsure
PINNED_P = 0.01  # fresh runs whose spread is below the head's at this lower tail are pinned: reverted at once
LUCK_SIGMAS = 6.0  # a gain this many sigmas is no lucky seed (one in 1e9): the seed checks may then scale with |mean|
DEFICIT_Q = 0.05  # a series' spread is taken at this upper confidence bound before it counts as "below the head's"


def efficacy_looks(max_runs: int, alpha: float, first: int = 2) -> dict[int, float]:
    """Run counts at which a keep is allowed and the alpha spent there (sums to `alpha`)."""
    first = min(first, max_runs)
    if max_runs <= first:
        return {max_runs: alpha}
    # One early look with half of alpha lets clear wins stop early; the rest at the cap
    # (tuned with `overnight bench noise`: power and overhead both meet their targets).
    return {first: alpha / 2, max_runs: alpha - alpha / 2}


class NoisePolicy:
    """The judge: guards aside, the keep rule and the noise model, on plain lists of values."""

    name = "noise"
    contemporaneous = True

    def __init__(self, spec: Spec):
        p = spec.policy
        self.spec = spec
        self.alpha = p.alpha
        self.baseline_runs = p.baseline_runs
        self.max_runs = p.max_runs
        self.min_effect = p.min_effect
        self.simplicity = p.simplicity
        self.night_alpha: float | None = getattr(p, "night_alpha", None)
        self.min_keep_runs = min(MIN_KEEP_RUNS, self.max_runs)
        self.looks = efficacy_looks(self.max_runs, self.alpha, self.min_keep_runs)
        self.refresh_every: int | None = REFRESH_EVERY
        self.reference_runs = 4 * self.baseline_runs  # a slot's latest head runs a candidate is compared with
        self.replication_alpha = (min(0.5, NIGHT_MARGIN * self.night_alpha / (NIGHT_CANDIDATES * self.alpha))
                                  if self.night_alpha else None)
        self._series: dict[Hashable, list[float]] = {}
        self._explicit = False  # a caller feeds head series itself (the loop's head tracker)

    # --- noise model ------------------------------------------------------------------------------
    def observe_head(self, key: object, values: list[float]) -> None:
        """The head's runs of one commit on one slot (replaces that key's earlier series)."""
        self._explicit = True
        self._series[key] = list(values)

    def noise_floor(self, head: list[float] | None = None) -> tuple[float, int]:
        """(sigma, df) over the head series seen; `head` counts when it is not one of them already.

        A series that varies far less than the ones before it comes from a head that ignores its seed
        (a pinned seed that got kept): it says nothing about seed noise and is left out."""
        series = list(self._series.values())
        if head and not any(_contains(s, head) for s in series):
            series.append(list(head))
        total, df = 0.0, 0
        for values in series:
            if len(values) < 2:
                continue
            s2 = ss(values)
            if df >= 2 and total > 0 and chi2_lower(len(values) - 1, s2 / (total / df)) < SERIES_SEED_P:
                continue
            total, df = total + s2, df + len(values) - 1
        return (math.sqrt(total / df) if df else 0.0), df

    def false_keep_bound(self) -> float:
        """What one decision adds to the night's expected false keeps (alpha, times replication's)."""
        return self.alpha * (self.replication_alpha or 1.0)

    def screen(self, diff: str) -> str | None:
        """Why a candidate is discarded from its diff alone, before any run (None: run it)."""
        if only_changes_seed(diff):
            return ("the change only sets a different random seed (a fixed seed also ignores OVERNIGHT_SEED): "
                    "its result is another draw of the same noise, not an improvement")
        return None

    def baseline_note(self, values: list[float]) -> str | None:
        """One line for the user when the baseline's runs do not follow OVERNIGHT_SEED."""
        if len(values) < 2:
            return None
        spread, scale = max(values) - min(values), max(abs(v) for v in values)
        if spread > SEED_JITTER * max(scale, 1e-300):
            return None
        return (f"warning: the baseline's {len(values)} runs with different OVERNIGHT_SEED gave the same "
                f"{self.spec.metric.name} (spread {spread:.3g}): seed every random generator from "
                "OVERNIGHT_SEED (e.g. torch.manual_seed(int(os.environ['OVERNIGHT_SEED']))), or the noise floor "
                "is not measured (ignore this if the metric has no randomness)")

    # --- decision ---------------------------------------------------------------------------------
    def decide(self, head: list[float], candidate: list[float], *, lines_delta: int = 0,
               bracketed: bool = True) -> Verdict:
        name = self.spec.metric.name
        nh, nc = len(head), len(candidate)
        hm, cm = fmean(head), fmean(candidate)
        sign = 1.0 if self.spec.minimize else -1.0
        d = sign * (hm - cm)  # the improvement: positive is better, in either direction
        if not self._explicit and head and not any(_contains(s, head) for s in self._series.values()):
            self._series[("head", tuple(head))] = list(head)  # plain lists (the hub): each head counted once
        sigma, df = self.noise_floor(head)
        min_effect = self.min_effect if self.min_effect is not None else MIN_EFFECT_SIGMAS * sigma
        margin = 0.0 if (self.simplicity and lines_delta < 0) else min_effect
        stats: dict[str, float] = {"n": nc, "head_n": nh, "head_mean": hm, "candidate_mean": cm,
                                   "delta": cm - hm, "improvement": d, "sigma": sigma, "df": df,
                                   "min_effect": min_effect, "margin": margin, "alpha": self.false_keep_bound()}
        desc = f"{name} {cm:.6g} vs head {hm:.6g} over {nc} run(s)"
        if sigma == 0.0 or df == 0:
            return self._deterministic(d, margin, desc, stats, nc)
        cvar = ss(candidate) / (nc - 1) if nc > 1 else 0.0
        seed_sd = sigma * _scale(cm, hm, d / sigma)  # the seed noise to expect at the candidate's level
        if nc >= 2 and (cvar == 0.0 or chi2_lower(nc - 1, cvar * (nc - 1) / seed_sd**2) < SEED_P):
            stats["candidate_sd"] = math.sqrt(cvar)
            return Verdict("discard", f"runs with different seeds do not vary like the head's ({desc}, sd "
                           f"{math.sqrt(cvar):.3g} vs {sigma:.3g}): the candidate ignores OVERNIGHT_SEED, so its "
                           "result is one lucky or unlucky draw", stats)
        t, p, tdf, se = self._test(d - margin, head, candidate, sigma, df)
        q = t_quantile(tdf, 1 - self.alpha)
        delta = cm - hm  # two-sided (1 - 2 alpha) interval on delta: its near end is the one-sided bound
        stats.update(t=t, p_value=p, ci_low=delta - q * se, ci_high=delta + q * se, test_df=tdf,
                     candidate_sd=math.sqrt(cvar))
        level = self.looks.get(nc)
        seeds, spread = nc > self.max_runs, candidate  # more seeds for a win whose runs varied too little
        if seeds:
            m = self.max_runs
            level, first, fresh = self.looks[m], candidate[:m], candidate[m:]
            p = self._test(sign * (hm - fmean(first)) - margin, head, first, sigma, df)[1]  # the win still stands
            if nc >= SEED_RUNS * m:  # the stage's one look: its fresh runs alone must win and follow their seeds
                p = max(p, self._test(sign * (hm - fmean(fresh)) - margin, head, fresh, sigma, df)[1])
                spread = fresh
        if level is not None and p < level:
            if self._explicit and df < MIN_KEEP_DF:  # the loop can measure the head more: know sigma first
                return Verdict("head", f"{desc}: p={p:.3g}, measuring the head more before keeping (noise "
                               f"floor on {df} degrees of freedom, a keep needs {MIN_KEEP_DF})", stats)
            k = len(spread) - 1
            pinned = chi2_upper(k, ss(spread) / (JITTER_SD * seed_sd) ** 2) >= SEED_KEEP_P
            if (pinned or seeds) and nc < SEED_RUNS * self.max_runs:  # the more-seeds stage has one look, at its end
                return Verdict("more", f"{desc}: p={p:.3g}, but its runs vary less than the head's: more seeds", stats)
            if pinned:
                return Verdict("discard", f"{desc}: better (p={p:.3g}) only on runs that vary less than the "
                               f"head's (sd {math.sqrt(ss(spread) / k):.3g} vs {sigma:.3g}): the candidate seems to "
                               "ignore OVERNIGHT_SEED", stats)
            if not bracketed and self.contemporaneous:
                return Verdict("head", f"{desc}: p={p:.3g}, measuring the head beside it before keeping", stats)
            why = "removes code, " if margin < min_effect else ""
            return Verdict("keep", f"{desc}: better by {d:.4g} ({why}p={p:.3g} < {level:.3g}, "
                           f"noise sigma {sigma:.3g})", stats)
        if nc >= self.max_runs:
            draws = sigma**2 / mean_var(candidate, sigma**2, df)  # how many independent draws its runs are worth
            pinned = (f"; its runs vary less than the head's (sd {math.sqrt(cvar):.3g} vs {sigma:.3g}), so they count "
                      f"as {draws:.1f} draw(s), not {nc}: does it ignore OVERNIGHT_SEED?") if draws < nc / 2 else ""
            return Verdict("discard", f"{desc}: not better beyond noise (improvement {d:.4g} over a margin of "
                           f"{margin:.3g}: p={p:.3g}, needs < {level or self.alpha:.3g}){pinned}", stats)
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

    # --- replication ------------------------------------------------------------------------------
    def replicate(self, old: list[float], new: list[float]) -> Verdict:
        """A kept head against the head it replaced, both on fresh runs: `keep` (reproduced), `discard`
        (revert it) or `more` (another pair of runs). The new head's fresh runs must also follow their
        seeds (only fresh runs: the ones that got it kept were selected for passing that check)."""
        assert self.replication_alpha is not None
        n = min(len(old), len(new))
        stats: dict[str, float] = {"replication_n": n}
        if n < REPLICATION_RUNS:
            return Verdict("more", f"replicating on fresh runs ({n} of {REPLICATION_RUNS})", stats)
        old, new = old[:n], new[:n]
        sign = 1.0 if self.spec.minimize else -1.0
        first_old, first_new = old[:REPLICATION_RUNS], new[:REPLICATION_RUNS]  # the mean is tested once, here
        d = sign * (fmean(first_old) - fmean(first_new))
        sigma, df = self.noise_floor(old)  # the old head's fresh runs are head runs too
        stats.update(replication_improvement=d, sigma=sigma)
        if sigma == 0.0 or df == 0:
            p, seed = (0.0 if d > 0 else 1.0), "follows"
        else:
            p = self._replication_p(d, first_old, first_new, sigma, df)
            seed = self._replication_seeds(new, sigma * _scale(fmean(new), fmean(old), d / sigma), df)
        stats["replication_p"] = p
        what = f"fresh runs: new head better by {d:.4g} over {REPLICATION_RUNS} pair(s), p={p:.3g}"
        if p >= self.replication_alpha:
            return Verdict("discard", f"kept, then not reproduced on {what} (needs < {self.replication_alpha:.3g}): "
                           "reverted", stats)
        if n % 4 and n < REPLICATION_MAX_RUNS:  # the seed check looks every 4 pairs (each look spends its level)
            return Verdict("more", f"reproduced on {what}; more fresh runs to see whether they follow their seeds",
                           stats)
        if seed == "unsure" and n < REPLICATION_MAX_RUNS:
            return Verdict("more", f"reproduced on {what}; more fresh runs to see whether they follow their seeds",
                           stats)
        if seed != "follows":
            return Verdict("discard", f"kept, then its {n} fresh runs varied less than the head's noise (it seems to "
                           f"ignore OVERNIGHT_SEED; {what}): reverted", stats)
        return Verdict("keep", f"reproduced on {what} < {self.replication_alpha:.3g}", stats)

    def _replication_seeds(self, new: list[float], sigma: float, df: int) -> str:
        """`follows`: the fresh runs reject "sd <= JITTER_SD sigma" at REPLICATION_SEED_P; `pinned`: they vary
        clearly less than the head's (lower tail < PINNED_P); else `unsure` (more runs tell). F, not chi-square:
        sigma is an estimate too, and in the far tail its error matters."""
        n = len(new)
        ratio = ss(new) / (n - 1) / sigma**2
        if f_upper(n - 1, df, ratio / JITTER_SD**2) < REPLICATION_SEED_P:
            return "follows"
        return "pinned" if 1.0 - f_upper(n - 1, df, ratio) < PINNED_P else "unsure"

    def _replication_p(self, d: float, old: list[float], new: list[float], sigma: float, df: int) -> float:
        """One-sided p of the fresh runs' improvement. The new head is always allowed its own variance (no
        F pre-test: a noisier candidate that passed one by luck must not be judged with the head's sigma)."""
        n = len(new)
        s2 = ss(new) / (n - 1)
        vo = mean_var(old, sigma**2, df)
        vn = max(s2 / n, mean_var(new, sigma**2, df))
        tdf = welch_df(vo, df, vn, n - 1) if s2 > sigma**2 else df
        return t_upper(tdf, d / math.sqrt(vo + vn))

    def _test(self, d: float, head: list[float], candidate: list[float], sigma: float,
              df: int) -> tuple[float, float, float, float]:
        """(t, p, df, se) of the one-sided t test of improvement `d` over the head; a candidate that is
        noisier than the head (F test) is judged with its own variance, not the head's sigma."""
        nc = len(candidate)
        cvar = ss(candidate) / (nc - 1) if nc > 1 else 0.0
        noisier = nc > 1 and f_upper(nc - 1, df, cvar / sigma**2) < NOISIER_P
        vh = mean_var(head, sigma**2, df)
        vc = max(sigma**2, cvar) / nc if noisier else mean_var(candidate, sigma**2, df)
        tdf = welch_df(vh, df, vc, nc - 1) if noisier else df
        se = math.sqrt(vh + vc)
        return d / se, t_upper(tdf, d / se), tdf, se


def mean_var(values: list[float], sigma2: float, df: float = math.inf) -> float:
    """The variance of the mean of one commit's runs whose seed noise is sigma2 (the head's, on `df`).

    Runs that do not follow their seed are not independent draws: a series that varies less than the
    head, beyond both estimates' error (the upper DEFICIT_Q bound of its variance ratio to the head's, an
    F bound; chi-square when sigma2 is known), is taken as one shared draw of the missing variance plus
    the rest: sigma2/n + deficit x (1 - 1/n). A pinned seed then counts as about one run, however many
    times it ran; a series that varies like the head keeps sigma2/n."""
    n = len(values)
    if n < 2:
        return sigma2 / max(n, 1)
    ratio = ss(values) / (n - 1) / sigma2
    bound = chi2_lower_quantile(n - 1, DEFICIT_Q) / (n - 1) if math.isinf(df) else f_lower_quantile(n - 1, df, DEFICIT_Q)
    deficit = sigma2 * max(0.0, 1.0 - ratio / bound)
    return sigma2 / n + deficit * (1 - 1 / n)


def _scale(candidate_mean: float, head_mean: float, gain_sigmas: float) -> float:
    """How much smaller the candidate's seed noise may honestly be: noise often scales with the metric (a
    loss near its optimum varies less), so the seed checks allow a spread in proportion to |mean|, but only
    for a gain of LUCK_SIGMAS or more: no seed is that lucky, while a pinned lucky draw that moves a metric
    near zero would otherwise loosen its own check. The standard error never scales (`mean_var`)."""
    if head_mean == 0 or gain_sigmas < LUCK_SIGMAS:
        return 1.0
    return max(1e-9, min(1.0, abs(candidate_mean) / abs(head_mean)))


def _contains(series: list[float], values: list[float]) -> bool:
    """`values` is a prefix, a suffix or all of `series` (the same runs passed in again)."""
    n = len(values)
    return n <= len(series) and (series[:n] == values or series[-n:] == values)


def expected_false_keeps(stats: list[dict]) -> tuple[float, int]:
    """(the false keeps a night's decisions allow in expectation, how many decisions) from their stats:
    each decision by the noise rule records the false-keep rate it allows (`alpha`)."""
    bounds = [float(s["alpha"]) for s in stats if isinstance(s.get("alpha"), int | float)]
    return sum(bounds), len(bounds)
