"""A categorical choice may need its own scale: an optimizer its own learning rate, a norm its own
init. The walk tries each other choice at the head's values of the other constants; one that loses
there may still win at its own scale, which a one-constant move never reaches (docs/search.md)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from overnight.core.spec import SearchParam
from overnight.proposers.constants import literal, numeric, snap
from overnight.proposers.space import a_step

DECADES = 3  # a choice's own scale is looked for up to this many decades from the head's


def rescaled(params: list[SearchParam], head: dict[str, Any], values: dict[Any, float], tried: set[Any],
             key: Callable[[dict[str, Any]], Any]) -> list[tuple[float, str, dict[str, Any], str]]:
    """Line searches by decades along each log constant, one per other choice of each categorical,
    from that choice at the head's values towards its best measured value, ending at the bottom of
    the parabola through the bracket: (the line's best value so far, move name, point, sign), the
    most promising line first. A line starts with the choice at the head's values (its first point)."""
    out: list[tuple[float, str, dict[str, Any], str]] = []
    logs = [q for q in params if q.log and numeric(head.get(q.name))]
    for p in (p for p in params if p.choices is not None and p.name in head and logs):
        for c in (c for c in p.choices if c != head[p.name]):
            base = {**head, p.name: c}
            if key(base) not in values:
                if key(base) not in tried:
                    out.append((float("inf"), p.name, base, f"={literal(c)}"))
                continue
            for q in logs:
                line = {k: {**base, q.name: _at(q, head[q.name], k)} for k in range(-DECADES, DECADES + 1)}
                f = {k: values[key(x)] for k, x in line.items() if key(x) in values}
                best = min(f, key=lambda k: f[k])
                name, at = f"{p.name}={literal(c)}@{q.name}", line[best][q.name]
                k = bottom(f, best)
                if k is not None:  # the parabola's bottom on the log axis, at most a decade past the best
                    x = {**base, q.name: _at(q, head[q.name], k)}
                    if key(x) not in tried and a_step(q, x[q.name], at):
                        out.append((f[best], name, x, "+" if k > best else "-"))
                        continue
                    if values.get(key(x), float("inf")) < f[best]:
                        continue  # its bottom was measured and beat the line: done
                if best - 1 in f and best + 1 in f:
                    continue  # bracketed, its bottom measured: done
                for k in (-1, 1) if best == 0 else (best + (1 if best > 0 else -1),):
                    if k in line and key(line[k]) not in tried and line[k][q.name] != at:
                        out.append((f[best], name, line[k], "+" if k > 0 else "-"))
    return sorted(out, key=lambda m: m[0])


def bottom(f: dict[int, float], best: int) -> float | None:
    """The vertex of the parabola through the best decade and its two nearest measured ones, within a
    decade of the best (None: fewer than three points, or no upward curve). Bracketed, it lies between
    the best's neighbours; at the end of the line it may also lie between the best and the next one in."""
    near = sorted(f, key=lambda k: (abs(k - best), k))[:3]
    if len(near) < 3:
        return None
    (x1, y1), (x2, y2), (x3, y3) = ((k, f[k]) for k in near)
    denom = (x1 - x2) * (x1 - x3) * (x2 - x3)
    a = (x3 * (y2 - y1) + x2 * (y1 - y3) + x1 * (y3 - y2)) / denom
    b = (x3**2 * (y1 - y2) + x2**2 * (y3 - y1) + x1**2 * (y2 - y3)) / denom
    if a <= 0:
        return None if not (best - 1 in f and best + 1 in f) else float(best)
    return min(max(-b / (2 * a), best - 1.0), best + 1.0)


def _at(q: SearchParam, value: float, k: float) -> Any:
    """k line steps from `value` along a log axis: a decade, or a quarter of the box when it spans fewer
    than four decades (a decade's step leaves a narrow box at once: held-out intheavy 0.48 -> 0.37)."""
    assert q.low is not None and q.high is not None
    return snap(q, value * 10.0 ** (k * min(1.0, math.log10(q.high / q.low) / 4)))
