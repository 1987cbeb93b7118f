"""The dashboard: JSON API over a real ledger, and the pages in headless Debian Chromium via Playwright."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest

from overnight.bench.dashboard import CHROMIUM, FakeSpec, fill, serve
from overnight.core.status import FINAL
from overnight.storage.ledger import Ledger
from overnight.ui.dashboard import create_app

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
DIFF = "diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -1,2 +1,2 @@\n-LR = 3e-4\n+LR = 6e-4\n WD = 0.1\n"


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


@pytest.fixture
def ledger(tmp_path: Path):
    led = Ledger.for_track(tmp_path / ".overnight")
    fill(led, 60, seed=1)
    yield led
    led.close()


@pytest.fixture
def server(ledger: Ledger):
    with serve(create_app(ledger, FakeSpec)) as url:
        yield url


def test_api_lists_summarises_and_polls_incrementally(ledger: Ledger, server: str) -> None:
    info = get(server + "api/track")
    assert info["metric"] == "val_bpb" and info["direction"] == "minimize"
    assert set(info["statuses"]["final"]) == set(FINAL) and "running" in info["statuses"]["pending"]
    assert info["summary"]["total"] == 60 and info["summary"]["baseline"]["id"] == 1
    assert info["summary"]["noise"]["sd"] == pytest.approx(0.002)
    assert [r["id"] for r in info["summary"]["running"]] == [60]
    full = get(server + "api/experiments")
    assert len(full["rows"]) == 60 and "diff" not in full["columns"]
    since = full["now"]
    time.sleep(0.05)
    new = ledger.add_experiment(tag="tinylm", parent_commit="a", proposer="llm", description="new one",
                                status="discard", metric=float("nan"))
    assert get(server + "api/version")["version"] != full["version"]
    rows = get(server + f"api/experiments?updated_after={since}")["rows"]
    ids = [r[0] for r in rows]
    assert new.id in ids and 60 in ids and 2 not in ids  # new + still running, not old finished ones
    assert rows[ids.index(new.id)][2] is None  # NaN becomes null, not invalid JSON
    detail = get(server + f"api/experiments/{new.id}")
    assert detail["description"] == "new one" and detail["prev_id"] == 60
    schema = get(server + "openapi.json")
    assert "/api/experiments" in schema["paths"] and "/api/ideas" in schema["paths"]


def test_api_ideas_add_and_drop(ledger: Ledger, server: str) -> None:
    req = urllib.request.Request(server + "api/ideas", data=json.dumps({"text": " try rmsnorm "}).encode(),
                                 headers={"content-type": "application/json"}, method="POST")
    with urllib.request.urlopen(req) as r:
        idea = json.loads(r.read())
    assert r.status == 201 and idea["text"] == "try rmsnorm"
    assert [i.text for i in ledger.ideas({"open"})] == ["try rmsnorm"]
    urllib.request.urlopen(urllib.request.Request(server + f"api/ideas/{idea['id']}/drop", method="POST"))
    assert ledger.ideas({"open"}) == [] and ledger.ideas({"dropped"})[0].id == idea["id"]


def test_router_mounts_under_a_prefix(ledger: Ledger) -> None:
    """The hub mounts the same pages per track; relative links must resolve under its prefix."""
    from fastapi import FastAPI

    from overnight.ui.dashboard import TrackContext, make_router

    hub = FastAPI()
    ctx = TrackContext(ledger=ledger, name="tinylm", metric="val_bpb")
    hub.include_router(make_router(lambda request: ctx), prefix="/tracks/{track}")
    with serve(hub) as url:
        with urllib.request.urlopen(url + "tracks/tinylm/experiments/3") as r:
            page = r.read().decode()
        assert '<base href="/tracks/tinylm/">' in page
        assert get(url + "tracks/tinylm/api/experiments/3")["id"] == 3


needs_browser = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


@needs_browser
def test_pages_live_chart_click_diff_and_idea_form(ledger: Ledger, server: str) -> None:
    pytest.importorskip("playwright")
    from overnight.bench.dashboard import browser

    ARTIFACTS.mkdir(exist_ok=True)
    with browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server)
        page.wait_for_selector("#chart[data-drawn='60']")
        assert page.locator("#stats").inner_text().count("60") >= 1
        page.screenshot(path=str(ARTIFACTS / "dashboard-track.png"), full_page=True)

        # a new experiment written by another process shows up without a reload
        new = ledger.add_experiment(tag="tinylm", parent_commit="a", commit="b", proposer="agent:claude",
                                    description="use a tiny learning-rate warmup", status="keep", metric=0.5,
                                    head_metric=0.9, diff=DIFF, stats={"p_value": 0.003, "delta": -0.4},
                                    finished_at=time.time())
        page.wait_for_selector(f"#chart[data-drawn='{new.id}']", timeout=10_000)
        page.wait_for_selector(f"tr[data-id='{new.id}']")
        assert "use a tiny learning-rate warmup" in page.locator("body").inner_text()

        # hovering the new dot shows its description; clicking it opens the experiment with its diff
        box = page.locator("#chart canvas").last.bounding_box()
        assert box is not None
        x, y = page.evaluate(f"(() => {{ const p = window.__chart.pts.find(p => p.e.id === {new.id}); return [p.x, p.y]; }})()")
        page.mouse.move(box["x"] + x, box["y"] + y)
        page.wait_for_selector(".tip >> text=use a tiny learning-rate warmup")
        page.screenshot(path=str(ARTIFACTS / "dashboard-hover.png"))
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.wait_for_url(f"**/experiments/{new.id}")
        page.wait_for_selector("#diff")
        assert "+LR = 6e-4" in page.locator("#diff").inner_text()
        assert page.locator("#diff .add").count() == 1 and page.locator("#diff .del").count() == 1
        page.screenshot(path=str(ARTIFACTS / "dashboard-experiment.png"), full_page=True)

        # the baseline's page shows its runs and log tails
        page.goto(server + "experiments/1")
        page.wait_for_selector("text=log tail of run 3")

        # the experiments table filters and sorts
        page.goto(server + "experiments")
        page.wait_for_selector("#exp-table tbody tr")
        page.locator(".chip[data-status='keep']").dblclick()
        statuses = page.locator("#exp-table tbody tr td:nth-child(2)").all_inner_texts()
        assert statuses and set(statuses) == {"keep"}
        page.screenshot(path=str(ARTIFACTS / "dashboard-experiments.png"), full_page=True)

        # the idea form writes to the ledger, and the queue shows it
        page.goto(server)
        page.fill("#idea-form input[name=text]", "try a wider MLP")
        page.click("#idea-form button")
        page.wait_for_selector("#idea-list >> text=try a wider MLP")
        assert [i.text for i in ledger.ideas({"open"})] == ["try a wider MLP"]
        page.locator("#idea-list button").first.click()
        page.wait_for_selector("text=no ideas queued")
        assert ledger.ideas({"dropped"})[0].text == "try a wider MLP"
        assert errors == []


def test_list_is_gzipped_cached_and_follows_writes(ledger: Ledger, server: str) -> None:
    import gzip

    req = urllib.request.Request(server + "api/experiments", headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        body = json.loads(gzip.decompress(r.read()))
    rows, flag = body["rows"], body["columns"].index("baseline")
    assert len(rows) == 60 and rows[0][flag] is True  # the baseline flag is a boolean, not SQLite's 1
    v1 = get(server + "api/version")["version"]
    assert get(server + "api/version")["version"] == v1  # memoised on the ledger file's stat
    ledger.add_idea("an idea changes the version too")
    assert get(server + "api/version")["version"] != v1


# --- after a crashed first baseline (issue 14 item 6): a real loop through the CLI --------------------------

CRASHY_RUN = "import os, sys\nif os.environ.get('QUAD_CRASH'): sys.exit('no data mounted')\nSIGMA = 0.05\n"


@pytest.fixture
def crashed_first_baseline(quad_track):
    """A track whose first baseline crashed (the data was not there), then a loop that ran: baseline
    #2 kept, a candidate kept over three runs, discards."""
    from conftest import QUAD_RUN
    from typer.testing import CliRunner

    from overnight.cli import app

    d = quad_track(files={"run.py": CRASHY_RUN + QUAD_RUN})
    cli = CliRunner()
    first = cli.invoke(app, ["run", str(d), "--max-experiments", "2"], env={"QUAD_CRASH": "1"})
    assert first.exit_code != 0 and "baseline failed" in first.output
    second = cli.invoke(app, ["run", str(d), "--max-experiments", "4"])
    assert second.exit_code == 0, second.output
    status = cli.invoke(app, ["status", str(d)], env={"COLUMNS": "200"}, terminal_width=200)
    assert status.exit_code == 0, status.output
    led = Ledger.for_track(d / ".overnight")
    assert led.experiments()[0].status == "crash" and led.experiments()[0].meta.get("baseline")
    yield d, led, " ".join(status.output.split())
    led.close()


def _status_numbers(text: str) -> tuple[str, str, str]:
    base = re.search(r"baseline score (\S+) →", text)
    noise = re.search(r"noise floor on .*?: sd (\S+) \((\d+ runs of \d+ kept version\(s\))\)", text)
    assert base and noise, text
    return base.group(1), noise.group(1), noise.group(2)


def test_api_agrees_with_status_after_a_crashed_first_baseline(crashed_first_baseline) -> None:
    d, led, status = crashed_first_baseline
    base_text, sd_text, source = _status_numbers(status)
    with serve(create_app(led, FakeSpec)) as url:
        s = get(url + "api/track")["summary"]
        crashed = get(url + "api/experiments/1")  # a failure is decided on its failing run, not a mean
        kept = get(url + "api/experiments/2")
    assert crashed["decision"]["how"] == "last run" and crashed["decision"]["run_ids"] == [crashed["runs"][-1]["id"]]
    decided = [r for r in kept["runs"] if r["finished_at"] <= kept["finished_at"]]  # later: the head measured afresh
    assert kept["decision"]["how"] == "mean" and len(kept["decision"]["run_ids"]) == len(decided) >= 2
    assert kept["decision"]["means"]["score"] == pytest.approx(kept["metric"])
    assert s["baseline"]["id"] == 2 and s["baseline"]["status"] == "keep"
    assert f"{s['baseline']['metric']:.6g}" == base_text
    assert f"{s['noise']['sd']:.4g}" == sd_text and source in s["noise"]["source"]
    assert s["baseline_attempt"] is None  # a kept baseline exists: the crash is history, not the baseline
    # the night-level figure: the same bound `overnight status` prints, from the same decisions
    bound = re.search(r"false keeps these (\d+) decisions allow: at most (\S+) expected", status)
    assert bound, status
    assert s["false_keeps"]["decisions"] == int(bound.group(1)) >= 1
    assert f"{s['false_keeps']['bound']:.2g}" == bound.group(2)


@needs_browser
def test_cards_after_a_crashed_first_baseline_and_measurements_the_decision_used(crashed_first_baseline) -> None:
    pytest.importorskip("playwright")
    from overnight.bench.dashboard import browser

    d, led, status = crashed_first_baseline
    base_text, sd_text, _ = _status_numbers(status)
    kept = [e for e in led.experiments() if e.status == "keep" and not e.meta.get("baseline")][-1]
    runs = [r for r in led.runs(kept.id) if r.status == "ok" and r.finished_at <= kept.finished_at]
    later = [r for r in led.runs(kept.id) if r.finished_at > kept.finished_at]  # the new head measured afresh
    assert len(runs) >= 2 and later  # confirmation runs: the mean the decision used is not the last run
    with serve(create_app(led, FakeSpec)) as url, browser() as b:
        page = b.new_page(viewport={"width": 1400, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#stats .stat")
        cards = page.locator("#stats").inner_text()
        assert base_text in cards and "#2" in cards
        shown = re.search(r"NOISE FLOOR\s+±(\S+)", cards, re.IGNORECASE)
        assert shown and f"{float(shown.group(1)):.4g}" == sd_text, cards  # status prints 4 digits, the card 6
        assert "needs" not in cards
        assert "false keeps expected" in page.locator("#false-keeps").inner_text()

        page.goto(url + f"experiments/{kept.id}")
        page.wait_for_selector("#measurements table")
        card = page.locator("#measurements").inner_text().lower()
        mean_cell = page.locator("#measurements td[data-key='score']").inner_text()
        assert float(mean_cell) == pytest.approx(kept.metric, rel=1e-5)
        assert float(mean_cell) != pytest.approx(runs[-1].metric, rel=1e-5)  # what the old card showed
        assert f"mean of {len(runs)} runs" in card and all(f"run {r.id}" in card for r in runs)
        assert f"#{later[-1].id} came later" in card  # (a list when the head was measured afresh several times)
        page.screenshot(path=str(ARTIFACTS / "dashboard-measurements.png"), full_page=True)
        assert errors == []
