"""Leases, reports and hostile numbers on one hub: heartbeats and expiry, idempotent reports, items that
cannot block the queue, JSON-unsafe claims, self-graded tracks, and an accept killed half-way."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from test_hub_support import BASE_SCORE, SPEC, diff_of, live_hub, make_track

from overnight.hub import gitstore
from overnight.hub.service import Hub, HubError
from overnight.hub.store.queue import MAX_ATTEMPTS


def new_hub(tmp: Path, lease: float = 300.0) -> tuple[Hub, str, Path]:
    track = make_track(tmp / "src")
    bundle = tmp / "b.bundle"
    subprocess.run(["git", "bundle", "create", "-q", str(bundle), "HEAD"], cwd=track, check=True)
    h = Hub(f"sqlite:///{tmp / 'hub.db'}", tmp / "data", lease_seconds=lease)
    h.start()
    head = h.create_track("quad", (track / "overnight.toml").read_text(), "", bundle.read_bytes())["head"]
    return h, head, track


def put(h: Hub, who, head: str, track: Path, text: str, key: str) -> dict:
    return h.submit(who, "quad", {"parent": head, "patch": diff_of(track, {"params.py": text}),
                                  "claimed_metric": 9.0, "claimed_head": BASE_SCORE, "idempotency_key": key})[1]


def test_heartbeats_keep_a_lease_and_a_dead_verifier_loses_it(tmp_path: Path) -> None:
    h, head, track = new_hub(tmp_path, lease=1.0)
    c = h.caller(h.create_account("c", "contributor")["token"])
    v1, v2 = (h.caller(h.create_account(n, "verifier")["token"]) for n in ("v1", "v2"))
    s = put(h, c, head, track, "X = 1.0\nY = 2\n", "lease-0001")
    assert h.claim(v1)["lease_seconds"] == 1.0
    for _ in range(6):  # alive: heartbeats carry the lease past two lease lengths
        time.sleep(0.4)
        h.heartbeat(v1, s["id"])
        assert h.claim(v2) is None
    time.sleep(1.1)  # dead: no heartbeat for longer than the lease
    again = h.claim(v2)
    assert again["id"] == s["id"]
    with pytest.raises(HubError) as e:  # the dead verifier's late report is refused, clearly
        h.report(v1, s["id"], {"outcome": "accept", "metric": 9.0, "head_metric": 13.0, "gain": 4.0})
    assert e.value.status == 409 and "not leased to you" in str(e.value)


def test_reports_are_idempotent(tmp_path: Path) -> None:
    h, head, track = new_hub(tmp_path)
    c = h.caller(h.create_account("c", "contributor")["token"])
    v = h.caller(h.create_account("v", "verifier")["token"])
    s = put(h, c, head, track, "X = 1.0\nY = 2\n", "idem-0001")
    h.claim(v)
    body = {"outcome": "accept", "metric": 9.0, "head_metric": 13.0, "gain": 4.0}
    first = h.report(v, s["id"], body)
    again = h.report(v, s["id"], body)  # the answer was lost; the verifier sends it again
    assert again["replayed"] and (again["commit"], again["seq"]) == (first["commit"], first["seq"])
    assert len(h.chain("quad")) == 2 and h.account(c)["streak"] == 1 and h.account(c)["verified"] == 1


def test_an_item_that_fails_every_verifier_leaves_the_queue_without_blame(tmp_path: Path) -> None:
    h, head, track = new_hub(tmp_path, lease=1.0)
    c = h.caller(h.create_account("c", "contributor")["token"])
    v = h.caller(h.create_account("v", "verifier")["token"])
    s = put(h, c, head, track, "X = 1.0\nY = 2\n", "poison-001")
    honest = put(h, c, head, track, "X = 1.5\nY = 2\n", "honest-001")
    for i in range(MAX_ATTEMPTS):
        assert h.claim(v)["id"] == s["id"]
        if i == 0:
            time.sleep(1.1)  # the verifier died on it (its lease expired)
        else:
            h.report(v, s["id"], {"outcome": "release", "reason": "sandbox crashed"})
    assert h.claim(v)["id"] == honest["id"]  # the queue moves on
    done = h.submission(c, s["id"])
    assert done["status"] == "rejected" and "not counted against the contributor" in done["reason"]
    assert h.account(c)["false_claims"] == 0


def test_hostile_numbers_and_text_are_refused_with_the_field_named(tmp_path: Path) -> None:
    """Issue 11 #9: +-1e308 overflowed the gain (500 after storing it, a board that is not JSON); NaN or a NUL
    in a description did the same on PostgreSQL."""
    track = make_track(tmp_path / "src")
    with live_hub(tmp_path) as (url, admin):
        from test_hub_support import client

        from overnight.hub.contribute import fetch, publish

        base = publish(client(url, admin), track)["head"]
        tok = client(url).register("mallory")["token"]
        fetch(client(url, tok), "quad", tmp_path / "clone")
        patch = diff_of(tmp_path / "clone", {"params.py": "X = 1.0\nY = 2\n"})
        good = {"parent": base, "patch": patch, "claimed_metric": 9.0, "claimed_head": 13.0, "idempotency_key": "k"}
        auth = {"Authorization": f"Bearer {tok}", "Content-Type": "application/json"}
        cases = [('"claimed_metric": -1e308', "claimed_metric"), ('"claimed_head": 1e308', "claimed_head"),
                 ('"claimed_metric": NaN', "claimed_metric"), ('"claimed_metric": Infinity', "claimed_metric"),
                 ('"claimed_runs": [1.0, -Infinity]', "claimed_runs"), ('"description": "a\\u0000b"', "description"),
                 ('"platform": {"gpu": "x\\u0000"}', "platform"), ('"platform": {"cpu": NaN}', "platform")]
        import json

        for i, (field, name) in enumerate(cases):
            body = json.dumps({**good, "idempotency_key": f"hostile-{i:04d}"})[:-1] + ", " + field + "}"
            r = httpx.post(f"{url}/tracks/quad/submissions", content=body, headers=auth)
            assert r.status_code == 422 and name in r.json()["detail"], (field, r.status_code, r.text)
        sneaky = patch + ("--- a/.overnight/data/heldout/y.txt\n+++ b/.overnight/data/heldout/y.txt\n"
                          "@@ -0,0 +1 @@\n+attacker labels\n")  # issue 11 #7: a traditional hunk, an ignored path
        r = httpx.post(f"{url}/tracks/quad/submissions", json={**good, "patch": sneaky, "idempotency_key": "sneaky-1"},
                       headers=auth)
        assert r.status_code == 422 and ".overnight/data/heldout/y.txt: frozen" in r.json()["detail"], r.text
        assert client(url, tok).submissions() == []  # nothing was stored
        assert httpx.get(f"{url}/tracks/quad/leaderboard").status_code == 200


def test_a_hosted_track_must_have_a_sealed_evaluator(tmp_path: Path) -> None:
    """Issue 11 #8: without [evaluate] the chain held self-reported metrics."""
    h, _, _ = new_hub(tmp_path)
    spec = SPEC.format(python=sys.executable).replace('[evaluate]\ncommand = "' + sys.executable + ' evaluate.py"\n', "")
    assert "[evaluate]" not in spec
    with pytest.raises(HubError) as e:
        h.create_track("quad2", spec.replace('name = "quad"', 'name = "quad2"'), "", b"")
    assert e.value.status == 422 and "[evaluate]" in str(e.value)


KILL_DURING_ACCEPT = """
import os, signal, sys
from overnight.hub import gitstore
from overnight.hub.service import Hub
real = gitstore.set_chain
def die_after(repo, commit):
    real(repo, commit)
    os.kill(os.getpid(), signal.SIGKILL)  # after the ref moved, before the database commit
gitstore.set_chain = die_after
h = Hub(sys.argv[1], sys.argv[2], lease_seconds=0.3)
v = h.caller(sys.argv[3])
sub = h.claim(v)
h.report(v, sub["id"], {"outcome": "accept", "metric": 9.0, "head_metric": 13.0, "gain": 4.0})
"""


def test_an_accept_killed_between_git_and_the_database_is_repaired_at_start(tmp_path: Path) -> None:
    """Issue 11 #10: kill -9 between the ref moving and the database commit diverged them; every later accept
    then failed (`cannot lock ref`)."""
    h, head, track = new_hub(tmp_path)
    c = h.caller(h.create_account("c", "contributor")["token"])
    vtok = h.create_account("v", "verifier")["token"]
    put(h, c, head, track, "X = 1.0\nY = 2\n", "killed-001")
    h.db.dispose()
    p = subprocess.run([sys.executable, "-c", KILL_DURING_ACCEPT, h.db.url, str(h.data_dir), vtok], timeout=60)
    assert p.returncode == -9
    repo = h.repo_dir("quad")
    assert gitstore.head(repo) != head  # the kill left the ref ahead of the database
    h2 = Hub(h.db.url, h.data_dir)
    h2.start()
    assert gitstore.head(repo) == head == h2.track("quad").head  # repaired: the database decides
    time.sleep(0.4)  # the dead process's lease expires
    v = h2.caller(vtok)
    sub = h2.claim(v)
    done = h2.report(v, sub["id"], {"outcome": "accept", "metric": 9.0, "head_metric": 13.0, "gain": 4.0})
    assert done["status"] == "accepted" and gitstore.head(repo) == done["commit"] == h2.track("quad").head
