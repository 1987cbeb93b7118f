"""The noisy-quadratic example's evaluator, called in-process with the loop's OVERNIGHT_SEED scheme
(exp_id * 1000 + run index), for benches that want the track's exact noise (`overnight bench swarm`)."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "noisy-quadratic"
BASE_PARAMS = {"LEARNING_RATE": 0.01, "MOMENTUM": 0.5, "WARMUP_STEPS": 40, "WEIGHT_DECAY": 0.2}


def _load_example() -> tuple[Callable[[dict, int], float], float, dict] | None:
    """(loss(params, seed) through the real evaluator, SIGMA, OPTIMUM) or None without the example."""
    if not (EXAMPLE / "evaluate.py").is_file():
        return None
    sys.path.insert(0, str(EXAMPLE))
    try:
        spec = importlib.util.spec_from_file_location("_nq_evaluate", EXAMPLE / "evaluate.py")
        ev = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(ev)  # type: ignore[union-attr]
        sigma, optimum = ev.SIGMA, ev.OPTIMUM
    finally:
        sys.path.remove(str(EXAMPLE))
    folder = Path(tempfile.mkdtemp(prefix="overnight-bench-noise-"))

    def loss(params: dict, seed: int) -> float:
        (folder / "params.json").write_text(json.dumps(params))
        old = {k: os.environ.get(k) for k in ("OVERNIGHT_ARTIFACTS", "OVERNIGHT_SEED")}
        os.environ.update(OVERNIGHT_ARTIFACTS=str(folder), OVERNIGHT_SEED=str(seed))
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                code = ev.main()
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        if code:
            raise RuntimeError(f"the evaluator failed on {params}")
        return float(next(line for line in out.getvalue().splitlines() if line.startswith("loss:")).split(":")[1])

    return loss, sigma, optimum


def _internal() -> tuple[Callable[[dict, int], float], float, dict]:
    """A copy of the example's evaluator logic, for installs without the examples folder."""
    sigma = 0.05
    optimum = {"LEARNING_RATE": (0.003, 10000.0), "MOMENTUM": (0.9, 4.0), "WARMUP_STEPS": (100, 0.0001),
               "WEIGHT_DECAY": (0.01, 10.0)}

    def loss(params: dict, seed: int) -> float:
        dist = sum(w * (params[k] - o) ** 2 for k, (o, w) in optimum.items())
        return round(dist + random.Random(seed).gauss(0.0, sigma), 6)

    return loss, sigma, optimum


def improved(params: dict, optimum: dict, gain: float) -> dict:
    """`params` with MOMENTUM moved toward its optimum so the loss drops by exactly `gain`."""
    opt, w = optimum["MOMENTUM"]
    now = w * (params["MOMENTUM"] - opt) ** 2
    if gain > now:
        raise ValueError(f"an improvement of {gain} is more than MOMENTUM can give ({now})")
    side = 1.0 if params["MOMENTUM"] >= opt else -1.0
    return {**params, "MOMENTUM": opt + side * ((now - gain) / w) ** 0.5}
