"""`overnight bench scaling`: experiments per minute with N = 1, 2, 4, 8 slots on a sleep-bound track,
on the local executor and on a single-node Ray cluster, side by side in one run."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from overnight.bench.duty import SleepProposer, measure, sleep_track


def main(seconds: float, rounds: int, slots: list[int], executors: list[str], console: Console) -> dict:
    console.print(f"sleep track: run R = {seconds:g}s, proposer latency 0, {rounds} experiments per slot")
    out: dict[str, dict[int, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="overnight-scaling-") as tmp:
        for ex in executors:
            out[ex] = {}
            for n in slots:
                d = sleep_track(Path(tmp), f"{ex}-{n}", seconds)
                out[ex][n] = measure(d, SleepProposer(0.0), rounds * n, workers=n, lookahead=1, executor=ex)
                console.print(f"  {ex} N={n}: {out[ex][n]['per_minute']:.1f} experiments/min")
    t = Table(title="throughput vs slots (speed-up = experiments/min relative to N = 1 on the same executor)")
    for col in ("executor", "N", "experiments/min", "speed-up", "speed-up / N", "duty cycle"):
        t.add_column(col)
    for ex, rows in out.items():
        one = rows[min(rows)]["per_minute"] / min(rows)
        for n, r in rows.items():
            t.add_row(ex, str(n), f"{r['per_minute']:.1f}", f"{r['per_minute'] / one:.2f}",
                      f"{r['per_minute'] / one / n:.2f}", f"{r['duty']:.3f}")
    console.print(t)
    return out
