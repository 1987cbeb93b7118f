"""The loop's parts on their own: the head tracker, intake and the scheduler, each with real neighbours
(a real judge, a temp git track, a local executor) and plain data in and out."""

from __future__ import annotations

import queue
import sys
import threading
from pathlib import Path

import pytest
from conftest import QUAD_PARAMS, QUAD_RUN, QUAD_SPEC, make_repo

from overnight.core.spec import Spec
from overnight.core.status import Status
from overnight.execution.executor import LocalExecutor
from overnight.execution.runner import prepare
from overnight.judge.noise import REFRESH_EVERY, NoisePolicy
from overnight.judge.policy import GreedyPolicy, make_policy
from overnight.loop.head import HeadTracker
from overnight.loop.intake import Intake, Outcome
from overnight.loop.jobs import Job, SlotView
from overnight.loop.pipeline import Candidate
from overnight.loop.recorder import LoopState, Recorder
from overnight.loop.scheduler import Decision, Scheduler
from overnight.loop.session import Limits, Session
from overnight.loop.worktrees import WorktreePool
from overnight.proposers.base import Proposal
from overnight.track import Track

SPEC = Spec.model_validate({"track": {"name": "q", "editable": ["a"]}, "run": {"command": "x"},
                            "metric": {"name": "loss"}})
GREEDY = Spec.model_validate({**SPEC.model_dump(), "policy": {"rule": "greedy"}})


# --- the head tracker ---------------------------------------------------------------------------
def test_head_is_measured_on_every_slot_then_refreshed_on_schedule():
    judge = NoisePolicy(SPEC)
    head = HeadTracker(judge)
    head.reset("exp-1")
    assert head.needs(0) == head.needs(1) == judge.baseline_runs  # a fresh head: every slot measures it
    for v in (1.0, 1.1, 0.9):
        head.record(0, v)
    assert head.needs(0) == 0 and head.needs(1) == 3
    for _ in range(REFRESH_EVERY):
        head.ran_candidate(0)
    assert head.needs(0) == 1  # the refresh comes due after REFRESH_EVERY candidate runs on the slot
    head.record(0, 1.05)
    assert head.needs(0) == 0 and head.reference(0) == [1.0, 1.1, 0.9, 1.05]
    assert judge.noise_floor()[1] == 3  # the judge saw the slot's series once: 4 runs, 3 df
    gen = head.generation
    head.reset("exp-2", [0.5, 0.5, 0.5])  # a keep: the kept runs are not reused by a contemporaneous judge
    assert head.generation == gen + 1 and head.needs(0) == 3 and head.values() == []
    assert judge.noise_floor()[1] == 3  # the old head's series still counts, once


def test_greedy_head_reuses_the_kept_runs_on_all_slots():
    head = HeadTracker(GreedyPolicy(GREEDY))
    head.reset("exp", [2.0])
    assert head.needs(0) == head.needs(3) == 0 and head.reference(3) == [2.0] and head.metric == 2.0
    for _ in range(50):
        head.ran_candidate(0)
    assert head.needs(0) == 0  # no refresh schedule


# --- intake -------------------------------------------------------------------------------------
@pytest.fixture
def parts(tmp_path: Path):
    d = make_repo(tmp_path / "quad", {"params.py": QUAD_PARAMS, "run.py": "SIGMA = 0.01\n" + QUAD_RUN,
                                      "overnight.toml": QUAD_SPEC.format(python=sys.executable)})
    track = Track(d)
    track.ensure_state()
    base = track.repo.head_commit()
    pool = WorktreePool(track.repo, track.paths.worktrees)
    pool.fill(0, 2, base)
    yield track, pool, base
    pool.prune()


class Nobody:
    name = "nobody"


def intake_for(track: Track, pool: WorktreePool, screen=None) -> Intake:
    return Intake(track, "t", Nobody(), pool, queue.Queue(), threading.Event(), 1, {"key": "k"}, screen)


def test_intake_turns_proposals_into_outcomes_and_writes_nothing(parts):
    track, pool, base = parts
    judge = NoisePolicy(track.spec)
    intake = intake_for(track, pool, judge.screen)
    wt = pool.lease()
    intake.proposing = 6
    prop = Proposal(description="d", proposer="p")
    outs = [
        intake.on_proposed(Candidate(base, 1.0, error="boom", worktree=wt), runnable=True),
        intake.on_proposed(Candidate(base, 1.0, proposal=prop), runnable=True),
        intake.on_proposed(Candidate(base, 1.0, commit="c1", violations=["run.py: modified"]), runnable=True),
        intake.on_proposed(Candidate(base, 1.0, commit="c2", diff="-SEED = 42\n+SEED = 137\n"), runnable=True),
        intake.on_proposed(Candidate(base, 1.0, stop="done"), runnable=True),
        intake.on_proposed(Candidate(base, 1.0, commit="c3", diff="-X = 3.0\n+X = 1.0\n"), runnable=True),
    ]
    assert [(o.kind, o.status) for o in outs] == [("unrun", Status.ERROR), ("unrun", Status.NO_CHANGE),
                                                  ("unrun", Status.INVALID), ("unrun", Status.DISCARD),
                                                  ("stop", ""), ("ready", "")]
    assert "random seed" in outs[3].reason and outs[3].commit == "c2"
    assert [c.commit for c in intake.ready] == ["c3"] and intake.no_more and intake.proposing == 0
    assert wt in pool.free  # nothing will run where the failed proposal was made: the worktree is back
    assert track.ledger.experiments() == []  # intake writes nothing


def test_intake_asks_for_what_the_slots_can_take(parts):
    track, pool, base = parts
    intake = intake_for(track, pool)
    assert intake.wanted(free_slots=2, pending=0, idle=False, remaining=None) == 3  # free slots + lookahead
    assert intake.wanted(free_slots=2, pending=1, idle=False, remaining=2) == 1  # --max-experiments caps it
    intake.lookahead = 0
    assert (intake.wanted(1, 0, idle=True, remaining=None), intake.wanted(1, 0, idle=False, remaining=None)) == (1, 0)


def test_intake_errors_in_a_row_become_fatal(parts):
    track, pool, base = parts
    intake = intake_for(track, pool)
    intake.proposing = 5
    outs = [intake.on_proposed(Candidate(base, 1.0, error=f"e{i}"), runnable=True) for i in range(5)]
    assert [o.fatal for o in outs] == [False] * 4 + [True]
    intake.proposing = 1
    assert intake.on_proposed(Candidate(base, 1.0, fatal="no key"), runnable=True).kind == "fatal"


# --- the scheduler ------------------------------------------------------------------------------
def test_scheduler_measures_the_head_on_each_slot_then_decides_candidates(parts):
    track, pool, base = parts
    prepare(track)
    track.repo.add_worktree(track.paths.trusted, base)
    judge = make_policy(track.spec)
    session = Session(track, Limits(max_experiments=3), threading.Event())
    state = LoopState(slots=[])
    recorder = Recorder(track, "t", "overnight/t", state)
    recorder.open_tag()
    events: queue.Queue = queue.Queue()
    emitted: list[Decision | Outcome] = []
    head = HeadTracker(judge)
    intake = intake_for(track, pool)
    executor = LocalExecutor(track, 2, session.halt)
    sched = Scheduler(track.spec, judge, session, head, recorder, intake, pool, events, {"key": "k"}, emitted.append)
    sched.executor = executor
    for slot in executor.slots:
        slot.worktree, slot.commit = pool.create(10 + slot.index, base), base
    state.slots = [SlotView(s.index, s.label) for s in executor.slots]
    sched.pending.append(recorder.add_baseline(base, {"key": "k"}))

    def pump(until) -> None:
        while not until():
            sched.dispatch()
            kind, *rest = events.get(timeout=30)
            assert kind == "run"
            sched.on_run(*rest)

    try:
        pump(lambda: emitted)
        (done,) = emitted
        assert isinstance(done, Decision) and done.job.kind == "baseline" and done.status == Status.KEEP
        assert len(done.job.values) == judge.baseline_runs and session.started == 1
        exp = recorder.decide(done.job.exp, Status.KEEP, done.reason, done.job.values, done.out)
        head.reset(exp)
        for s, v in done.job.by_slot:
            head.record(s, v)
        # With no candidate ready, each free slot measures the head there: slot-bound head jobs, no candidate.
        sched.dispatch()
        kinds = sorted((j.kind, j.slot) for j in sched.jobs)
        assert kinds and all(k == "head" for k, _ in kinds) and {s for _, s in kinds} <= {0, 1}
        pump(lambda: not sched.jobs)
        assert head.needs(0) == head.needs(1) == 0
        assert all(len(head.reference(s)) >= judge.baseline_runs for s in (0, 1))
        # A candidate on a slot is compared with that slot's head runs.
        wt = pool.lease()
        (wt / "params.py").write_text("X = 1.0\nY = 5\n")
        commit = track.repo.commit_all(wt, "better")
        intake.ready.append(Candidate(base, exp.metric, commit=commit, worktree=wt,
                                      proposal=Proposal(description="better", proposer="p")))
        emitted.clear()
        sched.dispatch()
        (job,) = [j for j in sched.jobs if j.kind == "candidate"]
        assert job.head_values == head.reference(job.slot)
        pump(lambda: emitted)
        (done,) = emitted
        assert done.status == Status.KEEP and done.job is job and job.bracketed  # a head run beside it
        assert len(job.values) >= 3 and session.started == 2
    finally:
        session.halt.set()
        executor.close()


def test_job_is_bracketed_only_by_head_runs_after_its_first_run():
    job = Job(exp=None, kind="candidate", head_values=[1.0, 1.0, 1.0])
    job.head_first = 3
    assert not job.bracketed
    job.head_values.append(1.0)
    assert job.bracketed
