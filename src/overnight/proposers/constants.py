"""Moves on `[[search]]` constants: reading and writing them in place, and the one-constant moves
of the Optuna proposer's walk around a head (docs/search.md)."""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from overnight.core.spec import SearchParam, constant_pattern
from overnight.proposers.base import FatalProposerError


def distribution(p: SearchParam) -> BaseDistribution:
    if p.choices is not None:
        return CategoricalDistribution(p.choices)
    assert p.low is not None and p.high is not None
    if p.int:
        step = int(p.step or 1)
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=1 if p.log else step)
    return FloatDistribution(p.low, p.high, log=p.log, step=None if p.log else p.step)


def literal(value: Any) -> str:
    """Python source for a value: a float in the fewest digits (6 at least) that read back as it, and
    stays a float (3.0, not 3). `snap` rounds proposed floats first, so they read as 6 digits mostly."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return repr(value)
    if isinstance(value, float):
        s = f"{value:.6g}"
        for digits in range(7, 18):
            if not math.isfinite(value) or float(s) == value:
                break
            s = f"{value:.{digits}g}"
        return s if any(c in s for c in ".eEn") else s + ".0"
    return repr(value)


def read_constant(path: Path, name: str) -> Any:
    m = constant_pattern(name).search(path.read_text())
    if m is None:
        raise FatalProposerError(f"{path}: no top-level line `{name} = <value>` to tune")
    try:
        return ast.literal_eval(m.group("value").strip())
    except (ValueError, SyntaxError):
        return m.group("value").strip()


def write_constant(path: Path, name: str, value: Any) -> None:
    with open(path, newline="") as fh:  # as it is: a CRLF file stays CRLF, so the diff is the one line
        text = fh.read()
    new, n = constant_pattern(name).subn(lambda m: m.group("lhs") + literal(value) + m.group("tail"), text, count=1)
    if n != 1:
        raise FatalProposerError(f"{path}: no top-level line `{name} = <value>` to tune")
    with open(path, "w", newline="") as fh:
        fh.write(new)


def numeric(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def snap(p: SearchParam, value: float) -> int | float:
    """Into the box and onto the declared grid (ints: whole numbers)."""
    assert p.low is not None and p.high is not None
    value = min(max(value, p.low), p.high)
    if p.step and not p.log:  # the grid's top point, not `high` itself, when `high` is off the grid
        top = p.low + math.floor((p.high - p.low) / p.step + 1e-9) * p.step
        value = min(p.low + round((value - p.low) / p.step) * p.step, top)
    return int(round(value)) if p.int else _short(p, float(value))


def _short(p: SearchParam, value: float) -> float:
    """`value` in the fewest digits (6 at least) that keep it in the box and within a millionth of the
    box's width of it: readable, never rounded out of the box, and distinct values stay distinct."""
    assert p.low is not None and p.high is not None
    width = math.log(p.high / p.low) if p.log else p.high - p.low
    for digits in range(6, 18):
        r = float(f"{value:.{digits}g}")
        off = abs(math.log(r / value)) if p.log and r > 0 and value > 0 else abs(r - value)
        if p.low <= r <= p.high and off <= 1e-6 * width:
            return r
    return value


def moves(params: list[SearchParam], current: dict[str, Any], ring: int = 0) -> list[tuple[str, Any]]:
    """One-constant moves around the head on one ring: every other choice of a categorical (ring 0
    only), x f and / f on a log scale (f = 2 on ring 0, its square root on each finer ring), a step
    each way on a linear one (a quarter of the range on ring 0, halved per ring, never below the
    grid step). Ups first, then downs: the code one starts from is usually near a better version,
    and each answer shows which knob matters."""
    up: list[tuple[str, Any]] = []
    down: list[tuple[str, Any]] = []
    for p in params:
        c = current.get(p.name)
        if p.choices is not None:
            if ring == 0:
                others = [x for x in p.choices if x != c]
                up += [(p.name, x) for x in others[:1]]
                down += [(p.name, x) for x in others[1:]]
            continue
        if not numeric(c):
            continue
        assert p.low is not None and p.high is not None
        if p.log:
            f = 2.0 ** (1 / 2**ring)
            hi, lo = c * f, c / f
        else:
            step = max((p.high - p.low) / 4 / 2**ring, p.step or 0.0, 1.0 if p.int else 0.0)
            hi, lo = c + step, c - step
        if p.int:
            hi, lo = max(hi, int(c) + 1), min(lo, int(c) - 1)
        for value, side in ((hi, up), (lo, down)):
            v = snap(p, value)
            if v != c:
                side.append((p.name, v))
    return up + down


@dataclass
class Move:
    point: dict[str, Any]
    name: str
    ring: int
    sign: str  # "+", "-" or "=<choice>": the kind of move, whose last outcome orders the walk
    vertex: str = ""  # the head's key when the move is a parabola's bottom


def kind_of(old: Any, new: Any) -> str:
    """The kind of a one-constant move: up or down for numbers, the new choice for a categorical."""
    if numeric(old) and numeric(new):
        return "+" if new > old else "-"
    return f"={literal(new)}"


