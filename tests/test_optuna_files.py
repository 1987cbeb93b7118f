"""The optuna proposer on tracks written the way people write them, through real loops: a numeric
choice spelled as a float, string choices holding `;` or `#`, CRLF files, one name in two files, a
deterministic metric, and a winning move that lost the race to another keep."""

from __future__ import annotations

import subprocess
import threading

import pytest
from test_optuna import GREEDY, git_show_n, run, track_with

from overnight.core.spec import SpecError
from overnight.core.status import Status
from overnight.loop import Limits, Loop
from overnight.proposers.optuna import OptunaProposer
from overnight.track import Track

INT_N = '[[search]]\nfile = "params.py"\nname = "N"\nlow = 1\nhigh = 3\nint = true\n'
BATCH = '[[search]]\nfile = "params.py"\nname = "BATCH"\nchoices = [16, 32, 64]\n'


def test_a_numeric_choice_written_as_a_float_is_that_choice(tmp_path):
    # `BATCH = 32.0` against choices [16, 32, 64]: the head's key read "32.0" and the study's "32", so no
    # point was ever tried: each move was proposed twice and a 9-point box repeated N=3 thirteen times.
    track = track_with(tmp_path, "N = 1\nBATCH = 32.0\n", "(N - 3) ** 2 + abs(BATCH - 64) / 16", INT_N + BATCH)
    exps = run(track, 14)
    points = [(git_show_n(track, e.commit), _batch(track, e.commit)) for e in exps if e.commit]
    assert len(points) == len(set(points)), points  # no point twice
    assert len(exps) < 14  # the 9-point box was walked to its end, and it said so
    assert not any("BATCH=32" in (e.description or "") for e in exps)  # 32.0 -> 32 is no change


def _batch(track: Track, commit: str) -> float:
    from overnight.git.repo import git

    ns: dict = {}
    exec(git(track.dir, "show", f"{commit}:params.py"), ns)
    return ns["BATCH"]


def test_string_choices_with_separators_and_crlf_files_stay_valid_python(tmp_path):
    # A choice 'a;b' was written and read back as 'a' (the value stopped at `;`): the next write gave
    # `N = 'abc';b'`, a SyntaxError, and every later candidate crashed. A CRLF file came back LF.
    search = '[[search]]\nfile = "params.py"\nname = "MODE"\nchoices = ["x", "a;b", "c#d"]\n'
    track = track_with(tmp_path, "MODE = 'x'\r\nK = 1\r\n", "{'x': 2, 'a;b': 1, 'c#d': 0}[MODE]", search)
    exps = run(track, 3)
    assert [e.status for e in exps if e.status == Status.CRASH] == []
    assert track.ledger.experiments()[-1].status in (Status.KEEP, Status.DISCARD)
    kept = [e for e in exps if e.status == Status.KEEP]
    best = subprocess.run(["git", "show", f"{kept[-1].commit}:params.py"], cwd=track.dir, capture_output=True,
                          check=True).stdout
    assert best == b"MODE = 'c#d'\r\nK = 1\r\n", best  # kept, the file's line ends as they were


def test_one_name_in_two_files_is_a_spec_error(tmp_path):
    two = ('[[search]]\nfile = "params.py"\nname = "LR"\nlow = 0.001\nhigh = 1.0\nlog = true\n'
           '[[search]]\nfile = "other.py"\nname = "LR"\nlow = 0.001\nhigh = 1.0\nlog = true\n')
    with pytest.raises(SpecError, match=r"\[\[search\]\] #2 \(LR\): the name is already \[\[search\]\] #1's"):
        track_with(tmp_path, "LR = 0.1\n", "LR", two.replace('"other.py"', '"params.py"')).spec  # noqa: B018


def test_a_deterministic_metric_keeps_a_real_gain(tmp_path):
    # With no noise the head's three equal runs had a rounded mean, a noise floor of 1e-16 instead of 0,
    # and a better candidate's equal runs were discarded as "ignores OVERNIGHT_SEED".
    from overnight.core.spec import Spec
    from overnight.judge.policy import make_policy

    spec = Spec.model_validate({"track": {"name": "t", "editable": ["p.py"]}, "run": {"command": "true"},
                                "metric": {"name": "acc", "direction": "maximize"}})
    policy = make_policy(spec)
    head = [0.888021] * 3
    verdicts = [policy.decide(head, [0.889479] * n).action for n in (1, 2)]
    assert verdicts == ["more", "keep"], verdicts


def test_a_winning_move_that_lost_the_race_is_replayed_on_the_new_head(tmp_path):
    # Two slots: A=6 and B=6 both beat the head; A's keep moved the branch first, B's rebase conflicted
    # (adjacent lines), and B=6 was told to the walk as a discard: "B up" went last, so B=2 and B=1
    # ran before B=6 came back. A win that lost the race is a move that worked: it goes first.
    search = ('[[search]]\nfile = "params.py"\nname = "A"\nlow = 0\nhigh = 8\nint = true\n'
              '[[search]]\nfile = "params.py"\nname = "B"\nlow = 0\nhigh = 8\nint = true\n')
    expr = "(__import__('time').sleep(0.2) or 0) + 10 * ((A - 6) ** 2 + (B - 6) ** 2)"
    track = track_with(tmp_path, "A = 4\nB = 4\n", expr, search, GREEDY)
    Loop(track, OptunaProposer(track, "t"), limits=Limits(max_experiments=8), stop=threading.Event(),
         workers=2, lookahead=1).run()
    exps = track.ledger.experiments()
    lost = next(e for e in exps if e.meta.get("lost_race"))  # both first moves win: one loses the race
    name, value = lost.description.split("=")
    later = [e.description for e in exps if e.id > lost.id and e.description.startswith(name + "=")
             and "," not in e.description]
    assert later and int(later[0].split("=")[1]) >= int(value), (lost.description, later)


def test_a_head_outside_the_box_is_brought_in_by_a_move_of_its_own(tmp_path):
    # `LR = 0.5` above `high` and DROP off its grid: the first walk move also clipped them, so "WD up" got
    # the credit (or the blame) for the clip, and the walk then spent its next moves on WD.
    search = ('[[search]]\nfile = "params.py"\nname = "LR"\nlow = 0.001\nhigh = 0.1\nlog = true\n'
              '[[search]]\nfile = "params.py"\nname = "DROP"\nlow = 0.0\nhigh = 0.5\nstep = 0.1\n'
              '[[search]]\nfile = "params.py"\nname = "WD"\nlow = 0.0\nhigh = 0.4\n')
    track = track_with(tmp_path, "LR = 0.5\nDROP = 0.35\nWD = 0.1\n", "(LR - 0.05) ** 2 + (DROP - 0.2) ** 2 + WD",
                       search)
    exps = run(track, 3)
    assert exps[0].description == "LR=0.1, DROP=0.3", [e.description for e in exps]  # 0.35 snaps onto the grid
    assert exps[0].meta.get("move") == "(into the box)"
    assert all("," not in e.description for e in exps[1:]), [e.description for e in exps]  # one constant each


@pytest.mark.parametrize("entry, says", [
    ('low = 0.5\nhigh = 4.5\nint = true\n', "`int = true` needs whole `low`, `high` and `step`"),
    ('low = 0\nhigh = 10\nint = true\nstep = 2.5\n', "`int = true` needs whole"),
    ('low = 0.0\nhigh = 1.0\nstep = 0\n', "`step` (0.0) must be above 0"),
    ('low = 0.0\nhigh = 1.0\nstep = -0.5\n', "`step` (-0.5) must be above 0"),
])
def test_a_search_entry_the_walk_would_leave_is_a_spec_error_that_names_it(tmp_path, entry, says):
    search = '[[search]]\nfile = "params.py"\nname = "N"\n' + entry
    with pytest.raises(SpecError) as e:
        track_with(tmp_path, "N = 1\n", "N", search).spec  # noqa: B018
    assert "[[search]] #1" in str(e.value) and says in str(e.value), str(e.value)


def test_a_choice_line_in_a_box_narrower_than_four_decades_steps_by_a_quarter_of_it():
    # WIDTH 64..1024 spans 1.2 decades: a decade's step from 256 left the box at once (snapped to 64
    # and 1024, 15-75 sigma worse), six proposals a night on a held-out track with no keep.
    from overnight.core.spec import SearchParam
    from overnight.proposers.scales import rescaled

    params = [SearchParam(file="p.py", name="HEADS", choices=[4, 8]),
              SearchParam(file="p.py", name="WIDTH", low=64, high=1024, log=True, int=True)]

    def key(x):
        return (str(x["HEADS"]), str(x["WIDTH"]))

    head = {"HEADS": 4, "WIDTH": 256}
    values = {key(head): 1.0, key({"HEADS": 8, "WIDTH": 256}): 1.2}
    probes = sorted(m[2]["WIDTH"] for m in rescaled(params, head, values, set(values), key))
    assert probes == [128, 512], probes  # 10 ** (+-1.2 / 4): a factor of two, inside the box
