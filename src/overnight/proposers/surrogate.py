"""A local quadratic model of the measured points, and where it says the best value is.

The Optuna proposer's walk moves one constant at a time by fixed factors; near an optimum that
creeps, and every creeping step is a small gain the judge cannot tell from noise. A quadratic
fitted to the measured points nearest the head (least squares, in unit coordinates: log axes
for log constants) pools every run of the night into one estimate of where the bottom is, so
one move can land near the optimum with a gain large enough to be seen. It is the model step
of trust-region methods without derivatives (Powell's NEWUOA/BOBYQA): the step stays within the
spread of the points the model was fitted on, since a quadratic says little beyond them.

An axis is modelled only as far as the points pin it down: curved (and moved) with three
distinct values or more, linear (held at the head) with two. Cross terms are fitted when there
are enough points and kept only when the fit is a bowl; otherwise each axis is fitted on its
own. Plain numpy on plain lists; the proposer converts constants to and from unit coordinates.
"""

from __future__ import annotations

import itertools

import numpy as np

FULL_POINTS = 1.5  # points per coefficient before cross terms are fitted
NEAR = 3.0  # points per coefficient the model is fitted on: the ones nearest the head
MIN_POINTS = 1.0  # ... and at least this many per coefficient, or no model
REACH = 1.5  # on each axis the step stays within this many times the fitted points' spread there
SAMPLES = 2048  # points of the trust region tried when the model's bottom lies outside it


def model_minimum(points: list[list[float]], values: list[float], head: list[float],
                  seed: int = 0) -> tuple[list[float], float] | None:
    """(where the fitted quadratic is lowest near the head, its predicted gain over the head) in
    the unit box; None when the points pin down no curved axis or the model sees no gain."""
    d = len(head)
    x, y, h = np.asarray(points, float).reshape(-1, d), np.asarray(values, float), np.asarray(head, float)
    if d == 0 or len(y) < 3:
        return None
    for full in (True, False):
        fit = _fit(x, y, h, full)
        if fit is not None:
            break
    else:
        return None
    coef, curved, linear, cross, reach = fit
    q = np.zeros((d, d))  # the Hessian over the curved axes
    q[curved, curved] = 2 * coef[1 + len(curved) + len(linear):1 + 2 * len(curved) + len(linear)]
    for c, (i, j) in zip(coef[1 + 2 * len(curved) + len(linear):], cross, strict=True):
        q[i, j] = q[j, i] = c
    b = np.zeros(d)
    b[curved] = coef[1:1 + len(curved)]
    sub = np.ix_(curved, curved)
    lo, hi = np.maximum(0.0, h - reach), np.minimum(1.0, h + reach)
    best = h.copy()
    best[curved] = np.linalg.solve(q[sub], -b[curved])
    if np.any(best < lo) or np.any(best > hi):  # the bottom lies beyond the points: the best point near them
        rng = np.random.default_rng(seed)
        trial = np.repeat(h[None, :], SAMPLES, axis=0)
        trial[:, curved] = rng.uniform(lo[curved], hi[curved], size=(SAMPLES, len(curved)))
        trial = np.vstack([trial, np.clip(best, lo, hi)[None, :]])
        best = trial[int(np.argmin([_value(t, b, q) for t in trial]))]
    gain = _value(h, b, q) - _value(best, b, q)
    if not gain > 0:
        return None
    return [float(v) for v in best], float(gain)


def _value(x: np.ndarray, b: np.ndarray, q: np.ndarray) -> float:
    return float(b @ x + 0.5 * x @ q @ x)


def _fit(x: np.ndarray, y: np.ndarray, h: np.ndarray, full: bool):
    """Least squares on the points nearest the head: (coefficients, curved axes, linear axes, cross
    pairs, reach per axis), or None when there are too few points or the fit is not a bowl."""
    d = len(h)
    order = np.argsort(np.linalg.norm(x - h, axis=1), kind="stable")
    curved, linear, n_coef = _axes(x[order], d, full)
    if not curved or len(y) < MIN_POINTS * n_coef or (full and len(y) < FULL_POINTS * n_coef):
        return None
    near = order[: max(int(NEAR * n_coef), int(np.ceil(MIN_POINTS * n_coef)))]
    curved, linear, n_coef = _axes(x[near], d, full)
    cross = list(itertools.combinations(curved, 2)) if full else []
    if not curved or (full and not cross):
        return None
    xs = x[near]
    cols = ([np.ones(len(xs))] + [xs[:, i] for i in curved] + [xs[:, i] for i in linear]
            + [xs[:, i] ** 2 for i in curved] + [xs[:, i] * xs[:, j] for i, j in cross])
    a = np.column_stack(cols)
    coef, _, rank, _ = np.linalg.lstsq(a, y[near], rcond=None)
    if rank < a.shape[1]:
        return None
    quad = coef[1 + len(curved) + len(linear):1 + 2 * len(curved) + len(linear)]
    if not full:  # an axis curved the wrong way is held at the head, the rest refitted
        bowl = [i for i, c in zip(curved, quad, strict=True) if c > 0]
        if not bowl:
            return None
        if len(bowl) < len(curved):
            return _refit(x[near], y[near], h, bowl, linear + [i for i in curved if i not in bowl])
    else:
        q = np.zeros((len(curved), len(curved)))
        q[np.diag_indices(len(curved))] = 2 * quad
        for c, (i, j) in zip(coef[1 + 2 * len(curved) + len(linear):], cross, strict=True):
            a_, b_ = curved.index(i), curved.index(j)
            q[a_, b_] = q[b_, a_] = c
        if np.any(np.linalg.eigvalsh(q) <= 0):
            return None
    reach = REACH * np.max(np.abs(xs - h), axis=0)
    return coef, curved, linear, cross, reach


def _refit(x: np.ndarray, y: np.ndarray, h: np.ndarray, curved: list[int], linear: list[int]):
    cols = [np.ones(len(x))] + [x[:, i] for i in curved] + [x[:, i] for i in linear] + [x[:, i] ** 2 for i in curved]
    a = np.column_stack(cols)
    coef, _, rank, _ = np.linalg.lstsq(a, y, rcond=None)
    quad = coef[1 + len(curved) + len(linear):]
    if rank < a.shape[1] or np.any(quad <= 0):
        return None
    return coef, curved, linear, [], REACH * np.max(np.abs(x - h), axis=0)


def _axes(x: np.ndarray, d: int, full: bool) -> tuple[list[int], list[int], int]:
    """Axes with three distinct values or more (curved), two (linear); and the coefficient count."""
    distinct = [len(np.unique(np.round(x[:, i], 9))) for i in range(d)]
    curved = [i for i in range(d) if distinct[i] >= 3]
    linear = [i for i in range(d) if distinct[i] == 2]
    n = 1 + 2 * len(curved) + len(linear) + (len(curved) * (len(curved) - 1) // 2 if full else 0)
    return curved, linear, n
