"""Tournaments: K contestants (program.md variants, proposers, or both) on one track at equal budget.

Each contestant gets its own branch from the same base and interleaved turns on the same slots;
the verdict re-measures every final head side by side (common seeds, interleaved rounds) and
ranks them only where the difference is beyond noise.
"""
