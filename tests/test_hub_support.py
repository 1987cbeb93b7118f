"""Helpers for the hub tests (no tests here): a tiny quadratic track with a sealed evaluator, a live hub."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from conftest import QUAD_RUN, make_repo

from overnight.hub.client import HubClient
from overnight.hub.server import ThreadedServer, build

# The evaluator reads the candidate's constants as text (never executes candidate code) and adds seeded noise.
EVALUATE = """\
import ast, os, random
src = open(os.path.join(os.environ["OVERNIGHT_WORKDIR"], "params.py")).read()
vals = {t.id: ast.literal_eval(n.value) for n in ast.parse(src).body if isinstance(n, ast.Assign)
        for t in n.targets if isinstance(t, ast.Name)}
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("score:", (vals["X"] - 1) ** 2 + (vals["Y"] - 5) ** 2 + rng.gauss(0, 0.01))
"""
RUN = "SIGMA = 0.01\n" + QUAD_RUN
SPEC = """\
[track]
name = "quad"
editable = ["params.py"]
[run]
command = "{python} run.py"
budget_seconds = 5
timeout_seconds = 30
[evaluate]
command = "{python} evaluate.py"
[metric]
name = "score"
"""
BASE_SCORE = 13.0  # (3-1)^2 + (2-5)^2


def make_track(root: Path) -> Path:
    return make_repo(root / "quad", {"params.py": "X = 3.0\nY = 2\n", "run.py": RUN, "evaluate.py": EVALUATE,
                                     "overnight.toml": SPEC.format(python=sys.executable)})


def sandbox_missing() -> bool:
    """The verifier's sandbox module comes from another change; tests run unsandboxed (explicitly) without it."""
    return importlib.util.find_spec("overnight.execution.sandbox") is None


class SetParams:
    """A scripted proposer: writes fixed constants into params.py."""

    name = "scripted"

    def __init__(self, text: str):
        self.text = text

    def propose(self, ctx):
        from overnight.proposers.base import Proposal

        (ctx.workdir / "params.py").write_text(self.text)
        return Proposal(description=f"set {self.text.strip()!r}", proposer=self.name)

    def observe(self, experiment) -> None:
        pass

    def baseline(self, experiment) -> None:
        pass


def diff_of(clone: Path, files: dict[str, str]) -> str:
    """The `git diff` a contributor would send after editing `files` in its clone (then reverted)."""
    for name, text in files.items():
        (clone / name).write_text(text)
    subprocess.run(["git", "add", "-A"], cwd=clone, check=True)
    out = subprocess.run(["git", "diff", "--cached", "--no-color"], cwd=clone, check=True, capture_output=True,
                         text=True).stdout
    subprocess.run(["git", "reset", "-q", "--hard"], cwd=clone, check=True)
    return out


@contextmanager
def live_hub(tmp: Path, db: str | None = None, rate: float = 1000.0) -> Iterator[tuple[str, str]]:
    """A hub on loopback: yields (url, admin token)."""
    _hub, app, admin = build(tmp / "hub-data", db, rate=rate, burst=rate, admin_token=None)
    assert admin, "a fresh hub prints a new admin token"
    with ThreadedServer(app) as server:
        yield server.url, admin


def client(url: str, token: str | None = None) -> HubClient:
    return HubClient(url, token, retries=1, backoff=0.05)


ADMIN = "ovh_test-admin-token-for-processes-0123456789"


def start_hub_process(data: Path, port: int, db: str | None, *extra: str, admin: str = ADMIN) -> subprocess.Popen:
    """`overnight hub serve` as its own process (not waited for: start several at once, then `wait_ready`)."""
    import os

    cmd = [sys.executable, "-c", "from overnight.cli import app; app()", "hub", "serve", "--data", str(data),
           "--port", str(port), *(["--db", db] if db else []), *extra]
    return subprocess.Popen(cmd, env={**os.environ, "OVERNIGHT_HUB_ADMIN_TOKEN": admin},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(proc: subprocess.Popen, port: int, timeout: float = 60) -> str:
    """The hub's URL once /readyz answers 200; fails with the hub's stderr when it exits or never does."""
    import time

    import httpx
    import pytest

    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"hub exited with {proc.returncode}: {proc.stderr.read().decode()[-3000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return url
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    proc.kill()
    pytest.fail(f"hub on {port} not ready after {timeout}s: {proc.stderr.read().decode()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
