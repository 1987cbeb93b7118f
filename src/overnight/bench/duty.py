"""`overnight bench duty`: a sleep track with run time R and a proposer that thinks for L = 0.2 R,
run by the serial loop and by the pipelined loop, side by side; prints each one's duty cycle
(time a run occupies the slot / wall time, from the first candidate run's start to the last one's end).
"""

from __future__ import annotations

import tempfile
import threading
from pathlib import Path

from rich.console import Console
from rich.table import Table

from overnight.git.repo import git
from overnight.loop import Limits, Loop
from overnight.proposers.base import Proposal, ProposalContext
from overnight.track import Track

SPEC = """\
[track]
name = "{name}"
editable = ["params.py"]
[run]
command = "sleep {seconds}; echo score: 1"
budget_seconds = {seconds}
timeout_seconds = {timeout}
[metric]
name = "score"
[policy]
rule = "greedy"
"""


class SleepProposer:
    """Thinks for `latency` seconds, then changes one constant: every candidate is a real commit.

    The metric never improves, so the head stays put and the bench measures the pipeline alone.
    """

    name = "sleep"

    def __init__(self, latency: float):
        self.latency, self.n = latency, 0

    def propose(self, ctx: ProposalContext) -> Proposal:
        ctx.stop.wait(self.latency)
        self.n += 1
        (ctx.workdir / "params.py").write_text(f"X = {self.n}\n")
        return Proposal(description=f"X = {self.n}", proposer=self.name)

    def observe(self, exp) -> None:
        pass

    def baseline(self, exp) -> None:
        pass


def sleep_track(root: Path, name: str, seconds: float) -> Path:
    d = root / name
    d.mkdir(parents=True)
    (d / "params.py").write_text("X = 0\n")
    (d / "overnight.toml").write_text(SPEC.format(name=name, seconds=seconds, timeout=seconds * 4 + 10))
    git(d, "init", "-q", "-b", "main")
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "sleep track")
    return d


def measure(d: Path, proposer, experiments: int, workers: int = 1, lookahead: int = 1,
            executor: str = "local") -> dict[str, float]:
    """Run the loop; return duty cycle and experiments/minute over the candidate runs."""
    track = Track(d)
    Loop(track, proposer, limits=Limits(max_experiments=experiments + 1), stop=threading.Event(),
         workers=workers, executor=executor, lookahead=lookahead).run()
    runs = [r for e in track.ledger.experiments() if not e.meta.get("baseline")
            for r in track.ledger.runs(e.id) if r.finished_at]
    busy = sum(r.wall_seconds or 0 for r in runs)
    start = min(r.started_at for r in runs)
    end = max(r.started_at + (r.wall_seconds or 0) for r in runs)
    span = max(end - start, 1e-9)
    n = len({r.experiment_id for r in runs})
    track.ledger.close()
    return {"duty": busy / (workers * span), "per_minute": 60 * n / span, "experiments": n, "span": span}


def main(seconds: float, experiments: int, console: Console) -> dict[str, dict[str, float]]:
    latency = 0.2 * seconds
    console.print(f"sleep track: run R = {seconds:g}s, proposer latency L = {latency:g}s, "
                  f"{experiments} experiments each, 1 slot")
    out = {}
    with tempfile.TemporaryDirectory(prefix="overnight-duty-") as tmp:
        for mode, lookahead in (("serial", 0), ("pipelined", 1)):
            d = sleep_track(Path(tmp), mode, seconds)
            out[mode] = measure(d, SleepProposer(latency), experiments, lookahead=lookahead)
    t = Table(title="accelerator duty cycle (run time on the slot / wall time)")
    for col in ("loop", "duty cycle", "experiments/min", "expected"):
        t.add_column(col)
    t.add_row("serial", f"{out['serial']['duty']:.3f}", f"{out['serial']['per_minute']:.2f}",
              f"{seconds / (seconds + latency):.3f} = R/(R+L)")
    t.add_row("pipelined", f"{out['pipelined']['duty']:.3f}", f"{out['pipelined']['per_minute']:.2f}", ">= 0.98")
    console.print(t)
    console.print(f"pipelined / serial throughput: {out['pipelined']['per_minute'] / out['serial']['per_minute']:.3f}x")
    return out
