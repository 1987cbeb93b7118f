"""What a candidate's diff says before any run: its size, and whether it only changes a random seed."""

from __future__ import annotations

import re

SEED_WORD = re.compile(r"seed", re.IGNORECASE)


def _changed(diff: str) -> list[str]:
    return [line for line in diff.splitlines()
            if line[:1] in "+-" and not line.startswith(("+++", "---"))]


def lines_delta(diff: str) -> int:
    """Lines added minus lines removed (within the noise band, simpler code wins)."""
    changed = _changed(diff)
    return sum(1 for line in changed if line[0] == "+") - sum(1 for line in changed if line[0] == "-")


def only_changes_seed(diff: str) -> bool:
    """True when every changed line that is not blank or a comment names a seed: the change is another draw."""
    code = [line[1:].strip() for line in _changed(diff)]
    code = [c for c in code if c and not c.startswith("#")]
    return bool(code) and all(SEED_WORD.search(c) for c in code)
