"""Plain statistics on lists of metric values, shared by the judge, `overnight status` and the benches."""

from __future__ import annotations

import math
from collections.abc import Iterable

from scipy import special as sp  # the plain t/chi2 functions: scipy.stats' wrappers cost ~1 ms a call


def ss(values: list[float]) -> float:
    """Sum of squared deviations from the mean, from deviations to the first value: equal values give
    exactly 0 (a rounded mean gave 1e-32, a noise floor of 1e-16 that made a deterministic metric look noisy)."""
    if not values:
        return 0.0
    x0 = values[0]
    d = [v - x0 for v in values]
    return max(0.0, sum(x * x for x in d) - sum(d) ** 2 / len(d))


def pooled_sd(series: Iterable[list[float]]) -> tuple[float, int]:
    """(sd, degrees of freedom) pooled over the within-series spread of each series of >= 2 values."""
    total, df = 0.0, 0
    for values in series:
        if len(values) > 1:
            total += ss(values)
            df += len(values) - 1
    return (math.sqrt(total / df) if df else 0.0), df


def t_upper(df: float, t: float) -> float:
    """P(T > t) for Student t with `df` degrees of freedom."""
    return float(sp.stdtr(df, -t))


def t_quantile(df: float, q: float) -> float:
    return float(sp.stdtrit(df, q))


def chi2_lower(df: float, x: float) -> float:
    """P(X < x) for chi-square with `df` degrees of freedom."""
    return float(sp.chdtr(df, x))


def chi2_upper(df: float, x: float) -> float:
    """P(X > x) for chi-square with `df` degrees of freedom."""
    return float(sp.chdtrc(df, x))


def chi2_lower_quantile(df: float, q: float) -> float:
    """x with P(X < x) = q for chi-square with `df` degrees of freedom."""
    return float(sp.chdtri(df, 1.0 - q))


def f_lower_quantile(df1: float, df2: float, q: float) -> float:
    """x with P(F < x) = q for the F distribution with (df1, df2) degrees of freedom."""
    return float(sp.fdtri(df1, df2, q))


def f_upper(df1: float, df2: float, x: float) -> float:
    """P(F > x) for the F distribution with (df1, df2) degrees of freedom."""
    return float(sp.fdtrc(df1, df2, x))


def welch_df(v1: float, n1: float, v2: float, n2: float) -> float:
    """Welch-Satterthwaite degrees of freedom of v1 + v2, estimated with n1 and n2 degrees of freedom."""
    den = (v1 * v1 / n1 if v1 and n1 else 0.0) + (v2 * v2 / n2 if v2 and n2 else 0.0)
    return (v1 + v2) ** 2 / den if den else math.inf
