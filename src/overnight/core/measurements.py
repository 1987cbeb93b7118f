"""Measurements: `name: <float>` lines in a run's or evaluator's output."""

from __future__ import annotations

import math
import re

# One line each: blanks are spaces and tabs only (a `\s` that spans lines made hostile output of blank
# lines take quadratic time, and let a metric's name and value sit on different lines); `\d+\.?\d*` could split
# a long run of digits every way, quadratic too, so the number's parts are unambiguous.
LINE_RE = re.compile(
    r"^[ \t]*(?P<name>[A-Za-z_][\w./-]*)[ \t]*:[ \t]*(?P<value>[-+]?(?:\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf|infinity))[ \t\r]*$",
    re.IGNORECASE | re.MULTILINE | re.ASCII,
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


# Control characters (NUL, terminal escapes, C1) and the surrogates Python uses for bytes that were not
# UTF-8: a database refuses them, a terminal obeys them. CR becomes a newline (a progress bar's redraw).
_UNSAFE = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)] if c not in (0x09, 0x0A)}
_UNSAFE |= {c: f"\\x{c - 0xDC00:02x}" for c in range(0xDC80, 0xDD00)}  # os.fsdecode's escapes: the raw byte
_UNSAFE |= {c: f"\\u{c:04x}" for c in range(0xD800, 0xE000) if c not in _UNSAFE}
_UNSAFE[0x0D] = "\n"


def printable(text: str) -> str:
    """Hostile text (output, file names) made safe to store and show: unsafe characters spelled `\\xNN`."""
    return text.replace("\r\n", "\n").translate(_UNSAFE)

