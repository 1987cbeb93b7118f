"""BOINC-style adaptive trust: consecutive verified claims raise it, one false claim resets it."""

from __future__ import annotations

TRUSTED_STREAK = 5  # after this many verified claims in a row, claims get the short confirmation check
CONFIRM_RUNS = 2  # a trusted contributor's claim may be settled after this many re-runs, never 0
CONFIRM_P = 0.05  # ... when those re-runs alone support it this strongly; otherwise it gets the full check


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


def trusted(streak: int) -> bool:
    return streak >= TRUSTED_STREAK


def confirmed(streak: int, runs: int, stats: dict[str, float]) -> bool:
    """Adaptive replication: a trusted contributor's claim is accepted early when its first re-runs
    already support it strongly; anything less gets the full check, so trust saves runs, never rigour."""
    return (trusted(streak) and runs >= CONFIRM_RUNS and stats.get("improvement", 0.0) > 0
            and stats.get("p_value", 1.0) < CONFIRM_P)
