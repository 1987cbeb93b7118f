"""`overnight bench noise`: how often greedy and the noise rule keep null edits and real gains.

Metric draws come from the real noisy-quadratic evaluator (examples/noisy-quadratic/evaluate.py,
called in-process with the same OVERNIGHT_SEED scheme as the loop: exp_id * 1000 + run index),
so the noise is exactly the track's. Each trial is a fresh head measured as the loop measures a
baseline, then one candidate: a null (no-op edit, same parameters) or a true improvement of
`effect` noise sigmas. Both policies see the same draws; one NoisePolicy instance lives across
all trials, as in one loop.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.table import Table

from overnight.core.spec import Spec
from overnight.judge.noise import NoisePolicy
from overnight.judge.policy import GreedyPolicy

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "noisy-quadratic"
BASE_PARAMS = {"LEARNING_RATE": 0.01, "MOMENTUM": 0.5, "WARMUP_STEPS": 40, "WEIGHT_DECAY": 0.2}
SPEC = {"track": {"name": "noisy-quadratic", "editable": ["params.py"]}, "run": {"command": "python run.py"},
        "metric": {"name": "loss", "direction": "minimize"}}


@dataclass
class Tally:
    null_kept: int = 0
    nulls: int = 0
    true_kept: int = 0
    trues: int = 0
    extra_kept: int = 0  # confirmation runs (beyond the first) spent on kept candidates
    runs: int = 0  # candidate runs in all


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


def simulate(nulls: int, improvements: int, effect: float, seed: int) -> tuple[dict[str, Tally], float, str]:
    found = _load_example()
    source = f"{EXAMPLE.relative_to(EXAMPLE.parents[1])}/evaluate.py" if found else "internal copy"
    loss, sigma, optimum = found or _internal()
    better = improved(BASE_PARAMS, optimum, effect * sigma)
    spec = Spec.model_validate(SPEC)
    noise, greedy = NoisePolicy(spec), GreedyPolicy(spec)
    kinds = [False] * nulls + [True] * improvements
    random.Random(seed).shuffle(kinds)  # interleaved, as candidates come in a loop
    tallies = {"greedy": Tally(), "noise": Tally()}
    for i, real in enumerate(kinds):
        head_id, cand_id = seed * 100_000 + 2 * i + 1, seed * 100_000 + 2 * i + 2
        params = better if real else BASE_PARAMS
        head = [loss(BASE_PARAMS, head_id * 1000 + k) for k in range(noise.baseline_runs)]
        for name, policy in (("greedy", greedy), ("noise", noise)):
            h = head[: policy.baseline_runs]
            values: list[float] = []
            while True:
                values.append(loss(params, cand_id * 1000 + len(values)))
                verdict = policy.decide(h, values, lines_delta=0)
                if verdict.action != "more":
                    break
            t = tallies[name]
            t.runs += len(values)
            kept = verdict.action == "keep"
            if real:
                t.trues += 1
                t.true_kept += kept
            else:
                t.nulls += 1
                t.null_kept += kept
            if kept:
                t.extra_kept += len(values) - 1
    return tallies, sigma, source


def _rate(k: int, n: int) -> str:
    """A rate with its binomial standard error, so a reader sees how sure the number is."""
    p = k / max(1, n)
    return f"{p:.1%} ± {(p * (1 - p) / max(1, n)) ** 0.5:.1%}"


def main(nulls: int, improvements: int, effect: float, seed: int, console: Console) -> dict[str, Tally]:
    t0 = time.perf_counter()
    tallies, sigma, source = simulate(nulls, improvements, effect, seed)
    elapsed = time.perf_counter() - t0
    table = Table(title=f"noise bench: {nulls} null + {improvements} true (+{effect:g} sigma) candidates, "
                        f"sigma {sigma:g}, seed {seed}", show_edge=False)
    for col in ("policy", "false keeps (nulls)", "power (true gains kept)", "extra runs / kept",
                "candidate runs / candidate"):
        table.add_column(col)
    for name, t in tallies.items():
        kept = t.null_kept + t.true_kept
        table.add_row(name, _rate(t.null_kept, t.nulls), _rate(t.true_kept, t.trues),
                      f"{t.extra_kept / max(1, kept):.2f}", f"{t.runs / max(1, t.nulls + t.trues):.2f}")
    console.print(table)
    n = tallies["noise"]
    kept = n.null_kept + n.true_kept
    checks = [("false keeps <= 5%", n.null_kept / max(1, n.nulls) <= 0.05),
              ("power >= 80%", n.true_kept / max(1, n.trues) >= 0.80),
              ("extra runs per kept <= 3", n.extra_kept / max(1, kept) <= 3)]
    console.print("targets (noise rule): " + ", ".join(f"{c}: {'met' if ok else 'MISSED'}" for c, ok in checks))
    console.print(f"metric draws from {source}; {elapsed:.1f}s")
    return tallies
