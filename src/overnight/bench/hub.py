"""`overnight bench hub`: leaderboard reads/s and submissions/s with p50/p99 latency, over loopback,
with N registered contributors; the load comes from a separate process (a lean asyncio HTTP/1.1
client with keep-alive, so the driver steals as little CPU from the hub as possible)."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

ADMIN = "ovh_bench-admin-token-0123456789abcdef0123456789"
SPEC = '[track]\nname = "quad"\neditable = ["params.py"]\n[run]\ncommand = "python run.py"\n[metric]\nname = "score"\n'
PATCH = ("diff --git a/params.py b/params.py\nindex 1..2 100644\n--- a/params.py\n+++ b/params.py\n"
         "@@ -1,2 +1,2 @@\n-X = 3.0\n+X = {x}\n Y = 2\n")


def _setup(root: Path, db: str | None, contributors: int) -> tuple[str, str, Path]:
    """A hub database with one track, `contributors` accounts and a few chain entries; returns
    (db url, head commit, file of contributor tokens)."""
    from overnight.git.repo import git
    from overnight.hub.auth import hash_token, new_token
    from overnight.hub.models import Account, ChainEntry
    from overnight.hub.service import Hub

    src = root / "src"
    src.mkdir()
    (src / "params.py").write_text("X = 3.0\nY = 2\n")
    (src / "run.py").write_text("from params import X, Y\nprint('score:', (X - 1) ** 2 + (Y - 5) ** 2)\n")
    (src / "overnight.toml").write_text(SPEC)
    git(src, "init", "-q")
    git(src, "add", "-A")
    git(src, "commit", "-q", "-m", "base")
    git(src, "bundle", "create", "-q", str(root / "b.bundle"), "HEAD")
    url = db or f"sqlite:///{root / 'hub.db'}"
    hub = Hub(url, root / "data")
    hub.start(ADMIN)
    head = hub.create_track("quad", SPEC, "", (root / "b.bundle").read_bytes())["head"]
    tokens = [new_token() for _ in range(contributors)]
    with hub.db.session() as s, s.begin():
        s.add_all(Account(name=f"c{i:05d}", role="contributor", token_hash=hash_token(t)) for i, t in enumerate(tokens))
    with hub.db.session() as s, s.begin():  # a chain with some history so the leaderboard has work to do
        rng = random.Random(0)
        s.add_all(ChainEntry(track_id=1, seq=i, commit=f"{i:040x}", parent=None, contributor_id=rng.randint(2, 200),
                             verifier_id=1, gain=rng.random(), tier="cpu x86_64") for i in range(1, 201))
    hub.db.engine.dispose()
    path = root / "tokens.txt"
    path.write_text("\n".join(tokens))
    return url, head, path


async def _drive(port: int, phase: str, seconds: float, concurrency: int, tokens: list[str], head: str) -> dict:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    deadline = time.perf_counter() + seconds
    counter = iter(range(10**9))

    def request() -> bytes:
        if phase == "read":
            return b"GET /tracks/quad/leaderboard HTTP/1.1\r\nHost: h\r\n\r\n"
        n = next(counter)
        body = json.dumps({"parent": head, "patch": PATCH.format(x=f"{os.getpid()}.{n}"), "claimed_metric": 9.0,
                           "claimed_head": 13.0, "idempotency_key": f"bench-{os.getpid()}-{n:09d}",
                           "platform": {"cpu": "bench", "machine": "x86_64"}}).encode()
        tok = tokens[n % len(tokens)]
        return (f"POST /tracks/quad/submissions HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer {tok}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        while time.perf_counter() < deadline:
            req = request()
            t0 = time.perf_counter()
            writer.write(req)
            head_bytes = await reader.readuntil(b"\r\n\r\n")
            lines = head_bytes.decode().split("\r\n")
            status = int(lines[0].split()[1])
            length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
        writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"phase": phase, "requests": len(latencies), "per_second": len(latencies) / wall, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "statuses": statuses}


def drive_main(argv: list[str]) -> None:
    """Entry of the driver process: python -m overnight.bench.hub PORT PHASE SECONDS CONCURRENCY TOKENS HEAD."""
    port, phase, seconds, concurrency, tokens, head = argv
    toks = Path(tokens).read_text().split()
    print(json.dumps(asyncio.run(_drive(int(port), phase, float(seconds), int(concurrency), toks, head))))


def main(contributors: int, seconds: float, concurrency: int, db: str | None, console: Console) -> None:
    from overnight.hub.server import free_port

    with tempfile.TemporaryDirectory(prefix="overnight-bench-hub-") as tmp:
        root = Path(tmp)
        console.print(f"setting up a hub with {contributors} registered contributors…")
        url, head, tokens = _setup(root, db, contributors)
        port = free_port()
        hub = subprocess.Popen(
            [sys.executable, "-c", "from overnight.cli import app; app()", "hub", "serve", "--data",
             str(root / "data"), "--db", url, "--port", str(port), "--rate", "1000000", "--burst", "1000000"],
            env={**os.environ, "OVERNIGHT_HUB_ADMIN_TOKEN": ADMIN}, stdout=subprocess.DEVNULL)
        peak = [0]
        done = threading.Event()
        try:
            _wait(port)
            proc = psutil.Process(hub.pid)

            def sample() -> None:
                while not done.is_set():
                    peak[0] = max(peak[0], proc.memory_info().rss)
                    time.sleep(0.05)

            threading.Thread(target=sample, daemon=True).start()
            results = []
            for phase in ("read", "submit"):
                out = subprocess.run([sys.executable, "-m", "overnight.bench.hub", str(port), phase, str(seconds),
                                      str(concurrency), str(tokens), head], capture_output=True, text=True, check=True)
                results.append(json.loads(out.stdout))
            rss = proc.memory_info().rss
        finally:
            done.set()
            hub.terminate()
            hub.wait(10)
    t = Table(title=f"hub: {contributors} contributors, {concurrency} connections, {seconds:g}s per phase, "
                    f"{'SQLite' if url.startswith('sqlite') else url.split(':')[0]}", show_edge=False)
    for col in ("phase", "requests", "req/s", "p50 ms", "p99 ms", "statuses"):
        t.add_column(col)
    for r in results:
        name = "leaderboard reads" if r["phase"] == "read" else "submissions"
        t.add_row(name, str(r["requests"]), f"{r['per_second']:.0f}", f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                  " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items())))
    console.print(t)
    console.print(f"hub RSS: {rss / 2**20:.0f} MB now, {peak[0] / 2**20:.0f} MB peak")


def _wait(port: int) -> None:
    import httpx

    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError("the hub did not start")


if __name__ == "__main__":
    drive_main(sys.argv[1:])
