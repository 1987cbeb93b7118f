"""`overnight bench dashboard`: the track page with N experiments, navigation to chart drawn, headless Chromium.

Also home of the helpers the dashboard tests share: a synthetic ledger, a server thread, a browser.
"""

from __future__ import annotations

import random
import socket
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from overnight.storage.ledger import Ledger

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
IDEAS = ["halve the learning rate warmup", "swap GELU for SwiGLU in the MLP", "tie input and output embeddings",
         "use a cosine schedule to zero", "increase batch size and scale lr by sqrt", "add QK-norm",
         "drop dropout entirely", "try rotary base 50000", "weight decay 0.1 on matrices only", "muon for hidden layers"]
FAILS = {"crash": "Traceback: RuntimeError: shape mismatch", "timeout": "killed after 600 s",
         "oom": "CUDA out of memory", "nan": "loss became nan at step 412", "no_change": "the diff is empty",
         "invalid": "edited a frozen file: evaluate.py"}


class FakeSpec:
    """The three things the dashboard reads from a spec, for ledgers built without a track folder."""

    class track:  # noqa: N801 - mirrors Spec.track
        name = "tinylm"

    class metric:  # noqa: N801 - mirrors Spec.metric
        name = "val_bpb"

    minimize = True


def sample_diff(k: int) -> str:
    old, new = 3e-4 * (1 + k % 5), 3e-4 * (1 + (k + 1) % 5)
    return (f"diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -12,7 +12,7 @@ import torch\n"
            f" BATCH = 64\n-LR = {old:.4g}\n+LR = {new:.4g}\n WARMUP = 100\n"
            f"@@ -40,3 +40,4 @@ def main():\n     model = GPT(cfg)\n+    model = torch.compile(model)\n")


def fill(ledger: Ledger, n: int, seed: int = 0, tag: str = "tinylm", end: float | None = None) -> None:
    """n experiments of a plausible night (baseline, mostly discards, some keeps and failures), in one transaction."""
    rng = random.Random(seed)
    end = end or time.time()
    start = end - n * 300.0
    head, rows = 1.0, []
    for i in range(n):
        t0 = start + i * 300.0
        row: dict[str, Any] = dict(tag=tag, parent_commit=f"{i:040x}", commit=f"{i + 1:040x}", reason="",
                                   description=rng.choice(IDEAS), proposer=rng.choice(["optuna", "llm", "agent:claude"]),
                                   created_at=t0, finished_at=t0 + 280.0, head_metric=head, metric=None,
                                   measurements={}, stats={}, meta={}, diff=sample_diff(i), slot=i % 2,
                                   cost_usd=0.0, tokens_in=0, tokens_out=0, platform={"key": "h100x1"}, transcript="")
        if i == 0:
            row.update(description="baseline", proposer="baseline", status="keep", metric=head, head_metric=None,
                       meta={"baseline": True}, diff="", stats={"noise_sd": 0.002})
        elif i == n - 1:
            row.update(status="running", finished_at=None, head_metric=head)
        else:
            roll = rng.random()
            if roll < 0.12:
                status = rng.choice(list(FAILS))
                row.update(status=status, reason=FAILS[status])
            else:
                # real gains get rarer and smaller as the head nears what the model can do
                gain = max(0.0, head - 0.93) * 0.12 * rng.random() if rng.random() < 0.2 else 0.0
                m = head - gain + rng.gauss(0.003, 0.0015) + (0.15 * rng.random() if rng.random() < 0.02 else 0.0)
                keep = m < head - 0.002
                p = 0.001 if keep else min(1.0, 0.2 + rng.random())
                row.update(status="keep" if keep else "discard", metric=m,
                           stats={"p_value": p, "delta": m - head, "ci_low": m - head - 0.002, "ci_high": m - head + 0.002},
                           measurements={"val_bpb": m, "memory_gb": 40 + rng.random() * 5, "wall_seconds": 280.0})
                head = m if keep else head
            if row["proposer"] != "optuna":
                row.update(tokens_in=3000, tokens_out=800, cost_usd=0.012, transcript="user: improve val_bpb\n"
                           "assistant: I will try " + row["description"])
        rows.append(row)
    runs = [dict(experiment_id=1, seed=k, status="ok", metric=1.0 + d, wall_seconds=290.0, finished_at=start + 280.0,
                 measurements={"val_bpb": 1.0 + d}, tail=f"step 1000 | loss 3.2\nval_bpb: {1.0 + d:.6f}\n",
                 log_path=f"runs/1/{k}.log")
            for k, d in enumerate((0.0, 0.002, -0.002))]
    ledger.add_experiments(rows, runs)
    ledger.put("current_tag", tag)
    ledger.put("tags", [tag])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(app: Any) -> Iterator[str]:
    """Run an ASGI app with uvicorn on loopback in a thread; yields its base URL."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=free_port(), log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.time() + 20
    while not server.started:
        if time.time() > deadline or not thread.is_alive():
            raise RuntimeError("the dashboard server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{server.config.port}/"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def time_track_page(page: Any, url: str) -> float:
    """Seconds from navigation start to the chart's first draw with every experiment."""
    page.goto(url, wait_until="commit")
    page.wait_for_function("window.__chartDrawn !== undefined", timeout=30_000)
    return page.evaluate("window.__chartDrawn") / 1000  # performance.now() counts from navigation start


def main(n: int, repeats: int, console: Any, warm_up: bool = True) -> float:
    """Cold: the first load after the server starts, in a fresh browser. Warm: the median of `repeats` reloads."""
    from overnight.ui.dashboard import create_app

    with tempfile.TemporaryDirectory() as d:
        ledger = Ledger.for_track(Path(d))
        t0 = time.perf_counter()
        fill(ledger, n)
        ledger.close()  # a fresh handle, as `overnight dashboard` opens it: nothing cached in this process
        ledger = Ledger.for_track(Path(d))
        console.print(f"built a ledger with {n} experiments in {time.perf_counter() - t0:.1f} s")
        with serve(create_app(ledger, FakeSpec, warm_up=warm_up)) as url, browser() as b:
            times = []
            for _ in range(repeats + 1):
                page = b.new_page(viewport={"width": 1400, "height": 900})
                times.append(time_track_page(page, url))
                assert page.locator("#chart").get_attribute("data-drawn") == str(n)
                page.close()
        ledger.close()
    med = statistics.median(times[1:])
    console.print(f"track page, {n} experiments, navigation to chart drawn (target < 1 s):")
    console.print(f"  cold (first load after the server starts, fresh browser): [bold]{times[0]:.3f} s[/]")
    console.print(f"  warm (median of {repeats} reloads; min {min(times[1:]):.3f}, max {max(times[1:]):.3f}): "
                  f"[bold]{med:.3f} s[/]")
    return med
