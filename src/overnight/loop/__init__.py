"""The loop: propose, commit, check, run, evaluate, decide, record."""

from overnight.loop.loop import (
    IDEA_LEASE_SECONDS,
    MAX_CONSECUTIVE_ERRORS,
    Interrupted,
    Limits,
    Loop,
    LoopError,
    LoopState,
    lines_delta,
)

__all__ = ["IDEA_LEASE_SECONDS", "MAX_CONSECUTIVE_ERRORS", "Interrupted", "Limits", "Loop", "LoopError", "LoopState", "lines_delta"]
