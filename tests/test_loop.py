"""The core loop end to end on temp repos, with scripted proposers for the edge cases."""

import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from conftest import git

from overnight.execution.process import processes_with_marker
from overnight.loop import Limits, Loop
from overnight.proposers import make_proposer
from overnight.proposers.base import Proposal, ProposalContext
from overnight.report.results import tsv
from overnight.track import Track

RULE = ""  # the default keep rule; greedy (the opt-out) has tests of its own below


class Scripted:
    """A proposer that applies the given edits in order."""

    name = "scripted"

    def __init__(self, edits: list[Callable[[Path], str]]):
        self.edits = list(edits)
        self.observed: list[str] = []

    def propose(self, ctx: ProposalContext) -> Proposal:
        return Proposal(description=self.edits.pop(0)(ctx.workdir), proposer=self.name)

    def observe(self, exp) -> None:
        self.observed.append(exp.status)

    def baseline(self, exp) -> None:
        pass


def run_loop(d: Path, proposer, n: int) -> Track:
    track = Track(d)
    Loop(track, proposer, limits=Limits(max_experiments=n), stop=threading.Event()).run()
    return track


def test_optuna_loop_improves_and_ledger_git_tsv_agree(quad_track):
    d = quad_track(spec_extra=RULE)
    track = Track(d)
    Loop(track, make_proposer("optuna", track, "quad"), limits=Limits(max_experiments=15)).run()
    exps = track.ledger.experiments()
    assert len(exps) == 15
    assert exps[0].description == "baseline" and exps[0].status == "keep"
    kept = [e for e in exps if e.status == "keep"]
    assert kept[-1].metric < exps[0].metric
    # The branch points at the last kept commit; every candidate commit stays reachable under refs/overnight.
    assert git(d, "rev-parse", "overnight/quad").strip() == kept[-1].commit
    refs = git(d, "for-each-ref", "--format=%(objectname)", "refs/overnight/quad/").split()
    assert {e.commit for e in exps if e.commit} <= set(refs)
    # Discarded diffs are in the ledger.
    assert all(e.diff for e in exps[1:] if e.status == "discard")
    rows = tsv(track.ledger, "score").splitlines()
    assert rows[0].split("\t")[:5] == ["commit", "score", "memory_gb", "status", "description"]
    assert [r.split("\t")[3] for r in rows[1:]] == [e.status for e in exps]
    # No worktree left behind but the trusted one.
    assert git(d, "worktree", "list").count("\n") == 2
    # Every run records its platform and measurements.
    runs = track.ledger.runs(exps[1].id)
    assert runs and runs[0].platform_key == exps[1].platform["key"]
    assert "wall_seconds" in runs[0].measurements and "memory_gb" in runs[0].measurements


def _write(name: str, text: str, desc: str) -> Callable[[Path], str]:
    def edit(w: Path) -> str:
        (w / name).parent.mkdir(parents=True, exist_ok=True)
        (w / name).write_text(text)
        return desc

    return edit


def test_frozen_edits_are_invalid_and_never_run(quad_track, tmp_path):
    marker = tmp_path / "executed"
    # run.py touches a marker file when it runs; every candidate below must be rejected before running.
    d = quad_track(spec_extra=RULE)
    run_py = (d / "run.py").read_text()

    def symlink(w: Path) -> str:
        (w / "params.py").unlink()
        os.symlink("/etc/passwd", w / "params.py")
        return "symlink out"

    def rename(w: Path) -> str:
        (w / "params.py").rename(w / "params2.py")
        return "rename editable file"

    edits = [
        _write("run.py", f"open({str(marker)!r}, 'w')\n" + run_py, "edit the frozen runner"),
        _write("extra.py", "print('hi')\n", "add a file outside the globs"),
        symlink,
        rename,
    ]
    track = run_loop(d, Scripted(edits), 5)
    exps = track.ledger.experiments()
    assert [e.status for e in exps] == ["keep", "invalid", "invalid", "invalid", "invalid"]
    assert "run.py: modified, but it is frozen" in exps[1].reason
    assert "extra.py: added" in exps[2].reason
    assert "symlinks are not allowed" in exps[3].reason
    assert "params2.py: added" in exps[4].reason
    assert not marker.exists()
    assert all(not track.ledger.runs(e.id) for e in exps[1:])


def test_failure_outcomes(quad_track):
    d = quad_track(spec_extra=RULE)
    edits = [
        _write("params.py", "X = 1.0\nY = 5\nraise ValueError('boom')\n", "crash"),
        _write("params.py", "X = float('nan')\nY = 5\n", "nan"),
        _write("params.py", "X = 1.0\nY = 5\nraise MemoryError()\n", "oom"),
        _write("params.py", "X = 1.0\nY = 5\nimport sys; sys.stdout = open('/dev/null', 'w')\n", "no metric"),
        _write("params.py", "X = 3.0\nY = 2  # an int\n", "same"),
    ]
    track = run_loop(d, Scripted(edits), 6)
    by = {e.description: e for e in track.ledger.experiments()}
    assert by["crash"].status == "crash" and "ValueError: boom" in by["crash"].reason
    assert by["nan"].status == "nan"
    assert by["oom"].status == "oom"
    assert by["no metric"].status == "no_metric" and "score" in by["no metric"].reason
    assert by["same"].status == "no_change" and by["same"].commit is None


def test_timeout_kills_a_runaway_run_with_children(quad_track):
    d = quad_track(spec_extra=RULE)
    spec = d / "overnight.toml"
    spec.write_text(spec.read_text().replace("budget_seconds = 5", "budget_seconds = 1").replace(
        "timeout_seconds = 20", "timeout_seconds = 1.5"))
    git(d, "commit", "-qam", "short timeout")
    forever = "X = 1.0\nY = 5\nimport subprocess, time\nsubprocess.Popen(['sleep', '300'])\nwhile True: time.sleep(0.05)\n"
    track = run_loop(d, Scripted([_write("params.py", forever, "ignore the budget")]), 2)
    exp = track.ledger.experiments()[-1]
    assert exp.status == "timeout"
    assert processes_with_marker(f"{track.token}:") == []


def test_guard_turns_better_into_discard(quad_track):
    d = quad_track(spec_extra=RULE + "[[guard]]\nmetric = 'aux'\nmax = 1\n")
    run = d / "run.py"
    run.write_text(run.read_text() + "print('aux:', X)\n")
    git(d, "commit", "-qam", "aux")
    track = run_loop(d, Scripted([_write("params.py", "X = 1.5\nY = 5\n", "better but aux too big")]), 2)
    exp = track.ledger.experiments()[-1]
    assert exp.status == "discard" and "guard aux <= 1 violated" in exp.reason


def test_evaluator_metric_wins_over_the_runs_claim(quad_track):
    # The run prints a fake metric; the evaluator computes the real one from an artifact.
    evaluate = (
        "import json, os\n"
        "p = json.load(open(os.path.join(os.environ['OVERNIGHT_ARTIFACTS'], 'p.json')))\n"
        "print('score:', (p['X'] - 1) ** 2 + (p['Y'] - 5) ** 2)\n"
    )
    run = (
        "import json, os\nfrom params import X, Y\n"
        "json.dump({'X': X, 'Y': Y}, open(os.path.join(os.environ['OVERNIGHT_ARTIFACTS'], 'p.json'), 'w'))\n"
        "print('score: 0.0')\n"
    )
    d = quad_track(spec_extra=RULE + f'[evaluate]\ncommand = "{sys.executable} evaluate.py"\n',
                   files={"evaluate.py": evaluate, "run.py": run})
    track = run_loop(d, Scripted([_write("params.py", "X = 2.0\nY = 5\n", "real gain")]), 2)
    base, cand = track.ledger.experiments()
    assert base.metric == 13.0  # (3-1)^2 + (2-5)^2, not the printed 0.0
    assert cand.metric == 1.0 and cand.status == "keep"


def test_ideas_are_claimed_by_proposers_that_read_them(quad_track):
    d = quad_track(spec_extra=RULE)
    track = Track(d)
    track.ledger.add_idea("set X to 1")
    seen = []

    class Reader(Scripted):
        uses_ideas = True

        def propose(self, ctx: ProposalContext) -> Proposal:
            seen.append(ctx.idea.text if ctx.idea else None)
            return super().propose(ctx)

    # (a proposal made ahead may conflict with a new head and be asked again: three edits are on hand)
    edits = [_write("params.py", f"X = 1.0\nY = {y}\n", f"y to {y}") for y in (2, 4, 5)]
    run_loop(d, Reader(edits), 3)
    assert seen[0] == "set X to 1" and set(seen[1:]) == {None}  # one idea, claimed once
    idea = track.ledger.ideas()[0]
    exp = track.ledger.experiments()[1]
    assert exp.description == "y to 2"
    assert idea.status == "done" and idea.experiment_id == exp.id and exp.idea_id == idea.id


def test_a_sampler_leaves_the_idea_queue_alone(quad_track):
    d = quad_track(spec_extra=RULE)
    track = Track(d)
    track.ledger.add_idea("an idea for an agent")
    Loop(track, make_proposer("optuna", track, "quad"), limits=Limits(max_experiments=3)).run()
    assert track.ledger.ideas()[0].status == "open"


def test_a_track_in_a_subfolder_of_a_bigger_repo(tmp_path):
    from conftest import QUAD_PARAMS, QUAD_RUN, QUAD_SPEC, make_repo

    root = make_repo(tmp_path / "mono", {
        "README.md": "a monorepo\n",
        "research/quad/params.py": QUAD_PARAMS,
        "research/quad/run.py": "SIGMA = 0.01\n" + QUAD_RUN,
        "research/quad/overnight.toml": QUAD_SPEC.format(python=sys.executable) + RULE,
    })
    d = root / "research" / "quad"

    def outside(w: Path) -> str:
        (w.parents[1] / "README.md").write_text("edited from a candidate\n")
        return "edit the repo's README"

    track = run_loop(d, Scripted([_write("params.py", "X = 1.0\nY = 5\n", "optimum"), outside]), 3)
    base, best, bad = track.ledger.experiments()
    assert best.status == "keep" and best.metric < 0.1
    assert bad.status == "invalid" and "README.md: outside the track folder" in bad.reason
    assert git(root, "show", "overnight/quad:research/quad/params.py").startswith("X = 1.0")
    assert git(root, "status", "--porcelain") == ""  # the user's checkout is untouched


def test_optuna_starts_with_one_constant_moves_around_the_head(quad_track):
    d = quad_track(spec_extra=RULE)
    track = Track(d)
    Loop(track, make_proposer("optuna", track, "quad"), limits=Limits(max_experiments=5), lookahead=0).run()
    exps = track.ledger.experiments()[1:]
    # X in [-5, 5] (a quarter range is 2.5), Y int in [0, 10]; the head starts at X=3.0, Y=2.
    assert exps[0].description == "X=5.0"  # 3 + 2.5, clipped to the range
    assert exps[1].description.startswith("Y=") and "X=" not in exps[1].description
    assert all(e.description.count("=") == 1 for e in exps)


GREEDY = '[policy]\nrule = "greedy"\n'


def test_greedy_opt_out_is_autoresearchs_rule(quad_track):
    """`rule = "greedy"`: one run per candidate, kept when better than the head's one value, no fresh head
    runs, no seed screen (a seed-only change is run and judged like any other)."""
    d = quad_track(spec_extra=GREEDY)
    edits = [_write("params.py", "X = 2.0\nY = 2  # an int\n", "closer X"),
             _write("params.py", "X = 2.0\nY = 2  # an int\nSEED = 7\n", "set a seed")]
    track = run_loop(d, Scripted(edits), 3)
    base, better, seed = track.ledger.experiments()
    assert better.status == "keep" and seed.status in ("keep", "discard")
    assert [len(track.ledger.runs(e.id)) for e in (base, better, seed)] == [1, 1, 1]
    assert "random seed" not in seed.reason


def test_default_rule_measures_the_head_afresh_after_a_keep(quad_track):
    d = quad_track(spec_extra=RULE)
    edits = [_write("params.py", "X = 2.0\nY = 2  # an int\n", "closer X"),
             _write("params.py", "X = 2.0\nY = 2  # an int\nSEED = 7\n", "set a seed")]
    track = Track(d)
    Loop(track, Scripted(edits), limits=Limits(max_experiments=3), lookahead=0).run()  # the seed on the new head
    base, better, seed = track.ledger.experiments()
    assert better.status == "keep" and len(track.ledger.runs(better.id)) > better.stats["n"]
    assert seed.status == "discard" and "random seed" in seed.reason and not track.ledger.runs(seed.id)


def test_a_resumed_night_keeps_its_noise_floor(quad_track):
    # A restart used to start the noise floor over from the new session's few head runs (2 degrees of
    # freedom instead of 14 in an outside run): keeps waited for more head runs, and discards were
    # judged with a floor that was mostly luck. The head runs recorded before the restart count.
    d = quad_track(spec_extra=RULE)
    track = Track(d)
    first = Loop(track, Scripted([_write("params.py", "X = 2.0\nY = 2  # an int\n", "closer X")]),
                 limits=Limits(max_experiments=2), lookahead=0)
    first.run()
    sigma, df = first.policy.noise_floor()
    assert track.ledger.experiments()[1].status == "keep" and df >= 4
    again = Loop(Track(d), Scripted([_write("params.py", "X = 2.5\nY = 2  # an int\n", "X back a bit")]),
                 limits=Limits(max_experiments=3), lookahead=0)
    again.run()
    recorded = {k: v for k, v in again.policy._series.items() if k[0] == "recorded"}
    assert sum(len(v) - 1 for v in recorded.values()) >= df  # every series the first session measured
    assert again.policy.noise_floor()[1] > df
