"""`overnight bench hub`: leaderboard reads/s and submissions/s with p50/p99 latency, over loopback,
with N registered contributors; the load comes from separate processes (a lean asyncio HTTP/1.1
client with keep-alive, so the driver steals as little CPU from the hub as possible).

`--processes N` adds a row with N independent `hub serve` processes on one PostgreSQL database and one
data folder (connections spread over them as a load balancer would), measured in the same run as the
one-process row, on a fresh database each. Each leaderboard read queries the database once (the verdict
counter that says whether the process's copy is current).
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
from rich.console import Console
from rich.table import Table

ADMIN = "ovh_bench-admin-token-0123456789abcdef0123456789"
SPEC = ('[track]\nname = "quad"\neditable = ["params.py"]\n[run]\ncommand = "python run.py"\n'
        '[evaluate]\ncommand = "python evaluate.py"\n[metric]\nname = "score"\n')
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
    hub.db.dispose()
    path = root / "tokens.txt"
    path.write_text("\n".join(tokens))
    return url, head, path


async def _drive(ports: list[int], phase: str, seconds: float, concurrency: int, tokens: list[str], head: str
                 ) -> dict:
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

    async def worker(port: int) -> None:
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
    await asyncio.gather(*(worker(ports[i % len(ports)]) for i in range(concurrency)))
    wall = time.perf_counter() - t0
    latencies.sort()

    def pct(p: float) -> float:
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else float("nan")

    return {"phase": phase, "requests": len(latencies), "per_second": len(latencies) / wall, "p50_ms": pct(0.5),
            "p99_ms": pct(0.99), "statuses": statuses, "latencies_ms": [x * 1000 for x in latencies[::10]]}


def drive_main(argv: list[str]) -> None:
    """Entry of a driver process: python -m overnight.bench.hub PORTS PHASE SECONDS CONCURRENCY TOKENS HEAD."""
    ports, phase, seconds, concurrency, tokens, head = argv
    toks = Path(tokens).read_text().split()
    out = asyncio.run(_drive([int(p) for p in ports.split(",")], phase, float(seconds), int(concurrency), toks, head))
    out["latencies"] = out.pop("latencies_ms")
    print(json.dumps(out))


def _phase(ports: list[int], phase: str, seconds: float, concurrency: int, tokens: Path, head: str,
           drivers: int) -> dict:
    """One phase driven by `drivers` processes at once; their counts and latency samples merged."""
    per = max(1, concurrency // drivers)
    procs = [subprocess.Popen([sys.executable, "-m", "overnight.bench.hub", ",".join(map(str, ports)), phase,
                               str(seconds), str(per), str(tokens), head], stdout=subprocess.PIPE, text=True)
             for _ in range(drivers)]
    outs = [json.loads(p.communicate()[0]) for p in procs]
    lat = sorted(x for o in outs for x in o["latencies"])
    statuses: dict[str, int] = {}
    for o in outs:
        for k, v in o["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))] if lat else float("nan")

    return {"phase": phase, "requests": sum(o["requests"] for o in outs),
            "per_second": sum(o["per_second"] for o in outs), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
            "statuses": statuses}


def _row(root: Path, db: str | None, processes: int, contributors: int, seconds: float, concurrency: int,
         console: Console) -> tuple[list[dict], int]:
    """Set up a fresh hub database, start `processes` hub processes on it, drive reads then submissions."""
    from overnight.hub.server import free_port

    root.mkdir(parents=True)
    url, head, tokens = _setup(root, db, contributors)
    ports = [free_port() for _ in range(processes)]
    hubs = [subprocess.Popen(
        [sys.executable, "-c", "from overnight.cli import app; app()", "hub", "serve", "--data", str(root / "data"),
         "--db", url, "--port", str(port), "--rate", "1000000", "--burst", "1000000"],
        env={**os.environ, "OVERNIGHT_HUB_ADMIN_TOKEN": ADMIN}, stdout=subprocess.DEVNULL) for port in ports]
    peak = [0]
    done = threading.Event()
    try:
        for port in ports:
            _wait(port)
        procs = [psutil.Process(h.pid) for h in hubs]

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in procs))
                time.sleep(0.05)

        threading.Thread(target=sample, daemon=True).start()
        results = [_phase(ports, phase, seconds, concurrency, tokens, head, drivers=max(1, min(processes, 4)))
                   for phase in ("read", "submit")]
    finally:
        done.set()
        for h in hubs:
            h.terminate()
        for h in hubs:
            h.wait(10)
    return results, peak[0]


def main(contributors: int, seconds: float, concurrency: int, db: str | None, console: Console,
         processes: int = 1) -> None:
    with tempfile.TemporaryDirectory(prefix="overnight-bench-hub-") as tmp, _postgres(db, processes, Path(tmp)) as pg:
        counts = [1] if processes <= 1 else [1, processes]
        rows = []
        for n in counts:
            target = _fresh_database(pg) if pg else db
            console.print(f"setting up a hub with {contributors} registered contributors, {n} process(es)…")
            rows.append((n, *_row(Path(tmp) / f"p{n}", target, n, contributors, seconds, concurrency, console)))
    kind = "SQLite" if not (pg or db) else ("PostgreSQL (throwaway, loopback)" if pg and not db else db.split(":")[0])
    t = Table(title=f"hub: {contributors} contributors, {concurrency} connections, {seconds:g}s per phase, {kind}; "
                    f"{os.cpu_count()} CPUs on this machine (hub, database and driver share them)", show_edge=False)
    for col in ("processes", "phase", "requests", "req/s", "x 1 process", "p50 ms", "p99 ms", "statuses"):
        t.add_column(col)
    base = {r["phase"]: r["per_second"] for r in rows[0][1]}
    for n, results, _peak in rows:
        for r in results:
            name = "leaderboard reads" if r["phase"] == "read" else "submissions"
            t.add_row(str(n), name, str(r["requests"]), f"{r['per_second']:.0f}",
                      f"{r['per_second'] / base[r['phase']]:.2f}" if base[r["phase"]] else "-",
                      f"{r['p50_ms']:.1f}", f"{r['p99_ms']:.1f}",
                      " ".join(f"{k}:{v}" for k, v in sorted(r["statuses"].items())))
    console.print(t)
    for n, _, peak in rows:
        console.print(f"hub RSS with {n} process(es): {peak / 2**20:.0f} MB peak (all processes)")


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


def _fresh_database(server: str) -> str:
    import psycopg

    name = f"bench_{os.getpid()}_{time.monotonic_ns() % 10**9}"
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


@contextlib.contextmanager
def _postgres(db: str | None, processes: int, root: Path) -> Iterator[str | None]:
    """A server URL for one fresh database per row: a throwaway PostgreSQL from Debian's binaries when
    several processes are asked for without --db (SQLite serves one process)."""
    if processes <= 1 or db is not None:
        if processes > 1 and db is not None and db.startswith("sqlite"):
            raise SystemExit("--processes needs PostgreSQL: SQLite serves one hub process")
        yield None
        return
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not found:
        raise SystemExit("--processes needs PostgreSQL: pass --db postgresql+psycopg://... or install postgresql")
    bindir = Path(found[-1]).parent
    as_pg = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    data = root / "pg"
    root.chmod(0o755)
    if as_pg:
        shutil.chown(root, "postgres", "postgres")
    from overnight.hub.server import free_port

    port = free_port()
    subprocess.run([*as_pg, str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                    "--no-sync"], check=True, capture_output=True)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c max_connections=400"
    subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(root / "pg.log"), "-w",
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*as_pg, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True, timeout=60)


if __name__ == "__main__":
    drive_main(sys.argv[1:])
