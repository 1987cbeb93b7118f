"""Measurements: `name: <float>` lines in a run's or evaluator's output."""

from __future__ import annotations

import math
import re

LINE_RE = re.compile(
    r"^\s*(?P<name>[A-Za-z_][\w./-]*)\s*:\s*(?P<value>[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity))\s*$",
    re.IGNORECASE | re.MULTILINE,
)

MAX_MAGNITUDE = 1e15  # beyond any real metric; squares and sums of such values stay finite floats
OOM_MARKERS = ("MemoryError", "CUDA out of memory", "OutOfMemoryError", "out of memory", "Killed process")


def parse(text: str) -> dict[str, float]:
    """Every `name: number` line; a later line for the same name wins (the last one counts)."""
    found: dict[str, float] = {}
    for m in LINE_RE.finditer(text):
        found[m.group("name")] = float(m.group("value"))
    return found


def finite(value: float | None) -> bool:
    """A usable metric value: a number, not NaN or infinite, and of a sane magnitude (1e200 overflows the stats)."""
    return value is not None and math.isfinite(value) and abs(value) <= MAX_MAGNITUDE


def looks_like_oom(tail: str) -> bool:
    return any(marker in tail for marker in OOM_MARKERS)


def traceback_tail(text: str, lines: int = 15) -> str:
    """The last traceback in the output if there is one, else the last lines."""
    idx = text.rfind("Traceback (most recent call last)")
    chunk = text[idx:] if idx >= 0 else text
    return "\n".join(chunk.strip().splitlines()[-lines:])
