"""The scheduler: which job each free slot runs next, and what a finished run means for its job.

It owns the jobs and the queue of resumed experiments. It asks the head tracker what a slot
must measure first, the judge what a candidate's values say, and hands every decision to the
loop as plain data (`Decision`, or intake's `Outcome`); rows are written by the recorder.
"""

from __future__ import annotations

import queue
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from overnight.core import measurements as M
from overnight.core.spec import Spec
from overnight.core.status import Status
from overnight.execution import fingerprint
from overnight.execution.executor import Executor, RunJob, Slot
from overnight.execution.runner import RunOutcome
from overnight.judge.guards import guard_violation
from overnight.judge.verdict import Policy, Verdict
from overnight.loop.head import HeadTracker
from overnight.loop.intake import Intake, Outcome, Prepared
from overnight.loop.jobs import Job, LoopError
from overnight.loop.recorder import Recorder
from overnight.loop.session import Session
from overnight.loop.worktrees import WorktreePool

REPLICATION_ORDER = ("old", "new", "new", "old")  # ABBA: a linear drift cancels over each four runs


@dataclass
class Decision:
    """A job is done. kind: decide (status, reason, stats) or replicated (the judge's verdict on a keep)."""

    job: Job
    status: str
    reason: str
    out: RunOutcome
    stats: dict[str, Any] = field(default_factory=dict)
    kind: str = "decide"


class Scheduler:
    def __init__(self, spec: Spec, policy: Policy, session: Session, head: HeadTracker, recorder: Recorder,
                 intake: Intake, pool: WorktreePool, events: queue.Queue, platform: dict[str, Any],
                 emit: Callable[[Decision | Outcome], None]):
        self.spec, self.policy, self.session, self.head = spec, policy, session, head
        self.recorder, self.intake, self.pool, self.events = recorder, intake, pool, events
        self.platform, self.emit = platform, emit
        self.executor: Executor | None = None
        self.jobs: list[Job] = []
        self.pending: deque[Any] = deque()  # experiments of a killed loop, resumed in place
        self._index: dict[int, int] = {}  # experiment id -> its next run's index

    # --- filling slots ----------------------------------------------------------------------------
    def dispatch(self) -> None:
        assert self.executor is not None
        progress = True
        while progress and not self.session.halt.is_set():
            progress = False
            for slot in [s for s in self.executor.slots if not s.busy]:
                if not slot.busy and self._start(slot):
                    progress = True

    def holding(self) -> bool:
        """A measurement every candidate waits for (the baseline, or the head on this platform)."""
        return any(j.kind == "baseline" or (j.kind == "head" and j.slot is None) for j in self.jobs)

    def _start(self, slot: Slot) -> bool:
        """Give `slot` work; False when there is nothing it may take now."""
        job = next((j for j in self.jobs if j.kind in ("baseline", "head") and j.launched < j.need
                    and j.slot in (None, slot.index)), None)
        if job is None:
            job = next((j for j in self.jobs if j.kind == "replicate" and j.slot == slot.index and not j.running), None)
            if job is not None:
                self._replicate_next(job, slot)
                return True
        if job is not None:
            self._submit(job, slot, job.exp, "measure")
            return True
        if self.holding() or not self.session.may_start():
            return False  # candidates wait until the baseline (or the head on this platform) is measured
        if self.pending and self.pending[0].meta.get("baseline"):
            return self._start_baseline(self.pending.popleft(), slot)
        head = self.head.exp
        if head is None or any(j.slot == slot.index for j in self.jobs):
            return False
        need = self.head.needs(slot.index)
        if need:
            shared = not self.head.contemporaneous
            if shared:
                self.recorder.say(f"measuring the head #{head.id} on this platform "
                                  f"({fingerprint.describe(self.platform)})")
            self.jobs.append(Job(head, "head", need=need, slot=None if shared else slot.index,
                                 head_gen=self.head.generation))
            return True
        exp = self._next_candidate(slot, head)
        if exp is None:
            return False
        self.session.count()
        values = self.values(exp)
        job = Job(exp, "candidate", slot=slot.index, head_exp=head, head_gen=self.head.generation,
                  head_values=self.head.reference(slot.index), values=values, next_index=self.index(exp))
        job.head_first = len(job.head_values)
        self.jobs.append(job)
        if not (job.next_index and self._settle_recorded(job, slot)):
            self._continue(job, slot)
        return True

    def _start_baseline(self, exp: Any, slot: Slot) -> bool:
        self.session.count()
        values = self.values(exp)
        job = Job(exp, "baseline", need=self.policy.baseline_runs - len(values), values=values)
        self.jobs.append(job)
        if job.need <= 0:  # killed after its last run was recorded: decide now, run nothing again
            self._done(Decision(job, Status.KEEP, f"baseline over {len(values)} run(s)", self.last_outcome(exp)))
        return True

    def _next_candidate(self, slot: Slot, head: Any) -> Any:
        if self.pending:
            return self.recorder.on_slot(self.pending.popleft(), slot.index)
        while self.intake.ready:
            got = self.intake.prepare(self.intake.ready.popleft(), slot, head.commit, self.head.metric,
                                      self.recorder.say)
            if isinstance(got, Prepared):
                return self.recorder.add_candidate(got.fields, got.commit, got.diff, slot.index)
            self.emit(got)
        return None

    def _settle_recorded(self, job: Job, slot: Slot) -> bool:
        """A resumed experiment whose recorded runs already settle it (the loop died just before
        deciding) is decided from them: no run is repeated."""
        if not any(r.finished_at for r in self.recorder.ledger.runs(job.exp.id)):
            return False
        out = self.last_outcome(job.exp)
        if out.status != Status.OK:
            self._done(Decision(job, out.status, out.reason, out))
            return True
        guard = guard_violation(self.spec, out.measurements)
        if guard:
            self._done(Decision(job, Status.DISCARD, guard, out))
            return True
        if not job.values:
            return False
        return self._act(job, slot, self._judge(job), out, go_on=False)

    def _continue(self, job: Job, slot: Slot) -> None:
        if job.head_next > 0:
            self._submit(job, slot, job.head_exp, "head")
        else:
            self._submit(job, slot, job.exp, "candidate")

    def _submit(self, job: Job, slot: Slot, exp: Any, which: str) -> None:
        assert slot.worktree is not None and exp.commit and self.executor is not None
        if slot.commit != exp.commit:
            self.pool.reset(slot.worktree, exp.commit)
            slot.commit = exp.commit
        index = self.index(exp)
        self._index[exp.id] = index + 1
        if which in ("candidate", "measure"):
            job.launched += 1
        run_id, seed, run_dir = self.recorder.add_run(exp, index, self.platform["key"])
        job.running[slot.index] = run_id
        slot.busy = True
        run = RunJob(self.recorder.repo.workdir(slot.worktree), run_dir, seed, f"{self.recorder.track.token}:{run_id}:")
        self.executor.submit(slot, run, lambda out, s=slot, j=job, r=run_id, w=which:
                             self.events.put(("run", s, j, r, w, out)))
        if index == 0 and job.kind == "candidate":  # off the critical path: the run has started
            with self.pool.lock:
                self.recorder.keep_ref(exp)
        self.recorder.slot_running(slot.index, exp, index + 1, head=exp is not job.exp or job.kind == "head")

    # --- finished runs ----------------------------------------------------------------------------
    def on_run(self, slot: Slot, job: Job, run_id: int, which: str, out: RunOutcome) -> None:
        slot.busy = False
        job.running.pop(slot.index, None)
        self.recorder.slot_idle(slot.index)
        if out.status != Status.INTERRUPTED:  # an interrupted run is redone on resume, not recorded
            self.recorder.finish_run(run_id, out)
        else:
            job.interrupted = True
        self.recorder.publish_slots()
        if job not in self.jobs:
            return  # its experiment was already decided (a failed measurement elsewhere)
        if job.interrupted:
            if not job.running:
                self.jobs.remove(job)
                if job.kind in ("candidate", "baseline"):
                    self.recorder.interrupted(job.exp, "stopped by the user")
            return
        if which == "measure":
            return self._on_measure(job, slot, out)
        if which in ("old", "new"):
            return self._on_replicate(job, slot, which, out)
        if which == "head":
            return self._on_head_beside(job, slot, out)
        if self.current(job):
            self.head.ran_candidate(slot.index)
        if out.status != Status.OK:
            return self._done(Decision(job, out.status, out.reason, out))
        job.values.append(out.metric)
        guard = guard_violation(self.spec, out.measurements)
        if guard:
            return self._done(Decision(job, Status.DISCARD, guard, out))
        job.last_out = out
        self._act(job, slot, self._judge(job), out)

    def _judge(self, job: Job) -> Verdict:
        n = getattr(self.policy, "reference_runs", self.policy.baseline_runs)
        return self.policy.decide(job.head_values[-n:], job.values, lines_delta=job.exp.meta.get("lines_delta", 0),
                                  bracketed=job.bracketed)

    def _act(self, job: Job, slot: Slot, verdict: Verdict, out: RunOutcome, go_on: bool = True) -> bool:
        """Follow the judge: decide, run the candidate again, or measure the head beside it first."""
        if verdict.action in ("keep", "discard"):
            self._done(Decision(job, verdict.action, verdict.reason, out, verdict.stats))
            return True
        if verdict.action == "head":
            job.head_next, job.redecide = 1, True
        else:
            if go_on:  # each confirmation run's value, as it lands
                self.recorder.say(f"#{job.exp.id} run {len(job.values)}: {self.spec.metric.name} {out.metric:.6g}; "
                                  f"confirming: run {len(job.values) + 1} of at most {self.spec.policy.max_runs}")
            if self.current(job):  # a scheduled refresh of the head on this slot comes first
                job.head_next = self.head.needs(slot.index)
        if go_on:
            self._continue(job, slot)
        return False

    def _on_head_beside(self, job: Job, slot: Slot, out: RunOutcome) -> None:
        if out.status != Status.OK:
            raise LoopError(f"the head #{job.head_exp.id} fails on this platform ({out.status}): {out.reason}")
        job.head_values.append(out.metric)
        if self.current(job):
            self.head.record(slot.index, out.metric)
        job.head_next -= 1
        if job.head_next > 0:
            return self._continue(job, slot)
        if job.redecide:
            job.redecide = False
            self._act(job, slot, self._judge(job), job.last_out or out)
            return
        self._continue(job, slot)

    def _on_measure(self, job: Job, slot: Slot, out: RunOutcome) -> None:
        exp = job.exp
        if out.status == Status.OK:
            job.values.append(out.metric)
            job.by_slot.append((slot.index, out.metric))
            if job.kind == "head" and self.current(job):
                self.head.record(slot.index, out.metric)
            guard = guard_violation(self.spec, out.measurements)
            if guard and job.kind == "baseline":
                self.recorder.say(f"note: the baseline itself breaks a guard: {guard}")
            self.recorder.say(f"#{exp.id} {job.kind} run {len(job.values)} of {job.need}: "
                              f"{self.spec.metric.name} {out.metric:.6g}")
        else:
            if job.kind == "head":
                raise LoopError(f"the head #{exp.id} fails on this platform ({out.status}): {out.reason}")
            self._done(Decision(job, out.status, out.reason, out))
            raise LoopError(f"the baseline failed ({out.status}): {out.reason}\nlog: {out.log_path}")
        if job.launched < job.need:
            self._submit(job, slot, exp, "measure")
            return
        if job.running:
            return
        self.jobs.remove(job)
        if job.kind == "baseline":
            self._done(Decision(job, Status.KEEP, f"baseline over {len(job.values)} run(s)", out))

    # --- replication of a keep --------------------------------------------------------------------
    def _replicate_next(self, job: Job, slot: Slot) -> None:
        which = REPLICATION_ORDER[(len(job.old_values) + len(job.values)) % 4]
        self._submit(job, slot, job.head_exp if which == "old" else job.exp, which)

    def resume_replication(self, head: Any, exps: list[Any]) -> None:
        """A keep whose replication a killed loop cut short (marked pending, no result) is replicated
        again from its first run: the old runs died with the loop, and fresh runs are what it needs."""
        for e in exps:  # a revert whose branch move landed but whose ledger write did not: the branch decides
            if e.id > head.id and e.status == Status.KEEP and _pending(e):
                self.recorder.reverted_on_resume(e)
        if not _pending(head):
            return
        old = [e for e in exps if e.id < head.id and e.commit == head.parent_commit
               and (e.status == Status.KEEP or e.meta.get("baseline"))]
        if not old or self.executor is None:
            return
        slot = head.slot if head.slot is not None and head.slot < len(self.executor.slots) else 0
        self.recorder.say(f"resuming the replication of #{head.id} (cut short by the last loop)")
        self.jobs.append(Job(head, "replicate", slot=slot, head_exp=old[-1], head_gen=self.head.generation))

    def _on_replicate(self, job: Job, slot: Slot, which: str, out: RunOutcome) -> None:
        exp = job.head_exp if which == "old" else job.exp
        if out.status != Status.OK:
            raise LoopError(f"the head #{exp.id} fails on this platform ({out.status}): {out.reason}")
        (job.old_values if which == "old" else job.values).append(out.metric)
        if len(job.old_values) == len(job.values):
            verdict = self.policy.replicate(job.old_values, job.values)  # type: ignore[attr-defined]
            if verdict.action != "more":
                return self._done(Decision(job, verdict.action, verdict.reason, out, verdict.stats, "replicated"))
        self._replicate_next(job, slot)  # after a stop the executor answers `interrupted`: the job ends

    # --- plumbing ---------------------------------------------------------------------------------
    def _done(self, decision: Decision) -> None:
        if decision.job in self.jobs:
            self.jobs.remove(decision.job)
        self.emit(decision)

    def current(self, job: Job) -> bool:
        """The job's head is still the head (no keep or revert since it started)."""
        return job.head_gen == self.head.generation

    def index(self, exp: Any) -> int:
        if exp.id not in self._index:
            self._index[exp.id] = len(self.recorder.ledger.runs(exp.id))
        return self._index[exp.id]

    def values(self, exp: Any) -> list[float]:
        """The experiment's finished metric values on this platform (a resumed one's recorded runs)."""
        key = self.platform["key"]
        return [r.metric for r in self.recorder.ledger.runs(exp.id)
                if r.status == Status.OK and M.finite(r.metric) and r.platform_key == key and r.finished_at]

    def last_outcome(self, exp: Any) -> RunOutcome:
        runs = [r for r in self.recorder.ledger.runs(exp.id) if r.finished_at]
        last = runs[-1]
        return RunOutcome(status=last.status, metric=last.metric, measurements=last.measurements or {},
                          reason=f"run {last.status} (decided on resume)", exit_code=last.exit_code,
                          log_path=last.log_path)


def _pending(exp: Any) -> bool:
    """A keep whose replication started and never reported (keep or revert)."""
    stats, meta = exp.stats or {}, exp.meta or {}
    return bool(stats.get("replication_pending")) and "replication_p" not in stats and not meta.get("reverted")
