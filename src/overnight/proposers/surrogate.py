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
from dataclasses import dataclass

import numpy as np

FULL_POINTS = 1.5  # points per coefficient before cross terms are fitted
NEAR = 3.0  # points per coefficient the model is fitted on: the ones nearest the head
MIN_POINTS = 1.0  # ... and at least this many per coefficient, or no model
REACH = 1.5  # on each axis the step stays within this many times the fitted points' spread there
MISFIT = 0.5  # the predicted gain must exceed this many residual sds of the fit (chosen with bench search)
SAMPLES = 2048  # points of the trust region tried when the model's bottom lies outside it


def model_minimum(points: list[list[float]], values: list[float], head: list[float],
                  seed: int = 0) -> tuple[list[float], float] | None:
    """(where the fitted quadratic is lowest near the head, its predicted gain over the head) in
    the unit box; None when the points pin down no curved axis or the model sees no gain."""
    d = len(head)
    x, y, h = np.asarray(points, float).reshape(-1, d), np.asarray(values, float), np.asarray(head, float)
    ok = np.isfinite(y) & np.all(np.isfinite(x), axis=1)
    x, y = x[ok], y[ok]
    if d == 0 or len(y) < 3 or not np.all(np.isfinite(h)):
        return None
    try:
        return _minimum(x, y, h, seed)
    except np.linalg.LinAlgError:
        return None  # a degenerate fit proposes nothing


@dataclass
class Model:
    """A fitted quadratic b.x + x.Q.x/2 (+ a constant) over the curved axes; `reach`: the step's bound per axis."""

    b: np.ndarray
    q: np.ndarray
    curved: list[int]
    reach: np.ndarray
    misfit: float  # the residual sd of the fit: noise plus what a quadratic cannot follow

    def value(self, x: np.ndarray) -> np.ndarray:
        """The model at each row of `x` (up to its constant)."""
        return x @ self.b + 0.5 * np.einsum("ij,jk,ik->i", x, self.q, x)


def _minimum(x: np.ndarray, y: np.ndarray, h: np.ndarray, seed: int) -> tuple[list[float], float] | None:
    model = _fit(x, y, h, full=True) or _fit(x, y, h, full=False)
    if model is None:
        return None
    c = model.curved
    lo, hi = np.maximum(0.0, h - model.reach), np.minimum(1.0, h + model.reach)
    best = h.copy()
    best[c] = np.linalg.solve(model.q[np.ix_(c, c)], -model.b[c])
    if np.any(best < lo) or np.any(best > hi):  # the bottom lies beyond the points: the best point near them
        trial = np.repeat(h[None, :], SAMPLES, axis=0)
        trial[:, c] = np.random.default_rng(seed).uniform(lo[c], hi[c], size=(SAMPLES, len(c)))
        trial = np.vstack([trial, np.clip(best, lo, hi)[None, :]])
        with np.errstate(all="ignore"):
            best = trial[int(np.argmin(model.value(trial)))]
    with np.errstate(all="ignore"):
        gain = float(model.value(h[None, :])[0] - model.value(best[None, :])[0])
    if not (gain > MISFIT * model.misfit and np.all(np.isfinite(best))):
        return None  # a gain within the fit's own scatter is no evidence of a better point
    return [float(v) for v in best], gain


def _fit(x: np.ndarray, y: np.ndarray, h: np.ndarray, full: bool) -> Model | None:
    """Least squares on the points nearest the head, or None when there are too few points, the fit
    is not pinned down, or it is no bowl. Without cross terms, an axis curved the wrong way is held at
    the head (fitted as linear) and the rest refitted."""
    d = len(h)
    order = np.argsort(np.linalg.norm(x - h, axis=1), kind="stable")
    curved, linear = _axes(x[order])
    n = _coefficients(curved, linear, full)
    if not curved or len(y) < (FULL_POINTS if full else MIN_POINTS) * n:
        return None
    near = order[: int(NEAR * n)]
    x, y = x[near], y[near]
    curved, linear = _axes(x)
    while curved and not (full and len(curved) < 2):
        cross = list(itertools.combinations(curved, 2)) if full else []
        cols = ([np.ones(len(x))] + [x[:, i] for i in curved + linear] + [x[:, i] ** 2 for i in curved]
                + [x[:, i] * x[:, j] for i, j in cross])
        a = np.column_stack(cols)
        with np.errstate(all="ignore"):  # values from hostile runs may overflow: then there is no model
            coef, _, rank, _ = np.linalg.lstsq(a, y, rcond=None)
        if rank < a.shape[1] or not np.all(np.isfinite(coef)):
            return None
        b, q = np.zeros(d), np.zeros((d, d))
        b[curved] = coef[1:1 + len(curved)]
        quad = coef[1 + len(curved) + len(linear):1 + 2 * len(curved) + len(linear)]
        q[curved, curved] = 2 * quad
        for c, (i, j) in zip(coef[1 + 2 * len(curved) + len(linear):], cross, strict=True):
            q[i, j] = q[j, i] = c
        if np.all(np.linalg.eigvalsh(q[np.ix_(curved, curved)]) > 0):
            dof = len(y) - a.shape[1]
            misfit = float(np.sqrt(np.sum((a @ coef - y) ** 2) / dof)) if dof > 0 else 0.0
            return Model(b, q, curved, REACH * np.max(np.abs(x - h), axis=0), misfit)
        if full:
            return None
        wrong = [i for i, a2 in zip(curved, quad, strict=True) if a2 <= 0]
        curved, linear = [i for i in curved if i not in wrong], linear + wrong
    return None


def _axes(x: np.ndarray) -> tuple[list[int], list[int]]:
    """Axes with three distinct values or more (curved, moved), and with two (linear, held at the head)."""
    distinct = [len(np.unique(np.round(x[:, i], 9))) for i in range(x.shape[1])]
    return [i for i, k in enumerate(distinct) if k >= 3], [i for i, k in enumerate(distinct) if k == 2]


def _coefficients(curved: list[int], linear: list[int], full: bool) -> int:
    k = len(curved)
    return 1 + 2 * k + len(linear) + (k * (k - 1) // 2 if full else 0)
