"""BOINC-style adaptive trust: consecutive verified claims raise it, one false claim resets it."""

from __future__ import annotations

TRUSTED_STREAK = 5  # after this many verified claims in a row, claims get the short confirmation check
CONFIRM_RUNS = 2  # re-runs of a trusted contributor's claim: the keep rule's first look, never 0
CONFIRM_P = 0.1  # a trusted claim still undecided at CONFIRM_RUNS is accepted when its p-value is below this


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


def rerun_budget(streak: int, full: int) -> int:
    """Verifier re-runs for one claim: the full budget for newcomers, a short confirmation (>= 1) when trusted."""
    return max(1, min(full, CONFIRM_RUNS)) if trusted(streak) else max(1, full)


def confirmed(streak: int, stats: dict[str, float]) -> bool:
    """A trusted contributor's claim that the short check left undecided: do the re-runs alone support it?"""
    return trusted(streak) and stats.get("improvement", 0.0) > 0 and stats.get("p_value", 1.0) < CONFIRM_P
