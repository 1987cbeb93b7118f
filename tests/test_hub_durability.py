"""kill -9 of the hub during concurrent submissions loses nothing that was acknowledged."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from pg import pg_server, pg_url  # noqa: F401
from test_hub_support import client, diff_of, make_track

from overnight.hub.contribute import fetch, publish
from overnight.hub.server import free_port

ADMIN = "ovh_test-admin-token-for-durability-0123456789"


def start_hub(data: Path, port: int, db: str | None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", "from overnight.cli import app; app()", "hub", "serve", "--data", str(data),
           "--port", str(port), "--rate", "100000", "--burst", "100000"] + (["--db", db] if db else [])
    proc = subprocess.Popen(cmd, env={**os.environ, "OVERNIGHT_HUB_ADMIN_TOKEN": ADMIN},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    pytest.fail(f"hub did not start: {proc.stderr.read().decode()[-2000:]}")


def durability(tmp: Path, db: str | None) -> None:
    port, data = free_port(), tmp / "hub"
    url = f"http://127.0.0.1:{port}"
    proc = start_hub(data, port, db)
    try:
        base = publish(client(url, ADMIN), make_track(tmp / "src"))["head"]
        tokens = [client(url).register(f"c{i}")["token"] for i in range(6)]
        fetch(client(url, tokens[0]), "quad", tmp / "clone")
        template = diff_of(tmp / "clone", {"params.py": "X = 1.0\nY = 2\n"})
        acked: list[tuple[str, int]] = []
        lock, stop = threading.Lock(), threading.Event()

        def worker(w: int, token: str) -> None:
            http = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=5)
            i = 0
            while not stop.is_set():
                i += 1
                patch = template.replace("+X = 1.0", f"+X = {w}.{i:06d}")
                try:
                    r = http.post("/tracks/quad/submissions", json={
                        "parent": base, "patch": patch, "claimed_metric": 1.0, "claimed_head": 13.0,
                        "idempotency_key": f"w{w}-{i:08d}"})
                except httpx.TransportError:
                    return  # the hub died: this request was never acknowledged
                if r.status_code == 201:
                    with lock:
                        acked.append((token, r.json()["id"]))

        threads = [threading.Thread(target=worker, args=(w, t)) for w, t in enumerate(tokens)]
        for t in threads:
            t.start()
        time.sleep(2.0)
        os.kill(proc.pid, signal.SIGKILL)  # mid-flight: requests are in progress right now
        proc.wait()
        stop.set()
        for t in threads:
            t.join(10)
        assert len(acked) > 20, "the test must kill the hub during real traffic"
        proc = start_hub(data, port, db)
        seen = {}
        for token in tokens:
            for s in client(url, token).submissions():
                seen[s["id"]] = token
        # every acknowledged submission is there, owned by the one who submitted it
        missing = [sid for token, sid in acked if seen.get(sid) != token]
        assert not missing, f"{len(missing)} acknowledged submissions lost after kill -9"
    finally:
        proc.kill()
        proc.wait()


def test_kill9_sqlite(tmp_path: Path) -> None:
    durability(tmp_path, None)


def test_kill9_postgres(tmp_path: Path, pg_url: str) -> None:  # noqa: F811
    durability(tmp_path, pg_url)
