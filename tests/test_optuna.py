"""The optuna proposer's walk around every head, through real loops on temp tracks."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest
from conftest import make_repo

from overnight.loop import Limits, Loop
from overnight.proposers import make_proposer
from overnight.proposers.base import Proposal, ProposalContext
from overnight.proposers.optuna import OptunaProposer
from overnight.track import Track

GREEDY = '[policy]\nrule = "greedy"\n'
RUN = """\
import os, random
from params import *
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("score:", {expr} + rng.gauss(0, 1e-6))
"""
SPEC = """\
[track]
name = "t"
editable = ["params.py"]
[run]
command = "{python} run.py"
budget_seconds = 5
timeout_seconds = 20
[metric]
name = "score"
{search}{extra}"""


def track_with(tmp: Path, params: str, expr: str, search: str, extra: str = GREEDY) -> Track:
    d = make_repo(tmp / "t", {"params.py": params, "run.py": RUN.format(expr=expr),
                              "overnight.toml": SPEC.format(python=sys.executable, search=search, extra=extra)})
    return Track(d)


def run(track: Track, n: int, proposer=None) -> list:
    """n more experiments (the first loop on a track also runs the baseline); all but the baseline."""
    prop = proposer or make_proposer("optuna", track, "t")
    fresh = not track.ledger.experiments()
    Loop(track, prop, limits=Limits(max_experiments=n + fresh), lookahead=0, stop=threading.Event()).run()
    return track.ledger.experiments()[1:]


LOG_LR = '[[search]]\nfile = "params.py"\nname = "LR"\nlow = 0.0001\nhigh = 1.0\nlog = true\n'


def test_a_new_head_walks_on_with_a_step_twice_as_long_then_back_to_the_plain_one(tmp_path):
    # The optimum sits at 16x the start: after the first x2 is kept, the new head gets a step twice as
    # long (x4), then x10 (a decade at most) overshoots, and the plain x2 from the head lands on it.
    track = track_with(tmp_path, "LR = 0.01\n", "(__import__('math').log2(LR / 0.16)) ** 2", LOG_LR)
    exps = run(track, 4)
    assert [e.description for e in exps] == ["LR=0.02", "LR=0.08", "LR=0.8", "LR=0.16"]
    assert [e.status for e in exps] == ["keep", "keep", "discard", "keep"]


CATS = "".join(f'[[search]]\nfile = "params.py"\nname = "{n}"\nchoices = {c}\n' for n, c in (
    ("ACT", '["relu", "gelu", "silu", "tanh", "mish"]'), ("OPT", '["sgd", "adam", "lion"]')))
CAT_EXPR = ("{'relu': 0.4, 'gelu': 0.3, 'silu': 0.2, 'tanh': 0.5, 'mish': 0.0}[ACT]"
            " + {'sgd': 1.0, 'adam': 0.5, 'lion': 0.0}[OPT]")


def test_every_other_choice_is_tried_and_a_categorical_track_is_solved_in_budget(tmp_path):
    track = track_with(tmp_path, 'ACT = "relu"\nOPT = "sgd"\n', CAT_EXPR, CATS)
    bound = 1 + (5 - 1) + (3 - 1)  # 1 + sum over constants of (choices - 1), the baseline included
    exps = run(track, bound - 1)
    assert len(exps) == bound - 1
    acts = [e.description for e in exps if e.description.startswith("ACT=")]
    assert {a.split(",")[0] for a in acts} == {"ACT='gelu'", "ACT='silu'", "ACT='tanh'", "ACT='mish'"}
    kept = [e for e in exps if e.status == "keep"]
    assert kept and kept[-1].metric < 1e-3  # mish and lion: the optimum, within the bound
    points = [e.description for e in exps]
    assert len(points) == len(set(points))  # no point proposed twice


QUAD2 = ('[[search]]\nfile = "params.py"\nname = "X"\nlow = -5\nhigh = 5\n'
         '[[search]]\nfile = "params.py"\nname = "Y"\nlow = 0\nhigh = 10\nint = true\n')


def test_the_walk_survives_a_restart_and_never_repeats_a_point(tmp_path):
    track = track_with(tmp_path, "X = 3.0\nY = 2\n", "(X - 1) ** 2 + (Y - 5) ** 2", QUAD2)
    first = run(track, 3)
    track = Track(track.dir)  # a fresh process: a new proposer over the same ledger and study
    both = run(track, 5)
    assert [e.id for e in both[:3]] == [e.id for e in first] and len(both) == 8
    assert all("move" in e.meta for e in both), [e.meta for e in both]  # still walking, no random sampler
    heads = {}
    for e in both:  # a point is never proposed twice from the same head
        key = (e.parent_commit, e.description)
        assert key not in heads, f"#{e.id} repeats #{heads[key]}"
        heads[key] = e.id


def test_the_parabola_through_a_ring_lands_on_a_linear_optimum(tmp_path):
    track = track_with(tmp_path, "X = 3.0\n", "(X - 1.7) ** 2", '[[search]]\nfile = "params.py"\nname = "X"\n'
                       "low = -5\nhigh = 5\n")
    exps = run(track, 4)
    assert any(e.description == "X=1.7" and e.status == "keep" for e in exps), [e.description for e in exps]


class Once:
    """A hand edit (as a person or an agent would make) that becomes the head."""

    name = "hand"

    def propose(self, ctx: ProposalContext) -> Proposal:
        (ctx.workdir / "params.py").write_text("X = 1.5\nY = 4\n")
        return Proposal(description="by hand", proposer=self.name)

    def observe(self, exp) -> None:
        pass

    def baseline(self, exp) -> None:
        pass


def test_the_study_is_told_a_head_it_did_not_propose(tmp_path):
    track = track_with(tmp_path, "X = 3.0\nY = 2\n", "(X - 1) ** 2 + (Y - 5) ** 2", QUAD2)
    hand = run(track, 1, Once())[0]
    assert hand.status == "keep"
    track = Track(track.dir)
    prop = OptunaProposer(track, "t")
    exps = run(track, 2, prop)
    told = [t for t in prop.study.get_trials() if t.user_attrs.get("head")]
    assert [(t.params, t.value) for t in told] == [({"X": 1.5, "Y": 4}, hand.metric)]
    assert exps[1].description in ("X=4.0", "Y=6")  # the walk starts from the hand-made head
    assert all(e.parent_commit == hand.commit for e in exps[1:])


def test_a_proposal_lost_in_a_crash_is_proposed_again_after_the_restart(tmp_path):
    track = track_with(tmp_path, "X = 3.0\nY = 2\n", "(X - 1) ** 2 + (Y - 5) ** 2", QUAD2)
    run(track, 2)
    ctx = ProposalContext(track=track, tag="t", workdir=track.dir, parent_commit="", head_metric=None)
    prop = OptunaProposer(Track(track.dir), "t")
    lost = prop.propose(ctx)  # the loop dies here: no experiment records this trial
    (track.dir / "params.py").write_text("X = 3.0\nY = 2\n")
    again = OptunaProposer(Track(track.dir), "t").propose(ctx)
    assert again.description == lost.description and again.meta["trial"] != lost.meta["trial"]
    (track.dir / "params.py").write_text("X = 3.0\nY = 2\n")


def test_a_pipelined_proposal_replayed_on_a_new_head_teaches_what_ran(tmp_path):
    # X and Y far apart in the file: a move of one replays cleanly on a head that moved the other.
    # A run of 0.15 s: the proposer, one ahead, always has its next proposal ready before a keep.
    track = track_with(tmp_path, "X = 3.0\n" + "# -\n" * 8 + "Y = 2\n",
                       "(__import__('time').sleep(0.15) or 0) + (X - 1) ** 2 + (Y - 5) ** 2", QUAD2)
    prop = OptunaProposer(track, "t")
    Loop(track, prop, limits=Limits(max_experiments=8), stop=threading.Event()).run()  # proposes one ahead
    exps = track.ledger.experiments()[1:]
    rebased = [e for e in exps if e.meta.get("rebased_from")]
    assert rebased, "no proposal was replayed on a new head: the test proves nothing"
    told = {(t.params["X"], t.params["Y"]): t.value for t in prop.study.get_trials()
            if t.state.name == "COMPLETE"}
    for e in rebased:
        ran = git_show(track, e.commit)
        assert told.get(ran) == e.metric, (e.id, ran, e.description)
    # the decision is recorded on the point that ran (the walk's memory and the stall count read it),
    # never on the asked point that did not run
    trials = prop.study.get_trials()
    assert not [t.number for t in trials if t.user_attrs.get("orphan") and "status" in t.user_attrs]
    ran = [t for t in trials if t.state.name == "COMPLETE" and "move" in t.user_attrs]
    assert all("status" in t.user_attrs for t in ran), [t.user_attrs for t in ran]
    seen = [(e.parent_commit, e.description) for e in exps]
    assert len(seen) == len(set(seen))  # never the same move from the same head


def git_show(track: Track, commit: str) -> tuple[float, int]:
    from overnight.git.repo import git

    ns: dict = {}
    exec(git(track.dir, "show", f"{commit}:params.py"), ns)
    return float(ns["X"]), int(ns["Y"])


INTS = ('[[search]]\nfile = "params.py"\nname = "X"\nlow = 0\nhigh = 4\nint = true\n'
        '[[search]]\nfile = "params.py"\nname = "Y"\nlow = 0\nhigh = 4\nint = true\n')


def test_near_misses_of_two_constants_are_tried_together(tmp_path):
    # Each change alone gains 0.3, below the keep rule's margin of 0.5; both together gain 0.6.
    track = track_with(tmp_path, "X = 0\nY = 0\n", "1 - 0.3 * (X == 1) - 0.3 * (Y == 1)", INTS,
                       extra='[policy]\nmin_effect = 0.5\n')
    exps = run(track, 3)
    assert [(e.description, e.status) for e in exps] == [("X=1", "discard"), ("Y=1", "discard"),
                                                         ("X=1, Y=1", "keep")]
    assert exps[2].meta["move"] == "(near-misses)"


INT_N = '[[search]]\nfile = "params.py"\nname = "N"\nlow = 1\nhigh = 8\nint = true\n'


@pytest.mark.parametrize("workers,lookahead", [(1, 1), (2, 3)])
def test_a_small_int_box_is_walked_to_its_end_with_no_point_lost_or_repeated(tmp_path, workers, lookahead):
    # Proposing ahead, a keep drops the proposals made on the old head (same line: they conflict); their
    # trials used to stay "running", so their points were never proposed again, and once the walk was
    # done the sampler re-proposed measured points and the head itself (no_change) all night. With
    # several proposals in flight the box's end was declared while a dropped one was still to come.
    track = track_with(tmp_path, "N = 4\n", "(__import__('time').sleep(0.15) or 0) + (N - 8) ** 2 + 0.1 * N", INT_N)
    prop = OptunaProposer(track, "t")
    loop = Loop(track, prop, limits=Limits(max_experiments=20), stop=threading.Event(), workers=workers,
                lookahead=lookahead)
    loop.run()
    exps = track.ledger.experiments()
    measured = [git_show_n(track, e.commit) for e in exps if e.commit and e.metric is not None]
    assert sorted(set(measured)) == list(range(1, 9)), measured  # every point of the box, the head's included
    assert len(measured) == len(set(measured)) == 8  # each once
    assert not [e for e in exps if e.status == "no_change"]
    said = [m for kind, m in loop.state.feed if kind == "say" and "all 8 points of the [[search]] box" in m]
    assert len(said) == 1, said  # said once, however many proposals were asked meanwhile
    assert len(exps) < 20  # it stopped: nothing was left to propose


def git_show_n(track: Track, commit: str) -> int:
    from overnight.git.repo import git

    ns: dict = {}
    exec(git(track.dir, "show", f"{commit}:params.py"), ns)
    return ns["N"]


def test_a_proposed_float_is_never_rounded_out_of_its_box(tmp_path):
    from overnight.core.spec import SearchParam
    from overnight.proposers.constants import literal, snap

    beta = SearchParam(file="p.py", name="B", low=0.9, high=0.9999999)
    assert float(literal(snap(beta, 0.99999995))) <= 0.9999999  # 6 digits used to print 1.0
    big = SearchParam(file="p.py", name="C", low=1_000_000.0, high=1_000_001.0)
    assert literal(snap(big, 1_000_000.4)) != literal(snap(big, 1_000_000.6))  # 6 digits: both 1e+06
    assert literal(snap(SearchParam(file="p.py", name="D", low=0.0, high=0.5, step=0.1), 0.31)) == "0.3"


def test_a_stalled_walk_takes_turns_with_the_sampler(tmp_path):
    # At the optimum every walk move is discarded: once its first ring (X and Y a quarter of the range
    # each way) is spent, every other proposal is the sampler's, so a basin the one-constant moves
    # cannot see is still looked for (docs/search.md).
    track = track_with(tmp_path, "X = 1.0\nY = 5\n", "(X - 1) ** 2 + (Y - 5) ** 2", QUAD2)
    exps = run(track, 9)
    moves = [e.meta.get("ring") if "move" in e.meta else "sampler" for e in exps]
    assert all(e.status != "keep" for e in exps)
    assert moves[:4] == [0, 0, 0, 0] and moves[4:9:2] == ["sampler"] * 3, moves
    assert all(m != "sampler" and m > 0 for m in moves[5:9:2]), moves


OPT_LR = ('[[search]]\nfile = "params.py"\nname = "OPT"\nchoices = ["a", "b"]\n'
          '[[search]]\nfile = "params.py"\nname = "LR"\nlow = 1e-5\nhigh = 1.0\nlog = true\n')


def test_another_choice_is_tried_at_its_own_scale(tmp_path):
    # `b` beats `a` only at its own learning rate, 100x below a's: at a's rate it looks 20x worse, and
    # a one-constant walk never moves OPT and LR together; the line search by decades (or the sampler's
    # turns, which take their chance first now and then) finds it within 10 experiments.
    expr = ("{'a': 0.2, 'b': 0.0}[OPT] + (__import__('math').log10(LR / {'a': 0.1, 'b': 0.001}[OPT])) ** 2")
    track = track_with(tmp_path, "OPT = 'a'\nLR = 0.1\n", expr, OPT_LR)
    exps = run(track, 10)
    kept = [e for e in exps if e.status == "keep"]
    assert kept and kept[0].description.startswith("OPT='b', LR="), [(e.description, e.status) for e in exps]


def _opt_lr_line():
    """An optimizer choice and a log learning rate, with a point key: the line search's inputs."""
    from overnight.core.spec import SearchParam

    params = [SearchParam(file="p.py", name="OPT", choices=["a", "b"]),
              SearchParam(file="p.py", name="LR", low=1e-5, high=1.0, log=True)]
    return params, lambda x: (x["OPT"], f"{x['LR']:.6g}")


def test_the_line_search_by_decades_follows_the_choice_to_its_own_scale():
    from overnight.proposers.scales import rescaled

    params, key = _opt_lr_line()
    head = {"OPT": "a", "LR": 0.1}
    f = {"a": lambda lr: 0.2, "b": lambda lr: __import__("math").log10(lr / 0.001) ** 2}
    values: dict = {key(head): 0.2}

    def step() -> dict | None:
        moves = rescaled(params, head, values, set(values), key)
        return moves[0][2] if moves else None

    assert step() == {"OPT": "b", "LR": 0.1}  # first the choice at the head's scale
    seen = []
    while (x := step()) is not None and len(seen) < 8:
        seen.append(x["LR"])
        values[key(x)] = f[x["OPT"]](x["LR"])
    # down a decade at a time while it gets better, one past the best, and done once bracketed (the
    # parabola's bottom through 0.01, 0.001 and 0.0001 is 0.001, already measured)
    assert seen == [0.1, 0.01, 0.001, 0.0001], seen


def test_the_study_learns_the_baseline_commits_constants_not_the_working_trees(tmp_path):
    # The baseline runs the base commit; an uncommitted edit (or another branch checked out) in the
    # working tree used to be taught as the baseline's point, with the baseline's value.
    track = track_with(tmp_path, "X = 3.0\nY = 2\n", "(X - 1) ** 2 + (Y - 5) ** 2", QUAD2)
    (track.dir / "params.py").write_text("X = -4.0\nY = 9\n")  # not committed: not the baseline
    prop = OptunaProposer(track, "t")
    Loop(track, prop, limits=Limits(max_experiments=1), lookahead=0, stop=threading.Event()).run()
    told = [t.params for t in prop.study.get_trials() if t.user_attrs.get("head")]
    assert told == [{"X": 3.0, "Y": 2}], told


def test_a_measured_box_gives_its_best_unkept_point_one_second_look_then_stops(tmp_path):
    # An outside run saw the true optimum of a small box discarded at p = 0.064 and the box declared
    # done with most of the night unused: a point measured better than the head gets one more look.
    import optuna

    from overnight.proposers.base import StopProposing
    from overnight.storage.ledger import Experiment

    track = track_with(tmp_path, "N = 4\n", "N", INT_N)
    prop = OptunaProposer(track, "t", storage=optuna.storages.InMemoryStorage())
    for n in range(1, 9):
        attrs = {"head": True} if n == 4 else {"move": "N", "status": "discard"}
        value = {4: 1.0, 6: 0.9}.get(n, 2.0)  # 6 looked better than the head, and was not kept
        prop.study.add_trial(optuna.trial.create_trial(params={"N": n}, distributions=prop.dists, value=value,
                                                       user_attrs=attrs))
    ctx = ProposalContext(track=track, tag="t", workdir=track.dir, parent_commit="", head_metric=1.0)
    again = prop.propose(ctx)
    assert again.description == "N=6"
    prop.observe(Experiment(status="discard", metric=0.95, meta=again.meta))
    (track.dir / "params.py").write_text("N = 4\n")
    with pytest.raises(StopProposing, match="all 8 points"):
        prop.propose(ctx)


def test_a_line_that_ends_at_its_best_decade_interpolates_before_it_extends():
    # b's own scale lies between two measured decades, the best one at the end of the line: the
    # parabola through the three decades nearest the best lands on it (0.001 x 10^0.6); extending
    # the line a decade further (0.1) wastes an experiment on a point the curve already rules out.
    from overnight.proposers.scales import rescaled

    params, key = _opt_lr_line()
    head = {"OPT": "a", "LR": 0.001}
    math = __import__("math")
    values: dict = {key(head): 0.5, **{key({"OPT": "b", "LR": 0.001 * 10.0**k}): (k - 0.6) ** 2 for k in (-1, 0, 1)}}
    moves = rescaled(params, head, values, set(values), key)
    assert moves and moves[0][2]["OPT"] == "b"
    assert math.isclose(moves[0][2]["LR"], 0.001 * 10**0.6, rel_tol=1e-3), moves[0]
