"""BOINC-style adaptive trust: consecutive verified claims raise it, one false claim resets it."""

from __future__ import annotations

TRUSTED_STREAK = 5  # after this many verified claims in a row, tiny claims may get a single re-run


def trust(streak: int) -> float:
    """0.5 for a newcomer, approaching 1 with each verified claim in a row."""
    return 1.0 - 0.5 ** (max(streak, 0) + 1)


def priority(claimed_gain: float, streak: int) -> float:
    """Queue order: the most promising claim from the most trusted contributor first."""
    return max(claimed_gain, 0.0) * trust(streak)


def tier(platform: dict) -> str:
    """The platform tier used to split leaderboards: the accelerator model, or the CPU class."""
    if platform.get("gpu"):
        return f"{platform.get('gpu_count', 1)}x {platform['gpu']}"[:200]
    return f"cpu {platform.get('machine', '?')}"[:200]
