"""The hub's pages (index, leaderboard and chain, chain entry) in headless Debian Chromium, on loopback.

The chain is built through the service layer (submit, claim, report accept) instead of re-running
verification: what is tested here is what the pages show and what they must not show.
"""

from __future__ import annotations

import json
import subprocess
import urllib.request
from pathlib import Path

import pytest
from test_hub_support import BASE_SCORE, diff_of, make_track

from overnight.bench.dashboard import CHROMIUM
from overnight.hub.server import ThreadedServer, build

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
SECRET_DESC = "secret idea: move Y to five"
SECRET_LOG = "SECRET-LOG-TAIL"


@pytest.fixture
def hub_url(tmp_path: Path):
    hub, app, _admin = build(tmp_path / "hub-data", rate=1000, burst=1000)
    track = make_track(tmp_path / "src")
    bundle = tmp_path / "b.bundle"
    subprocess.run(["git", "bundle", "create", "-q", str(bundle), "HEAD"], cwd=track, check=True)
    head = hub.create_track("quad", (track / "overnight.toml").read_text(), "be good", bundle.read_bytes())["head"]
    alice_acc = hub.create_account("alice", "contributor")
    alice, bob = hub.caller(alice_acc["token"]), hub.caller(hub.create_account("bob", "contributor")["token"])
    vera = hub.caller(hub.create_account("vera", "verifier")["token"])
    platform = {"machine": "x86_64", "cpu": "test cpu"}
    _, sub = hub.submit(alice, "quad", {"parent": head, "patch": diff_of(track, {"params.py": "X = 1.0\nY = 2\n"}),
                                        "description": "move X to its optimum", "claimed_metric": 9.0,
                                        "claimed_head": BASE_SCORE, "idempotency_key": "alice-1", "platform": platform,
                                        "log_tail": "alice's log"})
    assert hub.claim(vera)["id"] == sub["id"]
    done = hub.report(vera, sub["id"], {"outcome": "accept", "metric": 9.01, "head_metric": 13.0, "gain": 3.99,
                                        "runs": [9.0, 9.02], "head_runs": [13.01, 12.99],
                                        "stats": {"p_value": 0.004, "delta": -3.99}, "platform": platform})
    # bob's claim on the new head waits for a verifier; its description and log are his until verified
    subprocess.run(["git", "apply"], cwd=track, input=hub.chain_diff("quad", 1), text=True, check=True)
    _, pend = hub.submit(bob, "quad", {"parent": done["commit"], "patch": diff_of(track, {"params.py": "X = 1.0\nY = 5\n"}),
                                       "description": SECRET_DESC, "claimed_metric": 0.01, "claimed_head": 9.0,
                                       "idempotency_key": "bob-1", "platform": platform, "log_tail": SECRET_LOG})
    with ThreadedServer(app) as server:
        yield server.url + "/", pend["id"], alice_acc["token"]


def get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read()


def test_public_reads_need_no_token_and_leak_nothing(hub_url) -> None:
    url, pending_id, token = hub_url
    pend = json.loads(get(url + "tracks/quad/pending"))
    assert [p["id"] for p in pend["pending"]] == [pending_id] and pend["total"] == 1
    p = pend["pending"][0]
    assert p["contributor"] == "bob" and p["claimed_gain"] == pytest.approx(8.99) and p["on_head"]
    overview = json.loads(get(url + "overview"))
    assert overview[0]["name"] == "quad" and overview[0]["seq"] == 1 and overview[0]["pending"] == 1
    assert overview[0]["head_metric"] == 9.01 and overview[0]["base_metric"] == 13.0
    for path in ("tracks/quad/pending", "overview", "", "tracks/quad/", "tracks/quad/entries/1"):
        body = get(url + path).decode()
        for secret in (SECRET_DESC, SECRET_LOG, "Y = 5", token, "token_hash", "alice's log"):
            assert secret not in body, (path, secret)
    with pytest.raises(urllib.error.HTTPError) as e:
        get(url + "tracks/nope/")
    assert e.value.code == 404


needs_browser = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


@needs_browser
def test_pages_show_leaderboard_chain_diff_and_queue(hub_url) -> None:
    pytest.importorskip("playwright")
    from overnight.bench.dashboard import browser

    url, pending_id, _token = hub_url
    ARTIFACTS.mkdir(exist_ok=True)
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))

        page.goto(url)
        page.wait_for_selector("#tracks tr[data-track='quad']")
        row = page.locator("#tracks tr[data-track='quad']").inner_text()
        assert "score" in row and "9.01" in row
        page.screenshot(path=str(ARTIFACTS / "hub-index.png"), full_page=True)

        page.click("#tracks a >> text=quad")
        page.wait_for_url("**/tracks/quad/")
        page.wait_for_selector("#leaderboard tr[data-contributor='alice']")
        assert "+3.99" in page.locator("#leaderboard tr[data-contributor='alice']").inner_text()
        page.wait_for_selector("#chart[data-drawn='2']")  # the base and one verified commit
        chain_row = page.locator("#chain tr[data-seq='1']").inner_text()
        assert "alice" in chain_row and "vera" in chain_row and "9.01" in chain_row
        queued = page.locator(f"#pending tr[data-sub='{pending_id}']").inner_text()
        assert "bob" in queued and "8.99" in queued and "pending" in queued
        assert SECRET_DESC not in page.locator("body").inner_text()
        page.screenshot(path=str(ARTIFACTS / "hub-leaderboard.png"), full_page=True)

        # the chain entry links to its diff (raw) and to its page with runs and the highlighted diff
        assert page.locator("#chain tr[data-seq='1'] a.diff-link").get_attribute("href") == "tracks/quad/chain/1/diff"
        page.click("#chain tr[data-seq='1'] >> text=runs")
        page.wait_for_url("**/tracks/quad/entries/1")
        page.wait_for_selector("#diff .add")
        assert "+X = 1.0" in page.locator("#diff").inner_text()
        assert "13.01" in page.locator("#runs").inner_text()
        page.screenshot(path=str(ARTIFACTS / "hub-entry.png"), full_page=True)
        page.click("text=(raw)")
        page.wait_for_url("**/tracks/quad/chain/1/diff")
        assert "+X = 1.0" in page.locator("body").inner_text()
        assert errors == []
