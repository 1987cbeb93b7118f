"""The loop: propose, commit, check, run, evaluate, decide, record (parts: session, worktrees, head,
intake, scheduler, recorder; the judge is `overnight.judge`)."""

from overnight.loop.jobs import (
           IDEA_LEASE_SECONDS,
           MAX_CONSECUTIVE_ERRORS,
           Interrupted,
           LoopError,
           lines_delta,
)
from overnight.loop.loop import Loop
from overnight.loop.recorder import LoopState
from overnight.loop.session import Limits

__all__ = ["IDEA_LEASE_SECONDS", "MAX_CONSECUTIVE_ERRORS", "Interrupted", "Limits", "Loop", "LoopError", "LoopState",
           "lines_delta"]
