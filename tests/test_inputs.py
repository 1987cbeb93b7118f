"""Inputs git does not carry, the metric by pattern and the step budget, through a real loop."""

import shutil
import sys
import threading
from pathlib import Path

import pytest
from conftest import git, make_repo

from overnight.core.spec import SpecError
from overnight.execution.runner import PrepareError
from overnight.loop import Limits, Loop, LoopError
from overnight.proposers import make_proposer
from overnight.track import Track

# Reads a gitignored data file, prints its own log format, never reads OVERNIGHT_BUDGET_SECONDS.
RUN = """\
import os, sys
from params import X
steps = int(os.environ.get("OVERNIGHT_BUDGET_STEPS", "3"))
data = float(open("data/train.txt").read())
for i in range(steps):
    print(f"step {i}: train loss {9.0 + i:.4f}, val loss {(X - data) ** 2 + 0.1 * (steps - i):.4f}")
if len(sys.argv) > 1:  # a candidate's try at changing the user's data
    open("data/train.txt", "w").write("0")
"""
SPEC = """\
[track]
name = "pat"
editable = ["params.py"]
inputs = ["data/*.txt"]
[prepare]
command = "{python} prepare.py"
[run]
command = "{python} run.py{arg}"
budget_seconds = 5
budget_steps = 4
{sandbox}
[metric]
name = "val_loss"
pattern = 'val loss (\\d+\\.\\d+)'
[policy]
rule = "greedy"
[[search]]
file = "params.py"
name = "X"
low = 0
high = 4
"""
PREPARE = "import pathlib\np = pathlib.Path('data')\np.mkdir(exist_ok=True)\n(p / 'train.txt').write_text('2.0')\n"


def build(tmp_path: Path, arg: str = "", sandbox: str = "", prepare: str = PREPARE) -> Path:
    return make_repo(tmp_path / "pat", {
        "params.py": "X = 0.0\n", "run.py": RUN, "prepare.py": prepare, ".gitignore": "data/\n",
        "overnight.toml": SPEC.format(python=sys.executable, arg=arg, sandbox=sandbox),
    })


def loop(d: Path, n: int) -> Track:
    track = Track(d)
    Loop(track, make_proposer("optuna", track, "pat"), limits=Limits(max_experiments=n),
         stop=threading.Event()).run()
    return track


def test_ignored_data_pattern_metric_and_step_budget_reach_every_run(tmp_path):
    d = build(tmp_path)
    track = loop(d, 3)
    exps = track.ledger.experiments()
    assert exps[0].status == "keep", exps[0].reason
    # The last `val loss` of the run counts (4 steps: the last line has 0.1 * 1 added), not the first.
    assert exps[0].metric == pytest.approx((0 - 2.0) ** 2 + 0.1)
    run = track.ledger.runs(exps[0].id)[0]
    assert run.measurements["steps_per_second"] > 0
    assert all(e.status in ("keep", "discard") for e in exps), [e.reason for e in exps]
    # The link is ignored by git: no candidate commit carries the data.
    for e in exps[1:]:
        assert "data/" not in git(d, "show", "--stat", "--format=", e.commit)


def test_pattern_without_a_match_says_which_pattern(tmp_path):
    d = build(tmp_path)
    (d / "overnight.toml").write_text((d / "overnight.toml").read_text().replace("val loss (", "val_acc ("))
    git(d, "commit", "-qam", "pattern that never matches")
    track = Track(d)
    with pytest.raises(Exception, match="val_acc"):
        Loop(track, make_proposer("optuna", track, "pat"), limits=Limits(max_experiments=1)).run()
    assert "no match for [metric] pattern" in track.ledger.experiments()[0].reason


def test_missing_input_after_prepare_is_one_clear_line(tmp_path):
    d = build(tmp_path, prepare="print('made nothing')\n")
    track = Track(d)
    with pytest.raises(PrepareError) as e:
        Loop(track, make_proposer("optuna", track, "pat"), limits=Limits(max_experiments=1)).run()
    msg = str(e.value)
    assert "\n" not in msg and "[track] inputs #1 'data/*.txt'" in msg and "matches nothing" in msg
    assert track.ledger.experiments() == []


def test_failing_prepare_is_one_line_with_its_log(tmp_path):
    d = build(tmp_path, prepare="import sys\nraise SystemExit('no tokenizer here')\n")
    track = Track(d)
    with pytest.raises(PrepareError) as e:
        Loop(track, make_proposer("optuna", track, "pat"), limits=Limits(max_experiments=1)).run()
    msg = str(e.value)
    assert "\n" not in msg and "exited with 1" in msg and "no tokenizer here" in msg
    assert str(track.paths.state / "prepare.log") in msg


def test_tracked_or_unignored_inputs_are_refused(tmp_path):
    d = build(tmp_path)
    (d / ".gitignore").write_text("")
    git(d, "commit", "-qam", "data not ignored")
    track = Track(d)
    with pytest.raises(PrepareError, match="not ignored by git"):
        Loop(track, make_proposer("optuna", track, "pat"), limits=Limits(max_experiments=1)).run()


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="needs bubblewrap")
def test_sandboxed_run_reads_inputs_and_cannot_change_them(tmp_path):
    from overnight.execution.sandbox import check

    if check():
        pytest.skip(f"bwrap does not work here: {check()}")
    d = build(tmp_path, arg=" overwrite", sandbox='sandbox = "bubblewrap"')
    with pytest.raises(LoopError, match="baseline failed"):
        loop(d, 1)
    track = Track(d)
    exp = track.ledger.experiments()[0]
    # The run read the data, then its write to it failed: the user's file is untouched.
    assert exp.status == "crash" and "Read-only file system" in track.ledger.runs(exp.id)[0].tail
    assert (d / "data" / "train.txt").read_text() == "2.0"


@pytest.mark.parametrize("key, value, says", [
    ("pattern", "'val (loss) (\\\\d+)'", "exactly one (group)"),
    ("pattern", "'val loss ('", "not a valid regular expression"),
    ("inputs", '["../outside"]', "relative to the track folder"),
])
def test_bad_new_keys_name_the_key(tmp_path, key, value, says):
    d = build(tmp_path)
    text = (d / "overnight.toml").read_text()
    if key == "pattern":
        text = text.replace("pattern = 'val loss (\\d+\\.\\d+)'", f"pattern = {value}")
    else:
        text = text.replace('inputs = ["data/*.txt"]', f"inputs = {value}")
    (d / "overnight.toml").write_text(text)
    with pytest.raises(SpecError) as e:
        Track(d)
    assert says in str(e.value) and (f"[metric] {key}" in str(e.value) or f"[track] {key}" in str(e.value))
