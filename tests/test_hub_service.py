"""Queue order, leases, stale submissions and trust, on the service without HTTP or re-runs."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
from sqlalchemy import update
from test_hub_support import BASE_SCORE, diff_of, make_track

from overnight.hub import verifier as verifier_mod
from overnight.hub.models import Account, Submission
from overnight.hub.service import Hub, HubError


@pytest.fixture
def hub(tmp_path: Path):
    track = make_track(tmp_path / "src")
    bundle = tmp_path / "b.bundle"
    subprocess.run(["git", "bundle", "create", "-q", str(bundle), "HEAD"], cwd=track, check=True)
    h = Hub(f"sqlite:///{tmp_path / 'hub.db'}", tmp_path / "data")
    h.start()
    head = h.create_track("quad", (track / "overnight.toml").read_text(), "be good", bundle.read_bytes())["head"]
    return h, head, track


def sub(h: Hub, who, head: str, patch: str, claimed: float, key: str) -> dict:
    return h.submit(who, "quad", {"parent": head, "patch": patch, "claimed_metric": claimed,
                                  "claimed_head": BASE_SCORE, "idempotency_key": key})[1]


def test_queue_order_accept_stale_and_trust(hub, tmp_path: Path) -> None:
    h, head, track = hub
    a = h.caller(h.create_account("a", "contributor")["token"])
    b = h.caller(h.create_account("b", "contributor")["token"])
    v = h.caller(h.create_account("v", "verifier")["token"])
    v2 = h.caller(h.create_account("v2", "verifier")["token"])
    modest = sub(h, a, head, diff_of(track, {"params.py": "X = 1.0\nY = 2\n"}), 9.0, "key-small")
    boast = sub(h, b, head, diff_of(track, {"params.py": "X = 3.0\nY = 5\n"}), -1e6, "key-large")
    with pytest.raises(HubError) as e:
        h.claim(a)
    assert e.value.status == 403
    first = h.claim(v)
    assert first["id"] == modest["id"]  # issue 12 #7: first come first served; a huge claim buys no priority
    with pytest.raises(HubError):
        h.report(v2, first["id"], {"outcome": "accept"})  # not leased to v2
    done = h.report(v, first["id"], {"outcome": "accept", "metric": 9.0, "head_metric": 13.0, "gain": 4.0})
    assert done["status"] == "accepted" and done["seq"] == 1
    assert h.track("quad").head == done["commit"] != head
    assert h.claim(v) is None  # the other one's parent is no longer the head
    stale = h.submission(b, boast["id"])
    assert stale["status"] == "stale" and "rebase" in stale["reason"]
    with pytest.raises(HubError) as e:  # a new submission on the old head is refused at once
        sub(h, a, head, diff_of(track, {"params.py": "X = 1.5\nY = 2\n"}), 9.0, "key-old")
    assert e.value.status == 409
    assert h.account(a)["streak"] == 1 and h.account(a)["trust"] > h.account(b)["trust"]
    board = __import__("json").loads(h.leaderboard("quad"))
    assert board["leaderboard"][0]["contributor"] == "a" and board["leaderboard"][0]["verified_improvement"] == 4.0
    # a trusted contributor's later claim goes before a newcomer's earlier one
    new = h.track("quad").head
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(h.repo_dir("quad")), str(clone)], check=True)
    subprocess.run(["git", "checkout", "-q", new], cwd=clone, check=True)
    early = sub(h, b, new, diff_of(clone, {"params.py": "X = 1.0\nY = 3\n"}), 1.0, "key-b-early")
    with h.db.session() as db, db.begin():
        db.execute(update(Account).where(Account.name == "a").values(streak=5))
    late = sub(h, a, new, diff_of(clone, {"params.py": "X = 1.0\nY = 4\n"}), 8.9, "key-a-late")
    assert h.claim(v)["id"] == late["id"] and h.claim(v2)["id"] == early["id"]


def test_expired_lease_returns_to_the_queue_and_false_claim_resets(hub) -> None:
    h, head, track = hub
    a = h.caller(h.create_account("a", "contributor")["token"])
    v = h.caller(h.create_account("v", "verifier")["token"])
    v2 = h.caller(h.create_account("v2", "verifier")["token"])
    s = sub(h, a, head, diff_of(track, {"params.py": "X = 1.0\nY = 2\n"}), 9.0, "key-one")
    assert h.claim(v)["id"] == s["id"]
    assert h.claim(v2) is None  # leased
    with h.db.session() as db, db.begin():
        db.execute(update(Submission).values(lease_until=0))  # the verifier died
    assert h.claim(v2)["id"] == s["id"]
    h.report(v2, s["id"], {"outcome": "reject", "reason": "re-measured 15"})
    me = h.account(a)
    assert me["false_claims"] == 1 and me["streak"] == 0
    assert h.submission(a, s["id"])["reason"] == "re-measured 15"


def test_idempotency_key_reuse_with_another_patch_is_refused(hub) -> None:
    h, head, track = hub
    a = h.caller(h.create_account("a", "contributor")["token"])
    one = diff_of(track, {"params.py": "X = 1.0\nY = 2\n"})
    assert h.submit(a, "quad", {"parent": head, "patch": one, "claimed_metric": 9.0, "idempotency_key": "k-123456"})[0] == 201
    assert h.submit(a, "quad", {"parent": head, "patch": one, "claimed_metric": 9.0, "idempotency_key": "k-123456"})[0] == 200
    two = diff_of(track, {"params.py": "X = 2.0\nY = 2\n"})
    with pytest.raises(HubError) as e:
        h.submit(a, "quad", {"parent": head, "patch": two, "claimed_metric": 9.0, "idempotency_key": "k-123456"})
    assert e.value.status == 409


def test_verifier_refuses_to_run_without_the_sandbox(monkeypatch) -> None:
    monkeypatch.setattr(verifier_mod.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(verifier_mod.VerifierError, match="sandbox"):
        verifier_mod.require_sandbox()


def test_a_broken_verifier_stops_instead_of_spinning(tmp_path):
    from overnight.hub.verifier import MAX_RELEASES, Verifier, VerifierError

    class Queue:  # the same submission comes back after every release
        def __init__(self):
            self.reports = []

        def claim(self, track=None):
            return {"id": 7, "track": "quad", "parent": "abc", "patch": "", "contributor_streak": 0}

        def report(self, sub_id, body):
            self.reports.append(body["outcome"])
            return {"id": sub_id, "status": "pending"}

    q = Queue()
    v = Verifier(q, tmp_path, unsafe_no_sandbox=True, say=lambda s: None)
    v._verify = lambda sub: (_ for _ in ()).throw(VerifierError("python missing in the sandbox"))
    with pytest.raises(VerifierError, match="python missing in the sandbox"):
        v.run(once=True)
    assert q.reports == ["release"] * MAX_RELEASES


def test_a_miss_within_noise_is_not_a_false_claim_but_a_contradicted_claim_is(hub) -> None:
    """Issue 12 #7: every reject reset trust, so nobody ever became trusted."""
    import random
    import tomllib

    from overnight.core.spec import Spec
    from overnight.hub.judging import outcome, settled, verification_policy

    _, _, track = hub
    spec = Spec.model_validate(tomllib.loads((track / "overnight.toml").read_text()))
    rng = random.Random(7)
    head = [13.0 + rng.gauss(0, 1.0) for _ in range(3)]

    def judge(true_gain: float, claimed_gain: float) -> dict:
        policy, values = verification_policy(spec), []
        while True:
            values.append(13.0 - true_gain + rng.gauss(0, 1.0))
            verdict = policy.decide(head, values)
            if settled(verdict):
                break
        sub = {"claimed_metric": 13.0 - claimed_gain, "claimed_head": 13.0, "claimed_gain": claimed_gain,
               "claimed_runs": [13.0 - claimed_gain] * 3}
        return outcome(verdict, values, head, spec, sub)

    honest = [judge(0.5, 0.5) for _ in range(20)]  # a real half-sigma gain, claimed as it is
    missed = [o for o in honest if o["outcome"] == "reject"]
    assert missed and not any(o["false_claim"] for o in missed)
    assert all("not counted against the contributor" in o["reason"] for o in missed)
    lies = [judge(0.0, 6.0) for _ in range(5)]  # nothing gained, six sigmas claimed
    assert all(o["outcome"] == "reject" and o["false_claim"] for o in lies)
