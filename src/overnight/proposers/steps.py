"""Two one-constant steps of the Optuna proposer's walk (docs/search.md): the bottom of the parabola
through a bracket, and a kept step followed by one twice as long. Plain functions of the measured
points and the study's trials."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from optuna.trial import FrozenTrial

from overnight.core.spec import SearchParam
from overnight.core.status import Status
from overnight.proposers.constants import Move, kind_of, numeric, snap
from overnight.proposers.space import a_step

Key = Callable[[dict[str, Any]], tuple[str, ...]]


def vertex(head: dict[str, Any], p: SearchParam, values: dict[tuple[str, ...], float], key: Key,
           names: list[str]) -> Any | None:
    """When the head is measured better than its nearest measured neighbours on each side along
    one constant's axis (the log axis for a log constant), the bottom of the parabola through
    the three: the walk lands near that constant's best value in one move instead of creeping."""
    if p.choices is not None or not numeric(head.get(p.name)):
        return None
    assert p.low is not None and p.high is not None
    rest = key(head)
    f0 = values.get(rest)
    if f0 is None:
        return None
    ax = math.log if p.log else float
    x0, i = ax(head[p.name]), names.index(p.name)
    line = {}
    for k, f in values.items():  # measured points that differ from the head in this constant only
        if k[i] != rest[i] and k[:i] == rest[:i] and k[i + 1:] == rest[i + 1:]:
            try:
                line[ax(float(k[i]))] = f
            except ValueError:
                continue
    below = [q for q in line.items() if q[0] < x0]
    above = [q for q in line.items() if q[0] > x0]
    if not below or not above:
        return None
    (x1, f1), (x2, f2) = max(below), min(above)
    if f0 >= min(f1, f2):
        return None  # no bracket: the walk goes on the way that was better
    s1, s2 = (f1 - f0) / (x1 - x0), (f2 - f0) / (x2 - x0)
    curve = (s1 - s2) / (x1 - x2)
    xv = (x0 + x1) / 2 - s1 / (2 * curve)  # inside the bracket, since the head is below both
    v = snap(p, math.exp(xv) if p.log else xv)
    return v if a_step(p, v, head[p.name]) else None


def expanded(head: dict[str, Any], params: list[SearchParam], trials: Sequence[FrozenTrial], key: Key) -> Move | None:
    """The head was made by a one-constant step that was kept: the same step twice as long (squared
    on a log axis, at most a decade; twice the distance on a linear one, at most half the box), as a
    pattern search grows its step after a success."""
    hk = key(head)
    made = next((t for t in reversed(trials) if t.user_attrs.get("status") == Status.KEEP  # kept: told a value
                 and "from" in t.user_attrs and key(t.params) == hk), None)
    if made is None:
        return None
    a = made.user_attrs
    p = next((q for q in params if q.name == a["move"]), None)
    if p is None or p.choices is not None:
        return None
    old, now = float(a["from"]), float(head[p.name])
    if p.log:
        if old <= 0 or now <= 0:
            return None
        r = now / old
        v = now * (min(r * r, 10.0) if r > 1 else max(r * r, 0.1))
    else:
        assert p.low is not None and p.high is not None
        half = (p.high - p.low) / 2
        v = now + max(min(2 * (now - old), half), -half)
    v = snap(p, v)
    if not a_step(p, v, now):
        return None
    return Move({**head, p.name: v}, p.name, 0, kind_of(now, v))
