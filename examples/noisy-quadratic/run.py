"""Frozen run script: record the editable constants as an artifact.

Reads params.py (the editable file) and writes $OVERNIGHT_ARTIFACTS/params.json.
Prints a trivial measurement line so the harness sees the run succeed.
"""

import json
import math
import os
import sys
from pathlib import Path

import params

NAMES = ["LEARNING_RATE", "MOMENTUM", "WARMUP_STEPS", "WEIGHT_DECAY"]


def main() -> int:
    values = {}
    for name in NAMES:
        value = getattr(params, name, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            print(f"params.{name} must be a number, got {value!r}", file=sys.stderr)
            return 1
        if not math.isfinite(value):
            print(f"params.{name} must be finite, got {value!r}", file=sys.stderr)
            return 1
        values[name] = float(value)
    out = Path(os.environ.get("OVERNIGHT_ARTIFACTS", "."))
    out.mkdir(parents=True, exist_ok=True)
    (out / "params.json").write_text(json.dumps(values, indent=2) + "\n")
    print(f"num_params: {len(values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
