"""The `[[search]]` box as geometry: unit coordinates, the walk's finest step, and the points of a
finite box (every constant categorical, whole or on a step grid), so a small box is walked to its
end instead of re-sampled."""

from __future__ import annotations

import itertools
import math
from typing import Any

from overnight.core.spec import SearchParam

RINGS = 3  # finer rings after the first: linear steps /2, /4, /8; log factors 2**(1/2), 2**(1/4), 2**(1/8)
GRID_LIMIT = 100_000  # a finite box with more points than this is searched like a continuous one


def unit(p: SearchParam, v: float) -> float:
    """A numeric constant's value as a coordinate in [0, 1] (on its log axis when log-scaled)."""
    assert p.low is not None and p.high is not None
    ax = math.log if p.log else float
    lo, hi = ax(p.low), ax(p.high)
    return (ax(max(v, p.low)) - lo) / (hi - lo) if hi > lo else 0.0


def from_unit(p: SearchParam, u: float) -> float:
    assert p.low is not None and p.high is not None
    if p.log:
        return math.exp(math.log(p.low) + u * (math.log(p.high) - math.log(p.low)))
    return p.low + u * (p.high - p.low)


def a_step(p: SearchParam, new: float, old: float) -> bool:
    """`new` is at least the walk's finest ring away from `old`: a move finer than that is noise, not a step."""
    assert p.low is not None and p.high is not None
    if p.log:
        finest = math.log(2.0) / 2**RINGS / (math.log(p.high) - math.log(p.low))
    else:
        finest = max(1 / 4 / 2**RINGS, (p.step or (1.0 if p.int else 0.0)) / (p.high - p.low))
    return abs(unit(p, float(new)) - unit(p, float(old))) >= finest * (1 - 1e-9)


def axis(p: SearchParam) -> list[Any] | None:
    """Every value a constant may take, when there are finitely many (None: a continuous one)."""
    if p.choices is not None:
        return list(p.choices)
    assert p.low is not None and p.high is not None
    if p.int:
        step = 1 if p.log else int(p.step or 1)
        return list(range(int(p.low), int(p.high) + 1, step))
    if p.step and not p.log:
        n = math.floor((p.high - p.low) / p.step + 1e-9)
        return [float(f"{p.low + k * p.step:.12g}") for k in range(n + 1)]
    return None


def grid(params: list[SearchParam]) -> list[dict[str, Any]] | None:
    """Every point of a finite box, or None (a continuous constant, or more than GRID_LIMIT points)."""
    axes = [axis(p) for p in params]
    if any(a is None for a in axes) or math.prod(len(a) for a in axes if a is not None) > GRID_LIMIT:
        return None
    return [dict(zip((p.name for p in params), combo, strict=True)) for combo in itertools.product(*axes)]


def distance(params: list[SearchParam], a: dict[str, Any], b: dict[str, Any]) -> float:
    """Unit-coordinate distance (a categorical counts 1 when it differs)."""
    total = 0.0
    for p in params:
        x, y = a.get(p.name), b.get(p.name)
        if p.choices is not None or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (x, y)):
            total += float(x != y)
        else:
            total += (unit(p, float(x)) - unit(p, float(y))) ** 2  # type: ignore[arg-type]
    return math.sqrt(total)
