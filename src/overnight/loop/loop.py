"""The loop: propose, commit, check, run, evaluate, decide, record; resume after any crash.

The proposer works in its own thread while runs occupy the slots (pipelining); the
loop's thread is the only one that writes experiments, runs and the branch. An
experiment row is written only once its candidate is a commit and a slot takes it,
and stays `running` until decided, so a killed loop resumes that exact experiment:
none lost, none counted twice.
"""

from __future__ import annotations

import fcntl
import os
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from overnight.core import measurements as M
from overnight.execution import fingerprint
from overnight.execution.executor import Executor, make_executor
from overnight.execution.process import kill_tree
from overnight.execution.runner import prepare
from overnight.judge.policy import Policy, make_policy
from overnight.loop.intake import Intake
from overnight.loop.jobs import (
    IDEA_LEASE_SECONDS,
    MAX_CONSECUTIVE_ERRORS,
    Interrupted,
    Job,
    LoopError,
    SlotView,
    lines_delta,
)
from overnight.loop.pipeline import Candidate, ProposerThread
from overnight.loop.scheduler import Scheduler
from overnight.proposers.base import Proposer
from overnight.storage.ledger import PENDING, Experiment, Idea
from overnight.track import Track

__all__ = ["IDEA_LEASE_SECONDS", "MAX_CONSECUTIVE_ERRORS", "Interrupted", "Limits", "Loop", "LoopError", "LoopState", "lines_delta"]


@dataclass
class Limits:
    max_experiments: int | None = None
    hours: float | None = None


@dataclass
class LoopState:
    """What the live view shows; written by the loop, read by the view's thread."""

    tag: str = ""
    branch: str = ""
    phase: str = "starting"
    done: int = 0
    max_experiments: int | None = None
    deadline: float | None = None
    baseline: float | None = None
    head: float | None = None
    current: str = ""
    run_started: float | None = None
    budget: float = 0.0
    recent: list[Experiment] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    slots: list[SlotView] = field(default_factory=list)
    executor: str = "local"


class Loop(Scheduler, Intake):
    def __init__(self, track: Track, proposer: Proposer, tag: str | None = None, limits: Limits | None = None,
                 policy: Policy | None = None, stop: threading.Event | None = None, workers: int = 1,
                 executor: str | Executor = "local", ray_address: str | None = None, lookahead: int = 1):
        self.track = track
        self.spec = track.spec
        self.ledger = track.ledger
        self.repo = track.repo
        self.proposer = proposer
        self.policy = policy or make_policy(track.spec)
        self.tag = tag or track.name
        self.branch = f"overnight/{self.tag}"
        self.limits = limits or Limits()
        self.stop = stop or threading.Event()
        self.halt = threading.Event()  # stops the runs: the user's stop, or an error
        self.pstop = threading.Event()  # stops the proposer (ProposalContext.stop)
        self.workers, self.executor_kind, self.ray_address = workers, executor, ray_address
        self.lookahead = lookahead  # 0: the serial loop (propose only while nothing runs)
        self.platform = fingerprint.fingerprint()
        self.state = LoopState(tag=self.tag, branch=self.branch, max_experiments=self.limits.max_experiments,
                               budget=self.spec.run.budget_seconds)
        self.git_lock = threading.RLock()  # worktree add/remove/checkout and ref updates, one at a time
        self.events: queue.Queue = queue.Queue()
        self.jobs: list[Job] = []
        self.pending: deque[Experiment] = deque()
        self.ready: deque[Candidate] = deque()
        self.proposing = 0
        self.started = 0
        self.errors = 0
        self.unbilled: list[float] = [0, 0, 0.0]  # tokens in, tokens out, dollars of dropped proposals
        self.no_more_proposals = False
        self.executor: Executor | None = None
        self.prop_thread: ProposerThread | None = None
        self._head_values: list[float] | None = None
        self.pool: list = []  # free worktrees
        self.head_exp: Experiment | None = None
        self._lock_file = None

    # --- lifecycle --------------------------------------------------------------------------------
    def run(self) -> LoopState:
        self._acquire_lock()
        try:
            self._start()
            self._pipeline()
            if self.stop.is_set():
                raise Interrupted
        except Interrupted:
            self._say("stopped; `overnight run` again resumes where this left off")
            self.stop.set()
        finally:
            try:
                self._shutdown()
            finally:
                self.state.phase = "stopped"
                self._release_lock()
        return self.state

    def _acquire_lock(self) -> None:
        self.track.ensure_state()
        f = open(self.track.paths.lock, "a+")  # noqa: SIM115 - held for the loop's lifetime
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            raise LoopError(f"another `overnight run` is active on {self.track.dir} (pid {f.read().strip() or '?'})") from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        self._lock_file = f

    def _release_lock(self) -> None:
        if self._lock_file:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    def _start(self) -> None:
        """Clean up after a killed loop, make sure data, refs, slots and the proposer thread exist."""
        kill_tree(None, f"{self.track.token}:")
        self.repo.prune_worktrees(self.track.paths.worktrees)
        # Under the lock no other loop runs: every unfinished run (a candidate's or a head
        # measurement's) died with the last loop and is redone when needed.
        self.ledger.delete_unfinished_runs()
        self._reopen_orphan_ideas()
        self.state.phase = "preparing"
        prepare(self.track)
        tags = self.ledger.get("tags", {})
        if self.tag not in tags:
            dirty = self.repo.tracked_dirty()
            if dirty:
                self._say(f"note: uncommitted changes are not part of the baseline: {', '.join(dirty[:5])}")
            base = self.repo.resolve(f"refs/heads/{self.branch}") or self.repo.head_commit()
            tags[self.tag] = {"base": base, "branch": self.branch, "created": time.time()}
            self.ledger.put("tags", tags)
        self.base = tags[self.tag]["base"]
        self.ledger.put("current_tag", self.tag)
        self.repo.ensure_branch(self.branch, self.base)
        # The evaluator runs from a pristine checkout of the base commit, never from a candidate's files.
        self.repo.add_worktree(self.track.paths.trusted, self.base)
        ex = self.executor_kind
        self.executor = ex if not isinstance(ex, str) else make_executor(ex, self.track, self.workers, self.halt,
                                                                         self.ray_address)
        self.platform = self.executor.platform() or self.platform
        self.state.executor = self.executor.name
        wts = self.track.paths.worktrees
        for slot in self.executor.slots:
            slot.worktree = self.repo.add_worktree(wts / f"wt-{slot.index}", self.base)
            slot.busy, slot.commit = False, self.base
        # Spare worktrees: candidates are proposed in one and run in the same one (no checkout between).
        n = len(self.executor.slots)
        self.pool = [self.repo.add_worktree(wts / f"wt-{i}", self.base) for i in range(n, 2 * n + self.lookahead)]
        self.state.slots = [SlotView(s.index, s.label) for s in self.executor.slots]
        self.prop_thread = ProposerThread(self.track, self.tag, self.proposer, self.git_lock, self.events, self.pstop)
        self.prop_thread.start()
        head = self.head_exp = self._head()
        self.state.head = head.metric if head else None
        base_exp = self._baseline_experiment()
        self.state.baseline = base_exp.metric if base_exp else None
        self.state.recent = self.ledger.experiments(tag=self.tag)[-8:]
        for exp in self.ledger.experiments(tag=self.tag, status=PENDING):
            self._say(f"resuming experiment #{exp.id}: {exp.description}")
            self.pending.append(exp)
        if head is None and not any(e.meta.get("baseline") for e in self.pending):
            exp = self.ledger.add_experiment(
                tag=self.tag, parent_commit=self.base, commit=self.base, proposer="baseline",
                description="baseline", status="running", meta={"baseline": True}, platform=self.platform,
            )
            self.repo.keep_ref(self.tag, exp.id, self.base)
            self.pending.appendleft(exp)

    def _reopen_orphan_ideas(self) -> None:
        """Ideas claimed by a loop that died before their candidate became an experiment go back in the queue."""
        used = {e.idea_id for e in self.ledger.experiments() if e.idea_id is not None}
        with self.ledger.session() as s:
            for idea in s.query(Idea).filter(Idea.status == "claimed", Idea.claimed_by.like("loop:%")):
                if idea.id not in used:
                    idea.status, idea.lease_until = "open", None

    def _shutdown(self) -> None:
        """Stop runs that are still going (error paths), the proposer, and leave no worktree or process behind."""
        if self.jobs:
            self.halt.set()
            deadline = time.time() + 30
            while any(j.running for j in self.jobs) and time.time() < deadline:  # only runs still out report back
                try:
                    self._handle(self.events.get(timeout=0.5))
                except queue.Empty:
                    continue
                except (LoopError, Interrupted):
                    continue
            for job in self.jobs:
                if job.kind != "head":
                    self.ledger.update_experiment(job.exp.id, status="interrupted", reason="the loop stopped")
        self.pstop.set()
        if self.prop_thread is not None:
            self.prop_thread.close()
        while True:  # proposals that will never run give their ideas back
            try:
                kind, *rest = self.events.get_nowait()
            except queue.Empty:
                break
            if kind == "proposed":
                self.ready.append(rest[0])
        for cand in self.ready:
            if cand.idea is not None and cand.retry_of is None:
                self.ledger.finish_idea(cand.idea.id, "open")
        self.ready.clear()
        if self.executor is not None:
            self.executor.close()
        kill_tree(None, f"{self.track.token}:")
        with self.git_lock:
            self.repo.prune_worktrees(self.track.paths.worktrees)  # the trusted checkout stays for the evaluator
        self.ledger.put("slots", {})

    def _may_start(self) -> bool:
        if self.stop.is_set() or self.halt.is_set():
            return False
        if self.limits.max_experiments is not None and self.started >= self.limits.max_experiments:
            return False
        return not (self.state.deadline and time.time() >= self.state.deadline)

    def set_deadline(self) -> None:
        if self.limits.hours:
            self.state.deadline = time.time() + self.limits.hours * 3600

    # --- ledger views -----------------------------------------------------------------------------
    def _head(self) -> Experiment | None:
        kept = self.ledger.experiments(tag=self.tag, status={"keep"})
        tip = self.repo.resolve(f"refs/heads/{self.branch}")
        on_tip = [e for e in kept if e.commit == tip]
        return on_tip[-1] if on_tip else (kept[-1] if kept else None)

    def _baseline_experiment(self) -> Experiment | None:
        exps = self.ledger.experiments(tag=self.tag)
        return next((e for e in exps if e.meta.get("baseline")), None)

    def _values(self, exp: Experiment) -> list[float]:
        key = self.platform["key"]
        return [r.metric for r in self.ledger.runs(exp.id)
                if r.status == "ok" and M.finite(r.metric) and r.platform_key == key and r.finished_at]

    def _say(self, text: str) -> None:
        self.state.messages = [*self.state.messages[-4:], text]
