"""`overnight bench overhead`: a trivial track (sleep, print the metric) run directly and through
the harness, interleaved, so machine noise hits both alike."""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console

from overnight.loop import Limits, Loop
from overnight.proposers.base import Proposal, ProposalContext
from overnight.track import Track

SCRIPT = """\
import time, os
time.sleep(float(os.environ.get("OVERNIGHT_BUDGET_SECONDS", "{seconds}")))
from params import X
print("score:", X)
"""


class _Interleaved:
    """A proposer that runs the command directly before each candidate (so both see the same
    machine), then bumps one constant so every experiment is a real commit."""

    name = "bench"

    def __init__(self, track_dir: Path, seconds: float):
        self.track_dir, self.seconds = track_dir, seconds
        self.n = 0
        self.direct: list[float] = []
        self.marks: list[tuple[float, float]] = []  # (propose started, propose finished)

    def propose(self, ctx: ProposalContext) -> Proposal:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "run.py"], cwd=self.track_dir, check=True, capture_output=True,
                       env={"OVERNIGHT_BUDGET_SECONDS": str(self.seconds), "PATH": "/usr/bin:/bin"})
        self.direct.append(time.perf_counter() - t0)
        self.n += 1
        (ctx.workdir / "params.py").write_text(f"X = {self.n}\n")
        self.marks.append((t0, time.perf_counter()))
        return Proposal(description=f"X={self.n}", proposer=self.name)

    def observe(self, exp) -> None:
        pass

    def baseline(self, exp) -> None:
        pass


def _make_track(root: Path, seconds: float) -> Path:
    d = root / "trivial"
    d.mkdir()
    (d / "params.py").write_text("X = 0\n")
    (d / "run.py").write_text(SCRIPT.format(seconds=seconds))
    (d / "overnight.toml").write_text(
        f'[track]\nname = "trivial"\neditable = ["params.py"]\n[run]\ncommand = "{sys.executable} run.py"\n'
        f'budget_seconds = {seconds}\n[metric]\nname = "score"\ndirection = "maximize"\n'
        '[policy]\nrule = "greedy"\n'
    )
    for args in (["init", "-q"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "init"]):
        subprocess.run(["git", *args], cwd=d, check=True, capture_output=True)
    return d


def main(seconds: float, pairs: int, console: Console) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        d = _make_track(Path(tmp), seconds)
        track = Track(d)
        prop = _Interleaved(d, seconds)
        # Serial (lookahead 0), so the proposer's direct run never overlaps a harness run.
        loop = Loop(track, prop, limits=Limits(max_experiments=pairs + 2), stop=threading.Event(), lookahead=0)
        loop.run()
        # Harness time of experiment k: from the end of its proposal to the start of the next one.
        harness = [prop.marks[k + 1][0] - prop.marks[k][1] for k in range(len(prop.marks) - 1)]
        direct = prop.direct[1:]
        exps = track.ledger.experiments()
        assert all(e.status in ("keep", "discard") for e in exps), [e.status for e in exps]
    rss = psutil.Process().memory_info().rss
    for i, (a, b) in enumerate(zip(direct, harness, strict=False)):
        console.print(f"pair {i + 1}: direct {a:.3f}s  through overnight {b:.3f}s")
    d_med, h_med = statistics.median(direct), statistics.median(harness)
    over = h_med - d_med
    out = {"direct_s": d_med, "harness_s": h_med, "overhead_ms": over * 1000, "ratio": h_med / d_med,
           "loop_rss_mb": rss / 2**20}
    console.print(
        f"[bold]overhead[/]: run {seconds:g}s, {len(harness)} interleaved pairs, medians: direct {d_med:.3f}s, "
        f"harness {h_med:.3f}s, ratio {h_med / d_med:.4f} → {over * 1000:.0f} ms per experiment "
        f"({100 * over / d_med:.2f}% of the run); loop RSS {rss / 2**20:.0f} MB"
    )
    return out
