"""The verdict: rank contestants' final heads from interleaved, seed-blocked re-measurements.

Round r measures every head once with seed r, in a shuffled order, so drift and the seed's
own effect fall on all contestants alike; pairs are compared by a paired t test on the
per-round differences, Holm-corrected over all pairs. Plain data in, plain data out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from itertools import combinations
from statistics import fmean, stdev

from scipy import stats as st


@dataclass
class Pair:
    better: str
    worse: str
    delta: float  # how much better, in metric units (positive)
    p: float  # two-sided paired p-value, before correction
    p_holm: float
    significant: bool


@dataclass
class Verdict:
    alpha: float
    means: dict[str, float]
    rounds: int
    order: list[str]  # best first, by mean
    pairs: list[Pair] = field(default_factory=list)
    winner: str | None = None  # beats every other contestant beyond noise, or None

    def beats(self, a: str, b: str) -> bool:
        return any(p.significant and p.better == a and p.worse == b for p in self.pairs)

    def lines(self, metric: str) -> list[str]:
        out = [f"{i + 1}. {c}: {metric} {self.means[c]:.6g}" for i, c in enumerate(self.order)]
        for p in self.pairs:
            word = "beats" if p.significant else "is not distinguishable from"
            out.append(f"{p.better} {word} {p.worse}: Δ {p.delta:.4g}, p {p.p:.3g} (Holm {p.p_holm:.3g})")
        out.append(f"winner at alpha {self.alpha:g}: {self.winner}" if self.winner
                   else f"no contestant beats all others beyond noise at alpha {self.alpha:g}")
        return out


def paired_p(a: list[float], b: list[float]) -> float:
    """Two-sided p of a paired t test on a - b; 1.0 when nothing can be said."""
    d = [x - y for x, y in zip(a, b, strict=True)]
    if len(d) < 2:
        return 1.0
    s = stdev(d)
    m = fmean(d)
    if s == 0:
        return 0.0 if m != 0 else 1.0
    t = m / (s / math.sqrt(len(d)))
    return float(2 * st.t.sf(abs(t), len(d) - 1))


def holm(ps: list[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order."""
    n = len(ps)
    order = sorted(range(n), key=lambda i: ps[i])
    adj = [1.0] * n
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (n - rank) * ps[i]))
        adj[i] = running
    return adj


def decide(values: dict[str, list[float]], minimize: bool, alpha: float = 0.05) -> Verdict:
    """`values[c][r]` is contestant c's head measured in round r (same r: same seed, adjacent in time)."""
    names = list(values)
    rounds = min((len(v) for v in values.values()), default=0)
    vals = {c: v[:rounds] for c, v in values.items()}
    means = {c: fmean(v) if v else math.nan for c, v in vals.items()}
    sign = 1.0 if minimize else -1.0
    order = sorted(names, key=lambda c: sign * means[c])
    raw = []
    for a, b in combinations(names, 2):
        better, worse = (a, b) if sign * means[a] <= sign * means[b] else (b, a)
        raw.append((better, worse, abs(means[a] - means[b]), paired_p(vals[a], vals[b])))
    adjusted = holm([r[3] for r in raw])
    pairs = [Pair(b, w, d, p, ph, ph < alpha and d > 0) for (b, w, d, p), ph in zip(raw, adjusted, strict=True)]
    verdict = Verdict(alpha=alpha, means=means, rounds=rounds, order=order, pairs=pairs)
    if order and len(names) > 1 and all(verdict.beats(order[0], c) for c in order[1:]):
        verdict.winner = order[0]
    elif len(names) == 1:
        verdict.winner = names[0]
    return verdict
