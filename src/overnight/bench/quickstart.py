"""`overnight bench quickstart`: the README's quick start on a fresh copy of examples/tinylm,
optionally beside CPU hogs; prints the time to the first kept change, what was kept, where the
seconds of a run went, how many runs the first keep took, and the baseline's noise."""

from __future__ import annotations

import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean, stdev
from typing import Any

from rich.console import Console

from overnight.core.status import Status

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tinylm"
# Lines tinylm's scripts print about their own time (train.py: startup, train, export; evaluate.py: all of it).
PHASES = ("startup_seconds", "train_seconds", "export_seconds")


HOG = [sys.executable, "-c", "while True: pass"]


def _fresh_copy(dest: Path, example: Path = EXAMPLE) -> Path:
    """The example as its own repo, as a user's clone would have it (no data, no state)."""
    shutil.copytree(example, dest, ignore=shutil.ignore_patterns(".git", ".overnight", "__pycache__"))
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "tinylm"]):
        subprocess.run(["git", *args], cwd=dest, check=True, env=env, capture_output=True)
    return dest


@dataclass
class Breakdown:
    """Where a night's seconds went, from its ledger rows (plain data, printed by `report`)."""

    runs: int = 0
    head_runs_before_keep: int | None = None  # None: nothing was kept
    candidate_runs_before_keep: int | None = None
    first_run_after: float = 0.0  # seconds from the start to the first run (loop start-up, prepare)
    per_run: dict[str, float] = field(default_factory=dict)  # phase -> mean seconds per finished run
    between_runs: float = 0.0  # mean seconds from one run's end to the next one's start
    baseline: list[tuple[int, float]] = field(default_factory=list)  # (seed, metric) of the baseline's runs

    @property
    def baseline_sd(self) -> float:
        values = [v for _, v in self.baseline]
        return stdev(values) if len(values) > 1 else 0.0


def breakdown(exps: list[Any], runs_of: dict[int, list[Any]], start: float) -> Breakdown:
    """`exps`: the ledger's experiments (the baseline first); `runs_of`: their runs by experiment id."""
    out = Breakdown()
    runs = sorted((r for e in exps for r in runs_of.get(e.id, []) if r.finished_at), key=lambda r: r.started_at)
    out.runs = len(runs)
    if not runs:
        return out
    base = exps[0]
    out.baseline = [(r.seed, r.metric) for r in runs_of.get(base.id, []) if r.metric is not None]
    out.first_run_after = runs[0].started_at - start
    gaps = [b.started_at - a.finished_at for a, b in zip(runs, runs[1:], strict=False)]
    out.between_runs = fmean(gaps) if gaps else 0.0
    phases: dict[str, list[float]] = {"run (harness to harness)": [], "run process": [], "evaluator": []}
    for name in PHASES:
        phases[f"  {name.removesuffix('_seconds')}"] = []
    for r in runs:
        m = r.measurements or {}
        phases["run (harness to harness)"].append(r.finished_at - r.started_at)
        if "wall_seconds" in m:
            phases["run process"].append(float(m["wall_seconds"]))
        if "eval_seconds" in m:
            phases["evaluator"].append(float(m["eval_seconds"]))
        for name in PHASES:
            if name in m:
                phases[f"  {name.removesuffix('_seconds')}"].append(float(m[name]))
    out.per_run = {k: fmean(v) for k, v in phases.items() if v}
    rest = out.per_run.get("run (harness to harness)", 0.0) - out.per_run.get("run process", 0.0)
    out.per_run["harness (reset, copy, git, evaluator start)"] = rest - out.per_run.get("evaluator", 0.0)
    kept = [e for e in exps[1:] if e.status == Status.KEEP and e.finished_at]
    if kept:
        until = kept[0].finished_at
        before = [r for r in runs if r.finished_at <= until]
        out.head_runs_before_keep = sum(r.experiment_id == base.id for r in before)
        out.candidate_runs_before_keep = len(before) - out.head_runs_before_keep
    return out


def report(b: Breakdown, console: Console) -> None:
    console.print(f"runs: {b.runs}; the first started {b.first_run_after:.1f}s after the start (loop start-up, "
                  f"prepare); {b.between_runs:.2f}s between one run's end and the next one's start", markup=False)
    if b.head_runs_before_keep is not None:
        console.print(f"before the first keep: {b.head_runs_before_keep} head runs (baseline, refreshes, the noise "
                      f"floor's degrees of freedom) + {b.candidate_runs_before_keep} candidate runs", markup=False)
    console.print("seconds per run (mean; the indented phases are printed by train.py itself):", markup=False)
    for name, value in b.per_run.items():
        console.print(f"  {name:<46} {value:7.2f}", markup=False)
    pairs = ", ".join(f"{seed}: {value:.6f}" for seed, value in b.baseline)
    console.print(f"baseline noise sd {b.baseline_sd:.4f} over {len(b.baseline)} runs (seed: value) {pairs}",
                  markup=False)


def _named(example: Path) -> str:
    return f"examples/{example.name}" if example.parent == EXAMPLE.parent else example.name


def _sample_load(samples: list[float], stop: threading.Event) -> None:
    while not stop.wait(5.0):
        samples.append(os.getloadavg()[0])


def main(max_experiments: int, hogs: int, console: Console, extra: list[str] | None = None,
         example: Path = EXAMPLE) -> None:
    from overnight.track import Track

    tmp = Path(tempfile.mkdtemp(prefix="overnight-quickstart-"))
    procs: list[subprocess.Popen] = []
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a `timeout` stops the hogs too (finally below)
    loads: list[float] = []
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_load, args=(loads, stop), daemon=True)
    try:
        track_dir = _fresh_copy(tmp / example.name, example)
        # Each hog in its own session, as another user's job would be: the kernel's autogroups share a core
        # per session, so hogs started in the bench's session took about half what they do for real.
        procs += [subprocess.Popen(HOG, start_new_session=True) for _ in range(hogs)]
        argv = [str(Path(sys.executable).parent / "overnight"), "run", str(track_dir), "--max-experiments",
                str(max_experiments), *(extra or [])]
        console.print(f"workload: overnight {' '.join(argv[1:])} on a fresh copy of {_named(example)}, beside {hogs} CPU "
                      f"hog(s), {multiprocessing.cpu_count()} CPU(s)", markup=False)
        load0 = os.getloadavg()[0]
        sampler.start()
        cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.time()
        res = subprocess.run(argv, capture_output=True, text=True)
        wall = time.time() - start
        cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        stop.set()
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        during = f", {min(loads):.1f}-{max(loads):.1f} during it" if loads else ""
        console.print(f"machine load average (1 min) {load0:.1f} at the start{during}, {os.getloadavg()[0]:.1f} at "
                      f"the end (the hogs count; more than hogs + 2 means other work shared the machine)",
                      markup=False)
        if res.returncode != 0:
            console.print(res.stdout[-3000:] + res.stderr[-3000:], markup=False)
            console.print(f"the run failed (exit {res.returncode})", markup=False)
            return
        track = Track(track_dir)
        exps = track.ledger.experiments()
        runs_of = {e.id: track.ledger.runs(e.id) for e in exps}
        b = breakdown(exps, runs_of, start)
        console.print(f"total {wall:.0f}s for {len(exps)} experiments ({b.runs} runs, prepare included); "
                      f"{cpu:.0f} CPU seconds in the loop and its runs ({cpu / wall:.2f} of a core; one slot gets about 1 "
                      "on an idle machine, 2/3 beside 2 hogs on 2 cores with nothing else running)", markup=False)
        report(b, console)
        kept = [e for e in exps[1:] if e.status == Status.KEEP]
        if kept:
            first = kept[0]
            p = (first.stats or {}).get("p_value")
            n = int((first.stats or {}).get("n", 0)) or len(runs_of[first.id])
            head = f" (head {first.head_metric:.4f})" if first.head_metric is not None else ""
            console.print(f"first keep: #{first.id} {first.description} -> {first.metric:.4f}{head} after {n} "
                          f"runs (p = {p:.2g}), "
                          f"{first.finished_at - start:.0f}s after the start", markup=False)
        else:
            console.print("nothing kept: " + "; ".join(f"#{e.id} {e.status} {e.reason.splitlines()[0][:80]}"
                                                      for e in exps[1:]), markup=False)
    finally:
        stop.set()
        for p in procs:
            p.kill()
            p.wait(5)
        shutil.rmtree(tmp, ignore_errors=True)
