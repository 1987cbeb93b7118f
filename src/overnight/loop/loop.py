"""The loop: propose, commit, check, run, evaluate, decide, record; resume after any crash.

`Loop` wires explicit parts that each own one piece of state and pass plain data:
the session (lock, stop flags, limits), the worktree pool, the head tracker, intake (the
proposer thread and its candidates), the scheduler (jobs and slots), the judge (`Policy`) and
the recorder (the only writer of ledger rows, refs, the branch and the live state).

The proposer works in its own thread while runs occupy the slots (pipelining); the loop's
thread alone writes. An experiment row is written only once its candidate is a commit and a
slot takes it, and stays `running` until decided, so a killed loop resumes that exact
experiment: none lost, none counted twice.
"""

from __future__ import annotations

import queue
import threading
import time
from statistics import fmean
from typing import Any

from overnight.core.status import PENDING, Status
from overnight.execution import fingerprint
from overnight.execution.executor import Executor, make_executor
from overnight.execution.process import kill_tree
from overnight.execution.runner import prepare
from overnight.judge.policy import Policy, make_policy
from overnight.loop.head import HeadTracker
from overnight.loop.intake import Intake, Outcome
from overnight.loop.jobs import IDEA_LEASE_SECONDS, MAX_RETRIES, Interrupted, Job, LoopError, SlotView
from overnight.loop.pipeline import Candidate
from overnight.loop.recorder import LoopState, Recorder
from overnight.loop.scheduler import Decision, Scheduler
from overnight.loop.session import Limits, Session
from overnight.loop.worktrees import WorktreePool
from overnight.proposers.base import Proposer
from overnight.storage.ledger import Experiment
from overnight.track import Track

__all__ = ["Limits", "Loop", "LoopState"]


class Loop:
    def __init__(self, track: Track, proposer: Proposer, tag: str | None = None, limits: Limits | None = None,
                 policy: Policy | None = None, stop: threading.Event | None = None, workers: int = 1,
                 executor: str | Executor = "local", ray_address: str | None = None, lookahead: int = 1):
        self.track, self.spec, self.repo = track, track.spec, track.repo
        self.proposer = proposer
        self.policy = policy or make_policy(track.spec)
        self.tag = tag or track.name
        self.branch = f"overnight/{self.tag}"
        self.limits = limits or Limits()
        self.session = Session(track, self.limits, stop or threading.Event())
        self.stop = self.session.stop
        self.workers, self.executor_kind, self.ray_address = workers, executor, ray_address
        self.lookahead = lookahead  # 0: the serial loop (propose only while nothing runs)
        self.platform = fingerprint.fingerprint()
        self.state = LoopState(tag=self.tag, branch=self.branch, max_experiments=self.limits.max_experiments,
                               budget=self.spec.run.budget_seconds)
        self.recorder = Recorder(track, self.tag, self.branch, self.state)
        self.events: queue.Queue = queue.Queue()
        self.pool = WorktreePool(self.repo, track.paths.worktrees)
        self.head = HeadTracker(self.policy)
        self.executor: Executor | None = None
        self.intake: Intake | None = None
        self.scheduler: Scheduler | None = None

    def set_deadline(self) -> None:
        self.state.deadline = self.session.set_deadline()

    # --- lifecycle --------------------------------------------------------------------------------
    def run(self) -> LoopState:
        self.session.acquire()
        try:
            self._start()
            self._pipeline()
            if self.stop.is_set():
                raise Interrupted
        except Interrupted:
            self.recorder.say("stopped; `overnight run` again resumes where this left off")
            self.stop.set()
        finally:
            try:
                self._shutdown()
            finally:
                self.state.phase = "stopped"
                self.session.release()
        return self.state

    def _start(self) -> None:
        """Clean up after a killed loop, make sure data, refs, slots and the proposer thread exist."""
        kill_tree(None, f"{self.track.token}:")
        self.pool.prune()
        # Under the lock no other loop runs: every unfinished run (a candidate's or a head
        # measurement's) died with the last loop and is redone when needed.
        self.track.ledger.delete_unfinished_runs()
        self.recorder.reopen_orphan_ideas()
        self.state.phase = "preparing"
        prepare(self.track)
        base = self.recorder.open_tag()
        # The evaluator runs from a pristine checkout of the base commit, never from a candidate's files.
        self.repo.add_worktree(self.track.paths.trusted, base)
        ex = self.executor_kind
        self.executor = ex if not isinstance(ex, str) else make_executor(ex, self.track, self.workers,
                                                                         self.session.halt, self.ray_address)
        self.platform = self.executor.platform() or self.platform
        self.state.executor = self.executor.name
        for slot in self.executor.slots:
            slot.worktree = self.pool.create(slot.index, base)
            slot.busy, slot.commit = False, base
        n = len(self.executor.slots)
        self.pool.fill(n, 2 * n + self.lookahead, base)
        self.state.slots = [SlotView(s.index, s.label) for s in self.executor.slots]
        self.intake = Intake(self.track, self.tag, self.proposer, self.pool, self.events, self.session.pstop,
                             self.lookahead, self.platform, screen=getattr(self.policy, "screen", None))
        self.scheduler = Scheduler(self.spec, self.policy, self.session, self.head, self.recorder, self.intake,
                                   self.pool, self.events, self.platform, self._apply)
        self.scheduler.executor = self.executor
        self.intake.thread.start()
        head = self._head_in_ledger()
        if head is not None:
            self.head.reset(head, self.scheduler.values(head))
        self.state.head = head.metric if head else None
        exps = self.track.ledger.experiments(tag=self.tag)
        self._recall_noise(exps)
        if head is not None and getattr(self.policy, "replication_alpha", None):
            self.scheduler.resume_replication(head, exps)
        base_exp = next((e for e in exps if e.meta.get("baseline")), None)
        self.state.baseline = base_exp.metric if base_exp else None
        self.state.show(exps[-8:])
        for exp in (e for e in exps if e.status in PENDING):
            self.recorder.say(f"resuming experiment #{exp.id}: {exp.description}")
            self.scheduler.pending.append(exp)
        if head is None and not any(e.meta.get("baseline") for e in self.scheduler.pending):
            self.scheduler.pending.appendleft(self.recorder.add_baseline(base, self.platform))

    def _head_in_ledger(self) -> Experiment | None:
        kept = self.track.ledger.experiments(tag=self.tag, status={Status.KEEP})
        tip = self.repo.resolve(f"refs/heads/{self.branch}")
        on_tip = [e for e in kept if e.commit == tip]
        return on_tip[-1] if on_tip else (kept[-1] if kept else None)

    def _shutdown(self) -> None:
        """Stop runs that are still going (error paths), the proposer, and leave no worktree or process behind."""
        sched = self.scheduler
        if sched is not None and sched.jobs:
            self.session.halt.set()
            deadline = time.time() + 30
            while any(j.running for j in sched.jobs) and time.time() < deadline:  # only runs still out report back
                try:
                    self._handle(self.events.get(timeout=0.5))
                except queue.Empty:
                    continue
                except (LoopError, Interrupted):
                    continue
            for job in sched.jobs:
                if job.kind in ("candidate", "baseline"):
                    self.recorder.interrupted(job.exp, "the loop stopped")
        self.session.pstop.set()
        if self.intake is not None:
            if self.intake.thread.is_alive():
                self.intake.thread.close()
            for cand in self.intake.drain(self.events):  # proposals that will never run give their ideas back
                if cand.idea is not None and cand.retry_of is None:
                    self.recorder.finish_idea(cand.idea.id, "open")
        if self.executor is not None:
            self.executor.close()
        kill_tree(None, f"{self.track.token}:")
        self.pool.prune()  # the trusted checkout stays for the evaluator
        self.recorder.clear_slots()

    # --- the event loop ---------------------------------------------------------------------------
    def _pipeline(self) -> None:
        assert self.scheduler is not None
        self.state.phase = "running"
        while True:
            if self.stop.is_set():
                self.session.halt.set()
                self.session.pstop.set()
            self.scheduler.dispatch()
            self._request_proposals()
            if self._finished():
                return
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            self._handle(event)

    def _finished(self) -> bool:
        assert self.scheduler is not None and self.intake is not None
        if self.scheduler.jobs:
            return False
        if self.session.halt.is_set() or not self.session.may_start():
            return True
        if self.scheduler.pending or self.intake.busy():
            return False
        return self.intake.no_more

    def _handle(self, event: tuple) -> None:
        assert self.scheduler is not None and self.intake is not None
        kind = event[0]
        if kind == "proposed":
            runnable = not self.session.halt.is_set() and self.session.may_start()
            self._apply(self.intake.on_proposed(event[1], runnable))
        elif kind == "run":
            self.scheduler.on_run(*event[1:])
        elif kind == "message":
            self.recorder.say(event[1])

    def _request_proposals(self) -> None:
        assert self.executor is not None and self.intake is not None and self.scheduler is not None
        s, sched = self.session, self.scheduler
        if self.intake.no_more or s.pstop.is_set() or not s.may_start() or self.head.exp is None:
            return
        if any(j.kind == "baseline" for j in sched.jobs):
            return  # the proposer learns the baseline before its first proposal
        free = sum(not slot.busy for slot in self.executor.slots)
        idle = not (sched.jobs or sched.pending or self.intake.ready)
        want = self.intake.wanted(free, len(sched.pending), idle, s.remaining())
        self.intake.request(want, self.head.exp.commit or "", self.head.metric,
                            lambda: self.recorder.claim_idea(IDEA_LEASE_SECONDS))

    # --- applying what the parts decided ----------------------------------------------------------
    def _apply(self, item: Decision | Outcome) -> None:
        if isinstance(item, Outcome):
            return self._apply_outcome(item)
        if item.kind == "replicated":
            return self._replicated(item)
        job, status, reason = item.job, item.status, item.reason
        if job.kind == "baseline" and status != Status.KEEP:  # the baseline failed: recorded, the loop stops
            self.recorder.decide(job.exp, status, reason, job.values, item.out)
            return
        if job.kind == "baseline":
            exp = self.recorder.decide(job.exp, Status.KEEP, reason, job.values, item.out)
            self.state.baseline = exp.metric
            self._new_head(exp, job)
            note = getattr(self.policy, "baseline_note", lambda v: None)(job.values)
            if note:
                self.recorder.say(note)
            assert self.intake is not None
            self.intake.thread.baseline(exp)
            return
        retry = None
        if status == Status.KEEP:
            with self.pool.lock:
                lost = self.recorder.advance(job.exp)
            if lost:
                status, retry, reason = self._lost_race(job.exp, reason, lost)
                job.exp.meta = {**job.exp.meta, "lost_race": True}  # it beat its head: the proposer learns a win
        previous = self.head.exp
        replicate = (status == Status.KEEP and getattr(self.policy, "replication_alpha", None)
                     and previous is not None and job.slot is not None)
        stats = {**item.stats, "replication_pending": 1.0} if replicate else item.stats  # redone on resume
        exp = self.recorder.decide(job.exp, status, reason, job.values, item.out, stats)
        if status == Status.KEEP:
            self._new_head(exp, job)
            if replicate:
                assert self.scheduler is not None  # the keep must reproduce on fresh runs, on its slot
                self.scheduler.jobs.append(Job(exp, "replicate", slot=job.slot, head_exp=previous,
                                               head_gen=self.head.generation))
        self._after(exp)
        if retry is not None:
            assert self.intake is not None
            self.intake.ready.appendleft(retry)

    def _lost_race(self, exp: Experiment, reason: str, error: str) -> tuple[str, Candidate | None, str]:
        """Another keep moved the branch meanwhile: re-queue the candidate onto the new head (a few times)."""
        tries = exp.meta.get("retries", 0)
        if tries >= MAX_RETRIES or self.session.halt.is_set():
            return Status.DISCARD, None, f"branch moved underneath: {error}"
        keep = {k: v for k, v in exp.meta.items() if k not in ("trial", "log", "lines_delta")}
        retry = Candidate(parent=exp.parent_commit, head_metric=None, commit=exp.commit, retry_of=exp.id,
                          fields=dict(proposer=exp.proposer, description=exp.description,
                                      meta={**keep, "retries": tries + 1}))
        return (Status.DISCARD, retry,
                f"{reason}; but another keep moved the branch meanwhile: re-queued onto the new head")

    def _new_head(self, exp: Experiment, job: Job) -> None:
        self.head.reset(exp, job.values)
        if job.kind == "baseline":  # the baseline's runs are fresh head runs on the slots they ran on
            for slot, value in job.by_slot:
                if self.head.contemporaneous:
                    self.head.record(slot, value)

    def _replicated(self, item: Decision) -> None:
        job = item.job
        assert job.slot is not None
        stats = {**item.stats, "replication_old_mean": _mean(job.old_values), "replication_new_mean": _mean(job.values)}
        if item.status == Status.KEEP:
            self.recorder.replicated(job.exp, stats)
            self.recorder.say(f"#{job.exp.id} {item.reason}")
            if job.head_gen == self.head.generation:
                for v in job.values:
                    self.head.record(job.slot, v)
            return
        problem = self.recorder.revert(job.exp, job.head_exp, item.reason, stats)
        self.recorder.say(problem or f"#{job.exp.id} {item.reason}")
        if problem is None:
            old = self.track.ledger.experiment(job.head_exp.id) or job.head_exp
            self.head.reset(old)
            for v in job.old_values:
                self.head.record(job.slot, v)

    def _recall_noise(self, exps: list[Any]) -> None:
        """A resumed night's noise floor starts from the head runs recorded before the restart, one series
        per kept commit: the baseline's runs, a keep's runs after its own (never a candidate's runs)."""
        observe = getattr(self.policy, "observe_head", None)
        if observe is None or not self.head.contemporaneous:
            return
        for e in (e for e in exps if e.status == Status.KEEP):
            values = self.scheduler.values(e)
            own = 0 if e.meta.get("baseline") else int((e.stats or {}).get("n") or len(values))
            if len(values) - own >= 2:
                observe(("recorded", e.id), values[own:])

    def _apply_outcome(self, out: Outcome) -> None:
        if out.reopen_idea is not None:
            self.recorder.finish_idea(out.reopen_idea, "open")  # nobody will run it: back in the queue
        if out.withdrawn is not None and self.intake is not None:
            self.intake.thread.withdraw(out.withdrawn)  # queued before any proposal the reopen asks for
            self.intake.reopen()
        if out.kind == "fatal":
            raise LoopError(out.reason)
        if out.kind == "stop" and out.reason:
            self.recorder.say(out.reason)
        if out.kind != "unrun":
            return
        exp = self.recorder.unrun(out.fields, out.status, out.reason, out.commit, out.diff)
        self.session.count()  # every recorded experiment counts toward --max-experiments
        self._after(exp)
        if out.fatal:
            assert self.intake is not None
            raise LoopError(f"{self.intake.errors} proposals in a row failed; last: {out.reason}")

    def _after(self, exp: Experiment) -> None:
        """A decided experiment: its idea is done and the proposer learns from it."""
        if exp.meta.get("baseline"):
            return
        if exp.idea_id is not None and not exp.meta.get("retry_of"):
            self.recorder.finish_idea(exp.idea_id, "done", exp.id)
        assert self.intake is not None
        self.intake.thread.observe(exp)


def _mean(values: list[float]) -> float | None:
    return fmean(values) if values else None
