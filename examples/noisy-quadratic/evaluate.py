"""Frozen evaluator: noisy weighted quadratic distance to a hidden optimum.

Reads $OVERNIGHT_ARTIFACTS/params.json (never imports params.py) and prints
`loss: <float>`. The noise is drawn from random.Random(OVERNIGHT_SEED), so the
same seed and the same parameters always give the same loss.
"""

import json
import math
import os
import random
import sys
from pathlib import Path

from noise import OPTIMUM, SIGMA


def fail(reason: str) -> int:
    print(f"evaluation failed: {reason}", file=sys.stderr)
    return 1


def main() -> int:
    path = Path(os.environ.get("OVERNIGHT_ARTIFACTS", ".")) / "params.json"
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        return fail(f"missing artifact {path}")
    except (OSError, ValueError) as exc:
        return fail(f"unreadable artifact {path}: {exc}")
    if not isinstance(values, dict):
        return fail("params.json must hold a JSON object")

    distance = 0.0
    for name, (optimum, weight) in OPTIMUM.items():
        value = values.get(name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return fail(f"parameter {name} missing or not a number: {value!r}")
        if not math.isfinite(value):
            return fail(f"parameter {name} is not finite: {value!r}")
        distance += weight * (value - optimum) ** 2

    try:
        seed = int(os.environ.get("OVERNIGHT_SEED", "0"))
    except ValueError:
        return fail(f"OVERNIGHT_SEED is not an integer: {os.environ['OVERNIGHT_SEED']!r}")
    noise = random.Random(seed).gauss(0.0, SIGMA)

    print(f"distance: {distance:.6f}")
    print(f"loss: {distance + noise:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
