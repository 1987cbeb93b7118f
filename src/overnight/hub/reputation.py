"""BOINC-style adaptive trust: consecutive verified claims raise it, a false claim resets it.

A false claim is one the verifier's re-runs contradict (see `judging.false_claim`); a true gain that the
re-runs could not confirm within noise leaves the streak as it was. Trust decides queue order and saves
re-runs (`judging.TRUSTED_MAX_RUNS`); it never lowers the bar: every claim is tested at the same alpha.
"""

from __future__ import annotations

TRUSTED_STREAK = 5  # after this many verified claims in a row, claims are settled within fewer re-runs


def trust(streak: int) -> float:
    """0.5 for a newcomer, approaching 1 with each verified claim in a row."""
    return 1.0 - 0.5 ** (max(streak, 0) + 1)


def priority(streak: int) -> float:
    """Queue order: more trusted contributors first, then first come first served. The claimed gain plays
    no part, so exaggerating a claim buys nothing."""
    return trust(streak)


def tier(platform: dict) -> str:
    """The platform tier used to split leaderboards: the accelerator model, or the CPU class."""
    if platform.get("gpu"):
        return f"{platform.get('gpu_count', 1)}x {platform['gpu']}"[:200]
    return f"cpu {platform.get('machine', '?')}"[:200]


def trusted(streak: int) -> bool:
    return streak >= TRUSTED_STREAK
