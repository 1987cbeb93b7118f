"""`overnight bench quickstart`: the README's quick start on a fresh copy of examples/tinylm,
optionally beside CPU hogs; prints the time to the first kept change and what was kept."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import stdev

from rich.console import Console

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "tinylm"


def _hog() -> None:  # pragma: no cover - a busy loop in its own process
    while True:
        pass


def _fresh_copy(dest: Path) -> Path:
    """examples/tinylm as its own repo, as a user's clone would have it (no data, no state)."""
    shutil.copytree(EXAMPLE, dest, ignore=shutil.ignore_patterns(".overnight", "__pycache__"))
    env = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@b", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@b", "PATH": "/usr/bin:/bin"}
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "tinylm"]):
        subprocess.run(["git", *args], cwd=dest, check=True, env=env, capture_output=True)
    return dest


def main(max_experiments: int, hogs: int, console: Console, extra: list[str] | None = None) -> None:
    from overnight.track import Track

    tmp = Path(tempfile.mkdtemp(prefix="overnight-quickstart-"))
    procs = [multiprocessing.Process(target=_hog, daemon=True) for _ in range(hogs)]
    try:
        track_dir = _fresh_copy(tmp / "tinylm")
        for p in procs:
            p.start()
        argv = [str(Path(sys.executable).parent / "overnight"), "run", str(track_dir), "--max-experiments",
                str(max_experiments), *(extra or [])]
        console.print(f"workload: overnight {' '.join(argv[1:])} on a fresh copy of examples/tinylm, beside {hogs} CPU "
                      f"hog(s), {multiprocessing.cpu_count()} CPU(s)", markup=False)
        load0 = os.getloadavg()[0]
        start = time.time()
        res = subprocess.run(argv, capture_output=True, text=True)
        wall = time.time() - start
        console.print(f"machine load average (1 min) {load0:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
                      "(the hogs count)", markup=False)
        if res.returncode != 0:
            console.print(res.stdout[-3000:] + res.stderr[-3000:], markup=False)
            console.print(f"the run failed (exit {res.returncode})", markup=False)
            return
        track = Track(track_dir)
        exps = track.ledger.experiments()
        base = exps[0]
        kept = [e for e in exps[1:] if e.status == "keep"]
        runs = [r.metric for r in track.ledger.runs(base.id) if r.metric is not None]
        steps = [r.measurements.get("steps_per_second") for r in track.ledger.runs(base.id)]
        console.print(f"total {wall:.0f}s for {len(exps)} experiments "
                      f"({sum(len(track.ledger.runs(e.id)) for e in exps)} runs, prepare included)", markup=False)
        console.print(f"baseline {base.metric:.4f} over {len(runs)} runs, sd {stdev(runs) if len(runs) > 1 else 0:.4f}; "
                      f"steps/s per run {', '.join(f'{s:.2f}' for s in steps if s)}", markup=False)
        if kept:
            first = kept[0]
            p = (first.stats or {}).get("p_value")
            n = int((first.stats or {}).get("n", 0)) or len(track.ledger.runs(first.id))
            console.print(f"first keep: #{first.id} {first.description} -> {first.metric:.4f} after "
                          f"{n} runs (p = {p:.2g}), "
                          f"{first.finished_at - start:.0f}s after the start", markup=False)
        else:
            console.print("nothing kept: " + "; ".join(f"#{e.id} {e.status} {e.reason.splitlines()[0][:80]}"
                                                      for e in exps[1:]), markup=False)
    finally:
        for p in procs:
            p.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
