"""`overnight bench quickstart`'s accounting, on real loops over a tiny track shaped like tinylm
(a run that prints its own phases, a separate evaluator that reads only its artifact)."""

from __future__ import annotations

import io
import re
import sys
import threading
import time

from conftest import make_repo
from rich.console import Console

from overnight.bench.quickstart import breakdown, main
from overnight.core.status import Status
from overnight.loop import Limits, Loop
from overnight.proposers import make_proposer
from overnight.track import Track

TRAIN = """\
import json, os, random, time
from params import X
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
time.sleep(0.02)
print("startup_seconds: 0.01")
print("train_seconds: 0.02")
json.dump({"x": X + rng.gauss(0, 0.05)}, open(os.path.join(os.environ["OVERNIGHT_ARTIFACTS"], "m.json"), "w"))
"""
EVALUATE = """\
import json, os, time
start = time.perf_counter()
x = json.load(open(os.path.join(os.environ["OVERNIGHT_ARTIFACTS"], "m.json")))["x"]
time.sleep(0.03)
print("eval_seconds:", time.perf_counter() - start)
print("loss:", (x - 1.0) ** 2)
"""
SPEC = """\
[track]
name = "mini"
editable = ["params.py"]
[run]
command = "{python} train.py"
budget_seconds = 5
timeout_seconds = 30
[evaluate]
command = "{python} evaluate.py"
[metric]
name = "loss"
[[search]]
file = "params.py"
name = "X"
low = -5
high = 5
"""
FILES = {"params.py": "X = -2.0\n", "train.py": TRAIN, "evaluate.py": EVALUATE,
         "overnight.toml": SPEC.format(python=sys.executable)}


def test_breakdown_counts_the_head_runs_the_first_keep_waited_for(tmp_path):
    track = Track(make_repo(tmp_path / "mini", FILES))
    start = time.time()
    Loop(track, make_proposer("optuna", track, "mini"), limits=Limits(max_experiments=2),
         stop=threading.Event()).run()
    exps = track.ledger.experiments()
    runs_of = {e.id: track.ledger.runs(e.id) for e in exps}
    b = breakdown(exps, runs_of, start)

    kept = [e for e in exps[1:] if e.status == Status.KEEP]
    assert kept, [(e.status, e.reason) for e in exps]
    # One slot, one head series: the judge's noise floor had (head runs - 1) degrees of freedom at the keep.
    assert b.head_runs_before_keep == int(kept[0].stats["df"]) + 1
    assert b.candidate_runs_before_keep >= int(kept[0].stats["n"])
    assert b.runs == sum(len(rs) for rs in runs_of.values())
    # The baseline's (seed, value) pairs are its head runs, each with its own seed.
    assert [v for _, v in b.baseline] == [r.metric for r in runs_of[exps[0].id]]
    assert len({s for s, _ in b.baseline}) == len(b.baseline) >= 3
    per = b.per_run
    assert per["  train"] == 0.02 and per["  startup"] == 0.01  # the lines the run printed, averaged
    assert per["run (harness to harness)"] > per["run process"] > 0.02  # a run includes its process
    assert per["evaluator"] >= 0.03
    assert per["harness (reset, copy, git, evaluator start)"] > 0


def test_breakdown_of_a_night_without_a_keep_or_runs():
    assert breakdown([], {}, 0.0).runs == 0


def test_bench_prints_the_keep_the_runs_before_it_and_the_noise(tmp_path):
    example = make_repo(tmp_path / "mini", FILES)
    out = io.StringIO()
    main(2, 0, Console(file=out, width=400), example=example)
    text = out.getvalue()
    assert "on a fresh copy of mini, beside 0 CPU hog(s)" in text
    assert re.search(r"first keep: #2 X=\S+ -> [\d.]+ \(head [\d.]+\) after \d+ runs", text), text
    head, cand = map(int, re.search(r"before the first keep: (\d+) head runs .* \+ (\d+) candidate", text).groups())
    total = int(re.search(r"\((\d+) runs, prepare included\)", text).group(1))
    assert head >= 3 and cand >= 1 and head + cand <= total
    assert re.search(r"baseline noise sd [\d.]+ over \d+ runs", text)
    assert re.search(r"  train +0\.02\n", text)


def test_the_live_view_never_counts_head_runs_out_of_the_baseline_runs(tmp_path):
    """The quick start's view said "#1 (head) baseline · run 9 of 3" while the first keep waited for the noise floor."""
    from typer.testing import CliRunner

    from overnight.cli import app

    d = make_repo(tmp_path / "mini", FILES)
    res = CliRunner().invoke(app, ["run", str(d), "--max-experiments", "2"])
    assert res.exit_code == 0, res.output
    counted = [(int(a), int(b)) for a, b in re.findall(r"run (\d+) of (\d+)\b", res.output)]
    assert counted and all(a <= b for a, b in counted), res.output
    assert re.search(r"#1 \(head\) baseline: run 1[01]: the head measured again", res.output), res.output
