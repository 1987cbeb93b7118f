"""Intake: proposals become candidates, and candidates become experiments on a slot.

Mixed into `Loop` beside the scheduler; it runs on the loop's thread like the rest, so it
alone turns a proposal into a ledger row (rebased first when the head moved meanwhile).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from overnight.execution.executor import Slot
from overnight.loop.jobs import IDEA_LEASE_SECONDS, MAX_CONSECUTIVE_ERRORS, LoopError, lines_delta
from overnight.loop.pipeline import Candidate, rebase
from overnight.storage.ledger import Experiment

if TYPE_CHECKING:
    from overnight.loop import Loop


class Intake:
    """The attributes it uses are set up by `Loop.__init__` and `Loop._start`."""

    # --- proposals ------------------------------------------------------------------------------
    def _request_proposals(self: Loop) -> None:
        assert self.executor is not None and self.prop_thread is not None
        if self.no_more_proposals or self.pstop.is_set() or not self._may_start() or self.head_exp is None:
            return
        if any(j.kind == "baseline" for j in self.jobs):
            return  # the proposer learns the baseline before its first proposal
        if self.lookahead <= 0:  # the serial loop: think only while the slot is empty
            want = 0 if (self.jobs or self.pending or self.ready) else 1
        else:
            free = sum(not s.busy for s in self.executor.slots)
            want = max(0, free - len(self.pending)) + self.lookahead
        if self.limits.max_experiments is not None:
            want = min(want, self.limits.max_experiments - self.started - len(self.pending))
        while len(self.ready) + self.proposing < want and self.pool:
            # Only proposers that read ideas claim them: a sampler would mark them done unread.
            idea = (self.ledger.claim_idea(f"loop:{os.getpid()}", IDEA_LEASE_SECONDS)
                    if getattr(self.proposer, "uses_ideas", False) else None)
            head = self.head_exp
            self.prop_thread.request(Candidate(parent=head.commit or "", head_metric=head.metric, idea=idea,
                                               worktree=self.pool.pop()))
            self.proposing += 1

    def _on_proposed(self: Loop, cand: Candidate) -> None:
        self.proposing -= 1
        runnable = not self.halt.is_set() and self._may_start()
        if cand.worktree is not None and (cand.fatal or cand.stop or not runnable or cand.error or not cand.commit
                                          or cand.violations):
            self.pool.append(cand.worktree)  # nothing will run there
            cand.worktree = None
        if cand.fatal or cand.stop or not runnable:
            if cand.idea is not None:
                self.ledger.finish_idea(cand.idea.id, "open")  # nobody will run it: back in the queue
            if cand.fatal:
                raise LoopError(cand.fatal)
            if cand.stop:
                self.no_more_proposals = True
                self._say(cand.stop)
            return
        if cand.error:
            self.errors += 1
            self._record_unrun(cand, "error", cand.error)
            if self.errors >= MAX_CONSECUTIVE_ERRORS:
                raise LoopError(f"{self.errors} proposals in a row failed; last: {cand.error}")
            return
        self.errors = 0
        if cand.commit is None:
            self._record_unrun(cand, "no_change", "the proposal changed nothing")
            return
        if cand.violations:  # an invalid candidate is recorded, never executed
            self._record_unrun(cand, "invalid", "; ".join(cand.violations), commit=cand.commit, diff=cand.diff)
            return
        self.ready.append(cand)

    def _fields(self: Loop, cand: Candidate) -> dict[str, Any]:
        if cand.fields is not None:  # a re-queued candidate: what the proposer said the first time
            return {**cand.fields, "tag": self.tag, "platform": self.platform, "parent_commit": cand.parent,
                    "head_metric": cand.head_metric}
        p = cand.proposal
        return dict(
            tag=self.tag, parent_commit=cand.parent, head_metric=cand.head_metric, platform=self.platform,
            idea_id=cand.idea.id if cand.idea else None, propose_seconds=cand.propose_seconds,
            proposer=p.proposer if p else getattr(self.proposer, "name", "?"),
            description=(p.description if p else "")[:500], transcript=p.transcript if p else "",
            tokens_in=p.tokens_in if p else 0, tokens_out=p.tokens_out if p else 0,
            cost_usd=p.cost_usd if p else 0.0, meta=dict(p.meta) if p else {},
        )

    def _bill(self: Loop, fields: dict[str, Any]) -> dict[str, Any]:
        """Add the spend of proposals that were dropped unrecorded (a conflict with a new head)."""
        t_in, t_out, usd = self.unbilled
        self.unbilled = [0, 0, 0.0]
        return {**fields, "tokens_in": fields.get("tokens_in", 0) + t_in,
                "tokens_out": fields.get("tokens_out", 0) + t_out, "cost_usd": fields.get("cost_usd", 0.0) + usd}

    def _record_unrun(self: Loop, cand: Candidate, status: str, reason: str, commit: str | None = None,
                      diff: str = "", **extra: Any) -> Experiment:
        fields = self._bill({**self._fields(cand), **extra})
        exp = self.ledger.add_experiment(**fields, commit=commit, diff=diff, status=status, reason=reason,
                                         finished_at=time.time())
        if commit:
            self.repo.keep_ref(self.tag, exp.id, commit)
        self.started += 1  # every recorded experiment counts toward --max-experiments
        self.state.done += 1
        self.state.recent = [*self.state.recent[-7:], exp]
        self._after(exp)
        return exp

    def _after(self: Loop, exp: Experiment) -> None:
        """A decided experiment: its idea is done and the proposer learns from it."""
        if exp.meta.get("baseline"):
            return
        if exp.idea_id is not None and not exp.meta.get("retry_of"):
            self.ledger.finish_idea(exp.idea_id, "done", exp.id)
        assert self.prop_thread is not None
        self.prop_thread.observe(exp)

    def _materialize(self: Loop, cand: Candidate, slot: Slot, head: Experiment) -> Experiment | None:
        """The candidate becomes an experiment on `slot`, rebased first when the head has moved."""
        assert cand.commit and head.commit and slot.worktree is not None
        parent, commit, meta, diff = cand.parent, cand.commit, {}, cand.diff
        if cand.worktree is not None:  # the slot runs the candidate where it was proposed
            self.pool.append(slot.worktree)
            slot.worktree, slot.commit, cand.worktree = cand.worktree, commit, None
        if parent != head.commit:
            message = f"overnight: {self._fields(cand)['description'][:200]} (rebased)"
            with self.git_lock:
                result, new = rebase(self.repo, slot.worktree, commit, head.commit, message)
            slot.commit = new or head.commit
            if result != "ok" or new is None:
                if cand.idea is not None and cand.retry_of is None:
                    self.ledger.finish_idea(cand.idea.id, "open")  # the next proposal takes the idea up again
                if cand.proposal is not None:  # its tokens were spent: bill them to the next experiment
                    p = cand.proposal
                    self.unbilled = [self.unbilled[0] + p.tokens_in, self.unbilled[1] + p.tokens_out,
                                     self.unbilled[2] + p.cost_usd]
                what = "is already in" if result == "empty" else "conflicts with"
                self._say(f"a candidate proposed on {parent[:7]} {what} the new head {head.commit[:7]}: re-proposing")
                return None
            meta = {"rebased_from": commit, "proposed_on": parent}
            parent, commit = head.commit, new
            violations = self.repo.frozen_violations(parent, commit, self.spec.track.editable)
            if violations:
                self._record_unrun(cand, "invalid", "; ".join(violations), commit=commit, parent_commit=parent)
                return None
            diff = self.repo.diff(parent, commit)
        diff = diff or self.repo.diff(parent, commit)
        fields = self._fields(cand)
        fields.update(parent_commit=parent, head_metric=head.metric,
                      meta={**fields["meta"], **meta, "lines_delta": lines_delta(diff)})
        if cand.retry_of is not None:
            fields["meta"]["retry_of"] = cand.retry_of
        return self.ledger.add_experiment(**self._bill(fields), commit=commit, diff=diff, status="running",
                                          slot=slot.index)

