"""The loop's scheduler: fills free slots, keeps the proposer a bounded step ahead, decides finished runs.

Everything here runs on the loop's thread, which alone writes experiments, runs and the
branch; slots and the proposer talk to it through one event queue.
"""

from __future__ import annotations

import os
import queue
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING

from overnight.execution import fingerprint
from overnight.execution.executor import RunJob, Slot
from overnight.execution.runner import RunOutcome
from overnight.git.repo import RepoError
from overnight.loop.jobs import MAX_RETRIES, Job, LoopError
from overnight.loop.pipeline import Candidate, checkout
from overnight.storage.ledger import Experiment, Run

if TYPE_CHECKING:
    from overnight.loop import Loop

MEASURING = ("baseline", "head")


class Scheduler:
    """Mixed into `Loop`; the attributes it uses are set up by `Loop.__init__` and `Loop._start`."""

    def _pipeline(self: Loop) -> None:
        self.state.phase = "running"
        while True:
            if self.stop.is_set():
                self.halt.set()
                self.pstop.set()
            self._dispatch()
            self._request_proposals()
            if self._finished():
                return
            try:
                event = self.events.get(timeout=0.5)
            except queue.Empty:
                continue
            self._handle(event)

    def _finished(self: Loop) -> bool:
        if self.jobs:
            return False
        if self.halt.is_set() or not self._may_start():
            return True
        if self.pending or self.ready or self.proposing:
            return False
        return self.no_more_proposals

    def _handle(self: Loop, event: tuple) -> None:
        kind = event[0]
        if kind == "proposed":
            self._on_proposed(event[1])
        elif kind == "run":
            self._on_run(*event[1:])
        elif kind == "message":
            self._say(event[1])

    # --- filling slots ----------------------------------------------------------------------------
    def _dispatch(self: Loop) -> None:
        assert self.executor is not None
        while not self.halt.is_set():
            free = [s for s in self.executor.slots if not s.busy]
            if not free or not self._start_job(free[0]):
                return

    def _start_job(self: Loop, slot: Slot) -> bool:
        """Give `slot` work; False when there is nothing it may take now."""
        measuring = [j for j in self.jobs if j.kind in MEASURING]
        job = next((j for j in measuring if j.launched < j.need), None)
        if job is not None:
            self._submit(job, slot)
            return True
        if measuring or not self._may_start():
            return False  # candidates wait until the baseline (or the head on this platform) is measured
        if self.pending and self.pending[0].meta.get("baseline"):
            exp = self.pending.popleft()
            self.started += 1
            values = self._values(exp)
            job = Job(exp, "baseline", need=self.policy.baseline_runs - len(values), values=values,
                      next_index=len(self.ledger.runs(exp.id)))
            if job.need <= 0:  # killed after its last run was recorded: decide now, run nothing again
                done = self._decide(job, "keep", f"baseline over {len(values)} run(s)", self._last_outcome(exp))
                self.state.baseline = done.metric
                assert self.prop_thread is not None
                self.prop_thread.baseline(done)
                return True
            self.jobs.append(job)
            return True
        head = self.head_exp
        if head is None:
            return False
        if self._head_values is None:
            self._head_values = self._values(head)
        if len(self._head_values) < self.policy.baseline_runs:
            self._say(f"measuring the head #{head.id} on this platform ({fingerprint.describe(self.platform)})")
            self.jobs.append(Job(head, "head", need=self.policy.baseline_runs - len(self._head_values),
                                 values=list(self._head_values), next_index=len(self.ledger.runs(head.id))))
            return True
        if self.pending:
            exp = self.ledger.update_experiment(self.pending.popleft().id, slot=slot.index)
        else:
            exp = None
            while self.ready and exp is None:
                exp = self._materialize(self.ready.popleft(), slot, head)
            if exp is None:
                return False
        self.started += 1
        job = Job(exp, "candidate", head_values=list(self._head_values), values=self._values(exp),
                  next_index=len(self.ledger.runs(exp.id)))
        if job.next_index and self._decide_recorded(job):
            return True
        self.jobs.append(job)
        self._submit(job, slot)
        return True

    def _last_outcome(self: Loop, exp: Experiment) -> RunOutcome:
        runs = [r for r in self.ledger.runs(exp.id) if r.finished_at]
        last = runs[-1]
        return RunOutcome(status=last.status, metric=last.metric, measurements=last.measurements or {},
                          reason=f"run {last.status} (decided on resume)", exit_code=last.exit_code,
                          log_path=last.log_path)

    def _decide_recorded(self: Loop, job: Job) -> bool:
        """A resumed experiment whose recorded runs already settle it (the loop died just before
        deciding) is decided from them: no run is repeated."""
        if not any(r.finished_at for r in self.ledger.runs(job.exp.id)):
            return False
        out = self._last_outcome(job.exp)
        if out.status != "ok":
            self._decide(job, out.status, out.reason, out)
            return True
        guard = next((v for g in self.spec.guard if (v := g.violation(out.measurements))), None)
        if guard:
            self._decide(job, "discard", guard, out)
            return True
        if not job.values:
            return False
        verdict = self.policy.decide(job.head_values, job.values, lines_delta=job.exp.meta.get("lines_delta", 0))
        if verdict.action == "more":
            return False
        self._decide(job, verdict.action, verdict.reason, out, verdict.stats)
        return True

    def _submit(self: Loop, job: Job, slot: Slot) -> None:
        exp = job.exp
        assert slot.worktree is not None and exp.commit and self.executor is not None
        if slot.commit != exp.commit:
            with self.git_lock:
                checkout(slot.worktree, exp.commit)
            slot.commit = exp.commit
        index = job.next_index
        job.next_index += 1
        job.launched += 1
        seed = exp.id * 1000 + index
        run_dir = self.track.paths.runs / str(exp.id) / str(index)
        row = self.ledger.add_run(experiment_id=exp.id, seed=seed, status="running",
                                  log_path=str(run_dir / "run.log"), platform_key=self.platform["key"])
        job.running[slot.index] = row.id
        slot.busy = True
        token = f"{self.track.token}:{row.id}:"
        run = RunJob(self.repo.workdir(slot.worktree), run_dir, seed, token)
        self.executor.submit(slot, run, lambda out, s=slot, j=job, r=row.id: self.events.put(("run", s, j, r, out)))
        if index == 0 and job.kind == "candidate":  # off the critical path: the run has started
            with self.git_lock:
                self.repo.keep_ref(self.tag, exp.id, exp.commit)
        view = self.state.slots[slot.index]
        view.exp_id, view.run, view.run_started = exp.id, index + 1, time.time()
        view.description = f"#{exp.id} {'(head) ' if job.kind == 'head' else ''}{exp.description}"
        self._publish_slots()

    def _publish_slots(self: Loop) -> None:
        """Per-slot status for the live view and for `overnight status` in another terminal."""
        busy = [v for v in self.state.slots if v.exp_id is not None]
        first = busy[0] if busy else None
        self.state.current = first.description if first else ""
        self.state.run_started = first.run_started if first else None
        self.state.phase = f"{len(busy)}/{len(self.state.slots)} slots busy" if len(self.state.slots) > 1 else (
            f"run {first.run}" if first else "proposing")
        self.ledger.put("slots", {"pid": os.getpid(), "executor": self.state.executor, "updated": time.time(),
                                  "slots": [asdict(v) for v in self.state.slots]})

    # --- finished runs --------------------------------------------------------------------------
    def _on_run(self: Loop, slot: Slot, job: Job, run_id: int, out: RunOutcome) -> None:
        slot.busy = False
        job.running.pop(slot.index, None)
        view = self.state.slots[slot.index]
        view.exp_id, view.description, view.run_started = None, "", None
        if out.status != "interrupted":  # an interrupted run is redone on resume, not recorded
            with self.ledger.session() as s:
                r = s.get(Run, run_id)
                r.status, r.metric, r.measurements = out.status, out.metric, out.measurements
                r.exit_code, r.wall_seconds, r.tail = out.exit_code, out.wall_seconds, out.tail[-4000:]
                r.finished_at = time.time()
        else:
            job.interrupted = True
        self._publish_slots()
        if job not in self.jobs:
            return  # its experiment was already decided (a failed measurement elsewhere)
        if job.interrupted:
            if not job.running:
                self.jobs.remove(job)
                if job.kind != "head":
                    self.ledger.update_experiment(job.exp.id, status="interrupted", reason="stopped by the user")
            return
        guard = None
        if out.status == "ok":
            job.values.append(out.metric)
            guard = next((v for g in self.spec.guard if (v := g.violation(out.measurements))), None)
        if job.kind in MEASURING:
            return self._on_measure(job, slot, out, guard)
        if out.status != "ok":
            self._decide(job, out.status, out.reason, out)
        elif guard:
            self._decide(job, "discard", guard, out)
        else:
            verdict = self.policy.decide(job.head_values, job.values, lines_delta=job.exp.meta.get("lines_delta", 0))
            if verdict.action == "more":  # each confirmation run's value, as it lands
                self._say(f"#{job.exp.id} run {len(job.values)}: {self.spec.metric.name} {out.metric:.6g}; confirming: "
                          f"run {len(job.values) + 1} of at most {self.spec.policy.max_runs}")
                self._submit(job, slot)
            else:
                self._decide(job, verdict.action, verdict.reason, out, verdict.stats)

    def _on_measure(self: Loop, job: Job, slot: Slot, out: RunOutcome, guard: str | None) -> None:
        exp = job.exp
        if guard and job.kind == "baseline":
            self._say(f"note: the baseline itself breaks a guard: {guard}")
        if out.status != "ok":
            if job.kind == "head":
                raise LoopError(f"the head #{exp.id} fails on this platform ({out.status}): {out.reason}")
            self._decide(job, out.status, out.reason, out)
            raise LoopError(f"the baseline failed ({out.status}): {out.reason}\nlog: {out.log_path}")
        self._say(f"#{exp.id} {job.kind} run {len(job.values)} of {self.policy.baseline_runs}: "
                  f"{self.spec.metric.name} {out.metric:.6g}")
        if job.launched < job.need:
            self._submit(job, slot)
            return
        if job.running:
            return
        self.jobs.remove(job)
        if job.kind == "head":
            self._head_values = list(job.values)
            return
        done = self._decide(job, "keep", f"baseline over {len(job.values)} run(s)", out)
        self.state.baseline = done.metric
        assert self.prop_thread is not None
        self.prop_thread.baseline(done)

    def _decide(self: Loop, job: Job, status: str, reason: str, out: RunOutcome, stats: dict | None = None) -> Experiment:
        if job in self.jobs:
            self.jobs.remove(job)
        exp, values = job.exp, job.values
        metric = fmean(values) if values and status in ("keep", "discard") else out.metric
        retry = None
        if status == "keep" and not exp.meta.get("baseline"):
            try:
                with self.git_lock:
                    self.repo.advance(self.branch, exp.commit, exp.parent_commit)
            except RepoError as e:
                status = "discard"
                tries = exp.meta.get("retries", 0)
                if tries < MAX_RETRIES and not self.halt.is_set():
                    reason = f"{reason}; but another keep moved the branch meanwhile: re-queued onto the new head"
                    keep = {k: v for k, v in exp.meta.items() if k not in ("trial", "log", "lines_delta")}
                    retry = Candidate(parent=exp.parent_commit, head_metric=None, commit=exp.commit, retry_of=exp.id,
                                      fields=dict(proposer=exp.proposer, description=exp.description,
                                                  meta={**keep, "retries": tries + 1}))
                else:
                    reason = f"branch moved underneath: {e}"
        if status != "keep":
            for run in self.ledger.runs(exp.id):  # artifacts of discarded candidates are not kept
                shutil.rmtree(Path(run.log_path).parent / "artifacts", ignore_errors=True)
        # The head the policy compared against (it may have moved since the candidate started).
        head_metric = (stats or {}).get("head_mean", exp.head_metric)
        exp = self.ledger.update_experiment(
            exp.id, status=status, reason=reason, metric=metric, measurements=out.measurements,
            stats=stats or {}, finished_at=time.time(), meta={**exp.meta, "log": out.log_path},
            head_metric=head_metric,
        )
        if status == "keep":
            self.state.head = metric
            self.head_exp, self._head_values = exp, list(values)
        self.state.done += 1
        self.state.recent = [*self.state.recent[-7:], exp]
        self._after(exp)
        if retry is not None:
            self.ready.appendleft(retry)
        return exp
