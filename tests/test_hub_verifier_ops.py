"""The verifier as an operator runs it: a hub that goes away and comes back, and a token no contributor
code can read (issue 11 #2, hub half; issue 17 operations)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
from test_hub_support import (
    ADMIN,
    BASE_SCORE,
    client,
    diff_of,
    make_track,
    sandbox_missing,
    start_hub_process,
    stop,
    wait_ready,
)

from overnight.hub.contribute import fetch, publish
from overnight.hub.server import free_port
from overnight.hub.verifier import Verifier


def hosted(tmp: Path) -> tuple[subprocess.Popen, int, str, str, str]:
    """A hub process with the quad track and one submission on its base: (proc, port, url, base, clone)."""
    port = free_port()
    proc = start_hub_process(tmp / "hub-data", port, None, "--rate", "100000", "--burst", "100000")
    url = wait_ready(proc, port)
    base = publish(client(url, ADMIN), make_track(tmp / "src"))["head"]
    return proc, port, url, base, str(tmp / "clone")


def test_a_verifier_whose_hub_goes_away_retries_and_reports_once_it_is_back(tmp_path: Path) -> None:
    """The verifier finished its work, then exited with a raw traceback and left the submission leased."""
    proc, port, url, base, clone = hosted(tmp_path)
    tok = client(url).register("alice")["token"]
    fetch(client(url, tok), "quad", Path(clone))
    sub = client(url, tok).submit("quad", {"parent": base, "patch": diff_of(Path(clone), {"params.py": "X = 1.0\nY = 2\n"}),
                                           "claimed_metric": 9.0, "claimed_head": BASE_SCORE, "idempotency_key": "k-down-1"})
    vtok = client(url, ADMIN).create_account("vera", "verifier")["token"]
    state = {"proc": proc}

    def restart_later() -> None:
        time.sleep(2.5)
        state["proc"] = start_hub_process(tmp_path / "hub-data", port, None, "--rate", "100000", "--burst", "100000")

    class HubDiesDuringTheRuns(Verifier):
        def _verify(self, s):
            out = super()._verify(s)
            stop(state["proc"])  # the hub goes away while the verdict is on its way
            threading.Thread(target=restart_later, daemon=True).start()
            return out

    lines: list[str] = []
    v = HubDiesDuringTheRuns(client(url, vtok), tmp_path / "verifier", unsafe_no_sandbox=sandbox_missing(),
                             say=lines.append)
    try:
        res = v.verify_one()
        assert res["status"] == "accepted", (res, lines)
        waits = [x for x in lines if "unreachable" in x and "retrying in" in x]
        assert waits and all("\n" not in x and "Traceback" not in x for x in waits), lines
        assert client(url, tok).submission(sub["id"])["status"] == "accepted"
    finally:
        stop(state["proc"])


SNOOP = """X = 3.0
Y = 2
import glob, os
TOKEN = {token!r}
found = ["own-env"] if any(TOKEN in v for v in os.environ.values()) else []
for p in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/environ"):
    try:
        if TOKEN.encode() in open(p, "rb").read():
            found.append(p)
    except OSError:
        pass
raise RuntimeError("SNOOPED " + repr(found))
"""


def test_no_contributor_code_can_read_the_verifiers_token(tmp_path: Path) -> None:
    """The verifier's token was readable from argv by the contributor code it ran."""
    proc, _port, url, base, clone = hosted(tmp_path)
    try:
        vtok = client(url, ADMIN).create_account("vera", "verifier")["token"]
        cli = [sys.executable, "-c", "from overnight.cli import app; app()", "verify", "--hub", url, "--once",
               "--unsafe-no-sandbox", "--dir", str(tmp_path / "work")]
        on_argv = subprocess.run([*cli, "--token", vtok], capture_output=True, text=True, timeout=60)
        assert on_argv.returncode != 0 and "--token-file" in on_argv.stderr and "Traceback" not in on_argv.stderr
        tok = client(url).register("mallory")["token"]
        fetch(client(url, tok), "quad", Path(clone))
        patch = diff_of(Path(clone), {"params.py": SNOOP.format(token=vtok)})
        sub = client(url, tok).submit("quad", {"parent": base, "patch": patch, "claimed_metric": 1.0,
                                               "claimed_head": BASE_SCORE, "idempotency_key": "k-snoop-1"})
        huge = client(url, tok).submit("quad", {  # its evaluator prints 1e200: an outcome, not a crash
            "parent": base, "patch": diff_of(Path(clone), {"params.py": "X = 1e100\nY = 2\n"}), "claimed_metric": 1.0,
            "claimed_head": BASE_SCORE, "idempotency_key": "k-huge-01"})
        token_file = tmp_path / "vera.token"
        token_file.write_text(vtok + "\n")
        token_file.chmod(0o600)
        env = {k: v for k, v in os.environ.items() if k != "OVERNIGHT_HUB_TOKEN"}
        run = subprocess.run([*cli, "--token-file", str(token_file)], capture_output=True, text=True, timeout=300,
                             env=env)
        assert run.returncode == 0, run.stderr[-2000:]
        reason = client(url, tok).submission(sub["id"])["reason"]  # what the attacker gets to read back
        assert "SNOOPED []" in reason, reason
        huge = client(url, tok).submission(huge["id"])
        assert huge["status"] == "rejected" and ("1e+200" in huge["reason"] or "magnitude" in huge["reason"]), huge
        assert httpx.get(f"{url}/tracks/quad/leaderboard").status_code == 200
    finally:
        stop(proc)


def test_a_working_verifier_keeps_its_lease_with_heartbeats(tmp_path: Path) -> None:
    from overnight.hub.server import ThreadedServer, build

    _hub, app, admin = build(tmp_path / "hub-data", None, rate=1e6, burst=1e6, lease_seconds=2.0)

    class SlowVerifier(Verifier):  # its re-runs take longer than a lease, whatever the machine's speed
        def _verify(self, s):
            out = super()._verify(s)
            time.sleep(3.0)
            return out

    with ThreadedServer(app) as server:
        url = server.url
        base = publish(client(url, admin), make_track(tmp_path / "src"))["head"]
        tok = client(url).register("alice")["token"]
        fetch(client(url, tok), "quad", tmp_path / "clone")
        patch = diff_of(tmp_path / "clone", {"params.py": "X = 1.0\nY = 2\n"})
        sub = client(url, tok).submit("quad", {"parent": base, "patch": patch, "claimed_metric": 9.0,
                                               "claimed_head": BASE_SCORE, "idempotency_key": "k-beat-01"})
        v1 = SlowVerifier(client(url, client(url, admin).create_account("v1", "verifier")["token"]), tmp_path / "v1",
                          unsafe_no_sandbox=sandbox_missing(), say=lambda s: None)
        other = client(url, client(url, admin).create_account("v2", "verifier")["token"])
        out: list = []
        worker = threading.Thread(target=lambda: out.append(v1.verify_one()))
        t0 = time.monotonic()
        worker.start()
        while client(url, tok).submission(sub["id"])["status"] == "pending":  # v1 claims it first
            time.sleep(0.02)
        stolen = []
        while worker.is_alive():  # the lease is 2 s; the verification takes longer: only heartbeats keep it
            stolen.append(other.claim())
            time.sleep(0.3)
        worker.join()
        assert time.monotonic() - t0 > 3.0
        assert not any(stolen) and out[0]["status"] == "accepted", (stolen, out)


def test_each_claim_is_compared_with_its_own_fresh_head_runs(tmp_path: Path) -> None:
    """One head measurement used to serve every claim on that head for 30 minutes (one unlucky draw, many
    verdicts; a drifting machine): each claim now gets head runs of its own, taken just before its re-runs."""
    proc, port, url, base, clone = hosted(tmp_path)
    try:
        tok = client(url).register("dana")["token"]
        fetch(client(url, tok), "quad", Path(clone))
        original = (Path(clone) / "params.py").read_text()
        worse = original.replace("X = 3.0", "X = 3.3")  # 0.69 worse: rejected for sure (a null edit: 1 in 470)
        for i in range(2):  # worse edits claimed as gains: rejected, so the chain head stays the same
            patch = diff_of(Path(clone), {"params.py": worse + f"# nothing {i}\n"})
            client(url, tok).submit("quad", {"parent": base, "patch": patch, "claimed_metric": 9.0,
                                             "claimed_head": BASE_SCORE, "idempotency_key": f"k-null-{i}"})
        heads: list[list[float]] = []

        class Recording(Verifier):
            def _head_values(self, *args, **kwargs):
                heads.append(super()._head_values(*args, **kwargs))
                return heads[-1]

        vtok = client(url, ADMIN).create_account("vic", "verifier")["token"]
        v = Recording(client(url, vtok), tmp_path / "verifier", unsafe_no_sandbox=sandbox_missing(), say=lambda s: None)
        assert v.verify_one()["status"] == "rejected" and v.verify_one()["status"] == "rejected"
        assert len(heads) == 2 and all(len(h) >= 3 for h in heads)
        assert heads[0] is not heads[1] and heads[0] != heads[1]  # fresh seeds: fresh values
    finally:
        stop(proc)
