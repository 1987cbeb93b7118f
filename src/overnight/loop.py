"""The loop: propose, commit, check, run, evaluate, decide, record; resume after any crash.

An experiment row is written only once its candidate is a commit, and stays
`running` until decided, so a killed loop resumes that exact experiment: none
lost, none counted twice.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from overnight import fingerprint
from overnight.ledger import PENDING, Experiment
from overnight.policy import Policy, make_policy
from overnight.process import kill_tree
from overnight.proposers.base import FatalProposerError, ProposalContext, Proposer, StopProposing
from overnight.repo import RepoError
from overnight.runner import RunOutcome, execute, prepare
from overnight.track import Track

MAX_CONSECUTIVE_ERRORS = 5
IDEA_LEASE_SECONDS = 3600


class LoopError(Exception):
    """The loop cannot start or go on; the message says why and what to do."""


class Interrupted(Exception):
    pass


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


def lines_delta(diff: str) -> int:
    added = sum(1 for line in diff.splitlines() if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff.splitlines() if line.startswith("-") and not line.startswith("---"))
    return added - removed


class Loop:
    def __init__(self, track: Track, proposer: Proposer, tag: str | None = None, limits: Limits | None = None,
                 policy: Policy | None = None, stop: threading.Event | None = None):
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
        self.platform = fingerprint.fingerprint()
        self.state = LoopState(tag=self.tag, branch=self.branch, max_experiments=self.limits.max_experiments,
                               budget=self.spec.run.budget_seconds)
        self._lock_file = None

    # --- lifecycle --------------------------------------------------------------------------------
    def run(self) -> LoopState:
        self._acquire_lock()
        try:
            self._start()
            self._resume_pending()
            if self._head() is None:
                self._baseline()
            errors = 0
            while self._may_start():
                exp = self._experiment()
                errors = errors + 1 if exp is not None and exp.status == "error" else 0
                if errors >= MAX_CONSECUTIVE_ERRORS:
                    raise LoopError(f"{errors} proposals in a row failed; last: {exp.reason if exp else ''}")
        except Interrupted:
            self._say("stopped; `overnight run` again resumes where this left off")
            self.stop.set()
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
        """Clean up after a killed loop, make sure data and refs exist."""
        kill_tree(None, f"{self.track.token}:")
        self.repo.prune_worktrees(self.track.paths.worktrees)
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
        head = self._head()
        self.state.head = head.metric if head else None
        base_exp = self._baseline_experiment()
        self.state.baseline = base_exp.metric if base_exp else None
        self.state.recent = self.ledger.experiments(tag=self.tag)[-8:]

    def _may_start(self) -> bool:
        if self.stop.is_set():
            return False
        if self.limits.max_experiments is not None and self.state.done >= self.limits.max_experiments:
            return False
        return not (self.state.deadline and time.time() >= self.state.deadline)

    def set_deadline(self) -> None:
        if self.limits.hours:
            self.state.deadline = time.time() + self.limits.hours * 3600

    # --- ledger views -----------------------------------------------------------------------------
    def _head(self) -> Experiment | None:
        kept = self.ledger.experiments(tag=self.tag, status={"keep"})
        return kept[-1] if kept else None

    def _baseline_experiment(self) -> Experiment | None:
        exps = self.ledger.experiments(tag=self.tag)
        return next((e for e in exps if e.meta.get("baseline")), None)

    def _values(self, exp: Experiment) -> list[float]:
        key = self.platform["key"]
        return [r.metric for r in self.ledger.runs(exp.id)
                if r.status == "ok" and r.metric is not None and r.platform_key == key and r.finished_at]

    # --- experiments ------------------------------------------------------------------------------
    def _say(self, text: str) -> None:
        self.state.messages = [*self.state.messages[-4:], text]

    def _worktree(self, commit: str) -> Path:
        return self.repo.add_worktree(self.track.paths.worktrees / uuid.uuid4().hex[:10], commit)

    def _baseline(self) -> None:
        """The unchanged code, run as many times as the policy needs to know the noise."""
        exp = self.ledger.add_experiment(
            tag=self.tag, parent_commit=self.base, commit=self.base, proposer="baseline",
            description="baseline", status="running", meta={"baseline": True}, platform=self.platform,
        )
        self.repo.keep_ref(self.tag, exp.id, self.base)
        exp = self._execute(exp, baseline=True)
        self._count(exp)
        if exp.status != "keep":
            raise LoopError(f"the baseline failed ({exp.status}): {exp.reason}\nlog: {exp.meta.get('log', '')}")
        self.state.baseline = self.state.head = exp.metric
        self.proposer.baseline(exp)

    def _resume_pending(self) -> None:
        for exp in self.ledger.experiments(tag=self.tag, status=PENDING):
            self._say(f"resuming experiment #{exp.id}: {exp.description}")
            self.ledger.delete_unfinished_runs(exp.id)
            done = self._execute(exp, baseline=bool(exp.meta.get("baseline")))
            self._count(done)
            if done.meta.get("baseline"):
                if done.status != "keep":
                    raise LoopError(f"the baseline failed ({done.status}): {done.reason}")
                self.proposer.baseline(done)
            else:
                self.proposer.observe(done)

    def _experiment(self) -> Experiment | None:
        head = self._head()
        assert head is not None and head.commit
        parent = head.commit
        idea = self.ledger.claim_idea(f"loop:{os.getpid()}", IDEA_LEASE_SECONDS)
        wt = self._worktree(parent)
        self.state.phase, self.state.current, self.state.run_started = "proposing", "", None
        t0 = time.monotonic()
        try:
            ctx = ProposalContext(track=self.track, tag=self.tag, workdir=self.repo.workdir(wt),
                                  parent_commit=parent, head_metric=head.metric, idea=idea, stop=self.stop)
            try:
                prop = self.proposer.propose(ctx)
            except FatalProposerError as e:
                if idea:
                    self.ledger.finish_idea(idea.id, "open")
                raise LoopError(str(e)) from None
            except StopProposing as e:
                if idea:
                    self.ledger.finish_idea(idea.id, "open")
                self._say(str(e))
                raise Interrupted from None
            except Exception as e:  # a proposer bug is an outcome, not a dead loop
                prop = None
                error = f"{type(e).__name__}: {e}"
            if self.stop.is_set():
                if idea:
                    self.ledger.finish_idea(idea.id, "open")
                raise Interrupted
            fields = dict(tag=self.tag, parent_commit=parent, head_metric=head.metric, platform=self.platform,
                          idea_id=idea.id if idea else None, propose_seconds=time.monotonic() - t0)
            if prop is None or prop.error:
                exp = self.ledger.add_experiment(
                    **fields, commit=None, proposer=getattr(self.proposer, "name", "?"),
                    description=prop.description if prop else "", status="error",
                    reason=prop.error if prop else error, transcript=prop.transcript if prop else "",
                    finished_at=time.time(), meta=prop.meta if prop else {},
                )
                return self._finish(exp, idea)
            fields.update(proposer=prop.proposer, description=prop.description[:500], transcript=prop.transcript,
                          tokens_in=prop.tokens_in, tokens_out=prop.tokens_out, cost_usd=prop.cost_usd,
                          meta=prop.meta)
            commit = self.repo.commit_all(wt, f"overnight: {prop.description[:200]}")
            if commit is None:
                exp = self.ledger.add_experiment(**fields, commit=None, status="no_change",
                                                 reason="the proposal changed nothing", finished_at=time.time())
                return self._finish(exp, idea)
            self.repo.clean(wt)
            diff = self.repo.diff(parent, commit)
            violations = self.repo.frozen_violations(parent, commit, self.spec.track.editable)
            meta = {**prop.meta, "lines_delta": lines_delta(diff)}
            status = "invalid" if violations else "running"
            exp = self.ledger.add_experiment(**{**fields, "meta": meta}, commit=commit, diff=diff, status=status,
                                             reason="; ".join(violations),
                                             finished_at=time.time() if violations else None)
            self.repo.keep_ref(self.tag, exp.id, commit)
            if not violations:  # an invalid candidate is recorded, never executed
                exp = self._execute(exp, worktree=wt)
            return self._finish(exp, idea)
        finally:
            self.repo.remove_worktree(wt)

    def _count(self, exp: Experiment) -> None:
        """Every experiment this invocation recorded counts once toward --max-experiments."""
        self.state.done += 1
        self.state.recent = [*self.state.recent[-7:], exp]

    def _finish(self, exp: Experiment, idea) -> Experiment:
        self._count(exp)
        if idea and exp.status not in PENDING:
            self.ledger.finish_idea(idea.id, "done", exp.id)
        if not exp.meta.get("baseline") and exp.status not in PENDING:
            self.proposer.observe(exp)
        return exp

    def _execute(self, exp: Experiment, worktree: Path | None = None, baseline: bool = False) -> Experiment:
        """Run the committed candidate until the policy decides; record every run and the decision."""
        own = worktree is None
        wt = worktree or self._worktree(exp.commit)
        self.state.current = f"#{exp.id} {exp.description}"
        try:
            head = None if baseline else self._head()
            head_values = [] if head is None else self._head_values(head)
            while True:
                values = self._values(exp)
                out = self._run(exp, wt, len(self.ledger.runs(exp.id)))
                if out.status == "interrupted":
                    self.ledger.update_experiment(exp.id, status="interrupted", reason="stopped by the user")
                    raise Interrupted
                if out.status != "ok":
                    return self._decide(exp, out.status, out.reason, out)
                values.append(out.metric)
                guard = next((v for g in self.spec.guard if (v := g.violation(out.measurements))), None)
                if guard and baseline:
                    self._say(f"note: the baseline itself breaks a guard: {guard}")
                elif guard:
                    return self._decide(exp, "discard", guard, out)
                if baseline:
                    if len(values) < self.policy.baseline_runs:
                        continue
                    return self._decide(exp, "keep", f"baseline over {len(values)} run(s)", out, values=values)
                verdict = self.policy.decide(head_values, values, lines_delta=exp.meta.get("lines_delta", 0))
                if verdict.action != "more":
                    return self._decide(exp, verdict.action, verdict.reason, out, verdict.stats, values)
        finally:
            if own:
                self.repo.remove_worktree(wt)

    def _head_values(self, head: Experiment) -> list[float]:
        """The head's metric values on this platform; runs the head again when there are too few
        (a new machine, or a policy that wants more runs to know the noise)."""
        values = self._values(head)
        if len(values) >= self.policy.baseline_runs:
            return values
        self._say(f"measuring the head #{head.id} on this platform ({fingerprint.describe(self.platform)})")
        wt = self._worktree(head.commit)
        try:
            while len(values) < self.policy.baseline_runs:
                out = self._run(head, wt, len(self.ledger.runs(head.id)))
                if out.status == "interrupted":
                    raise Interrupted
                if out.status != "ok":
                    raise LoopError(f"the head #{head.id} fails on this platform ({out.status}): {out.reason}")
                values.append(out.metric)
        finally:
            self.repo.remove_worktree(wt)
        return values

    def _run(self, exp: Experiment, wt: Path, index: int) -> RunOutcome:
        seed = exp.id * 1000 + index
        run_dir = self.track.paths.runs / str(exp.id) / str(index)
        row = self.ledger.add_run(experiment_id=exp.id, seed=seed, status="running",
                                  log_path=str(run_dir / "run.log"), platform_key=self.platform["key"])
        self.state.phase, self.state.run_started = f"run {index + 1}", time.time()
        token = f"{self.track.token}:{row.id}:"
        out = execute(self.track, self.repo.workdir(wt), run_dir, seed, token, stop=self.stop)
        if out.status != "interrupted":  # an interrupted run is redone on resume, not recorded
            with self.ledger.session() as s:
                r = s.get(type(row), row.id)
                r.status, r.metric, r.measurements = out.status, out.metric, out.measurements
                r.exit_code, r.wall_seconds, r.tail = out.exit_code, out.wall_seconds, out.tail[-4000:]
                r.finished_at = time.time()
        self.state.run_started = None
        return out

    def _decide(self, exp: Experiment, status: str, reason: str, out: RunOutcome, stats: dict | None = None,
                values: list[float] | None = None) -> Experiment:
        values = values if values is not None else self._values(exp)
        metric = sum(values) / len(values) if values and status in ("keep", "discard") else out.metric
        if status == "keep" and not exp.meta.get("baseline"):
            try:
                self.repo.advance(self.branch, exp.commit, exp.parent_commit)
            except RepoError as e:
                status, reason = "discard", f"branch moved underneath: {e}"
        if status not in ("keep",):
            for run in self.ledger.runs(exp.id):  # artifacts of discarded candidates are not kept
                shutil.rmtree(Path(run.log_path).parent / "artifacts", ignore_errors=True)
        exp = self.ledger.update_experiment(
            exp.id, status=status, reason=reason, metric=metric, measurements=out.measurements,
            stats=stats or {}, finished_at=time.time(), meta={**exp.meta, "log": out.log_path},
        )
        if status == "keep":
            self.state.head = metric
        self.state.phase = "deciding"
        return exp
