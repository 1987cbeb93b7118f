"""Prompt assembly and the bounded history digest."""

from __future__ import annotations

import time

import pytest

from overnight.proposers import context
from overnight.proposers.cost import PriceError, PriceTable, load_overrides
from overnight.storage.ledger import Experiment
from overnight.track import Track


def fill(track: Track, n: int) -> None:
    """A baseline, then n experiments: every 10th kept, the rest discarded with repeating ideas."""
    rows = [Experiment(tag="quad", parent_commit="p", proposer="baseline", description="baseline", status="keep",
                       metric=13.0, head_metric=None, meta={"baseline": True})]
    head = 13.0
    for i in range(1, n + 1):
        kept = i % 10 == 0
        metric = head - 0.01 if kept else head + 0.5
        rows.append(Experiment(tag="quad", parent_commit="p", proposer="llm", status="keep" if kept else "discard",
                               description=f"idea {i % 37}: scale X" + " padding" * 20, metric=metric,
                               head_metric=head, transcript="t" * 2000, diff="d" * 2000, meta={}))
        head = metric if kept else head
    with track.ledger.session() as s:
        s.add_all(rows)


def test_digest_stays_bounded_for_thousands(quad_track):
    track = Track(quad_track())
    fill(track, 3000)
    t0 = time.monotonic()
    digest = context.history_digest(track, "quad")
    assert time.monotonic() - t0 < 2.0
    assert len(digest) <= context.DIGEST_CHARS + 100
    assert digest.startswith("3001 experiments so far (2700 discard, 301 keep)")
    assert "- baseline: 13" in digest and "- head (what you are editing): 10" in digest
    assert "#3000 discard Δ +0.5: idea 2: scale X" in digest  # the most recent is listed with its delta
    assert "Dead ends" in digest and "×" in digest  # repeated ideas are grouped, not repeated
    assert "negative is better" in digest


def test_assemble_has_every_section(quad_track):
    path = quad_track(files={"program.md": "# Be bold\nTry big changes.\n"})
    track = Track(path)
    fill(track, 3)
    track.ledger.add_note("Y is an int; keep it one")
    idea = track.ledger.add_idea("set Y to 5")
    track.ledger.add_idea("try X = 0")
    prompt = context.assemble(track, "quad", idea, track.dir, "Call finish.")
    for part in ("Try big changes.", "`score`, minimize", "editable files now: params.py", "budget of 5 s",
                 "4 experiments so far", "idea #1", "set Y to 5", "#2 try X = 0", "Y is an int",
                 "# What to do now\n\nCall finish."):
        assert part in prompt, part
    assert len(context.assemble(track, "other", None)) < 6000  # an empty tag still assembles


def test_notes_keep_the_newest_within_budget(quad_track):
    track = Track(quad_track())
    for i in range(100):
        track.ledger.add_note(f"note {i} " + "x" * 100)
    text = context.notes_digest(track, max_chars=1000)
    assert len(text) <= 1000 and "note 99 " in text and "note 0 " not in text
    assert text.index("note 98 ") < text.index("note 99 ")  # oldest first among the kept


def test_price_table_prefix_and_overrides(tmp_path):
    table = PriceTable()
    assert table.price("gpt-4o-mini-2024-07-18").input == 0.15  # longest prefix wins over gpt-4o
    assert table.cost("my-local-model", 10**6, 10**6) == 0.0
    (tmp_path / "prices.toml").write_text('[prices]\n"my-local-model" = { input = 1.0, output = 2.0 }\n')
    over = load_overrides(tmp_path, env={"OVERNIGHT_PRICES": '{"gpt-4o": [9, 9]}'})
    table = PriceTable(over)
    assert table.cost("my-local-model", 10**6, 10**6) == 3.0 and table.price("openai/gpt-4o").output == 9
    with pytest.raises(PriceError, match="gpt-x"):
        load_overrides(None, env={"OVERNIGHT_PRICES": '{"gpt-x": "cheap"}'})


def test_spec_summary_tells_the_agent_the_step_budget_inputs_and_pattern(quad_track):
    path = quad_track(spec="""\
[track]
name = "quad"
editable = ["params.py"]
inputs = ["data/*.bin"]
[run]
command = "{python} run.py --steps=$OVERNIGHT_BUDGET_STEPS"
budget_seconds = 5
budget_steps = 250
[metric]
name = "score"
pattern = 'val loss (\\d+\\.\\d+)'
""")
    summary = context.spec_summary(Track(path))
    assert "fixed budget of 250 steps" in summary and "budget of 5 s" not in summary
    assert "inputs (not in git, read-only" in summary and "data/*.bin" in summary
    assert "val loss (\\d+\\.\\d+)" in summary
