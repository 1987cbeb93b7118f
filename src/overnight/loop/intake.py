"""Intake: the proposer thread and the candidates it made, until a slot takes one.

It writes nothing: what a proposal comes to (ready, never run and why, the proposer's stop) goes
back to the loop as an `Outcome`, and a candidate a slot takes comes back `Prepared` (rebased
first when the head moved meanwhile) for the recorder to write.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from overnight.core.measurements import printable
from overnight.core.status import Status
from overnight.execution.executor import Slot
from overnight.loop.jobs import MAX_CONSECUTIVE_ERRORS, lines_delta
from overnight.loop.pipeline import Candidate, ProposerThread, rebase
from overnight.loop.worktrees import WorktreePool
from overnight.proposers.base import Proposer
from overnight.proposers.operators import DRAFT_CONFLICT, DRAFT_EMPTY, Operator
from overnight.track import Track


@dataclass
class Outcome:
    """What one proposal comes to. kind: ready | unrun | stop | fatal | dropped | retry."""

    kind: str
    status: str = ""
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    commit: str | None = None
    diff: str = ""
    reopen_idea: int | None = None  # an idea nobody will run: back in the queue
    withdrawn: dict[str, Any] | None = None  # the meta of a proposal that will never run: its proposer forgets it
    fatal: bool = False  # too many errors in a row: the loop stops after recording this one


@dataclass
class Prepared:
    """A candidate on its slot's worktree, ready to become an experiment row."""

    fields: dict[str, Any]
    commit: str
    diff: str


class Intake:
    def __init__(self, track: Track, tag: str, proposer: Proposer, pool: WorktreePool, events: queue.Queue,
                 pstop: threading.Event, lookahead: int, platform: dict[str, Any],
                 screen: Callable[[str], str | None] | None = None):
        self.track, self.tag, self.proposer, self.pool = track, tag, proposer, pool
        self.lookahead = lookahead  # 0: the serial loop (propose only while nothing runs)
        self.platform = platform
        self.screen = screen  # the judge's verdict on a diff alone (a seed-only change), or None
        self.ready: deque[Candidate] = deque()
        self.proposing = 0
        self.errors = 0
        self.unbilled: list[float] = [0, 0, 0.0]  # tokens in, tokens out, dollars of dropped proposals
        self.no_more = False
        self.said = ""  # the proposer's last stop reason, printed once
        self.thread = ProposerThread(track, tag, proposer, pool.lock, events, pstop)

    @property
    def uses_ideas(self) -> bool:
        # Only proposers that read ideas claim them: a sampler would mark them done unread.
        return bool(getattr(self.proposer, "uses_ideas", False))

    def busy(self) -> bool:
        return bool(self.ready or self.proposing)

    # --- asking -----------------------------------------------------------------------------------
    def wanted(self, free_slots: int, pending: int, idle: bool, remaining: int | None) -> int:
        """How many candidates should be ready or being proposed now."""
        # The serial loop (lookahead 0) thinks only while the slot is empty.
        want = int(idle) if self.lookahead <= 0 else max(0, free_slots - pending) + self.lookahead
        return want if remaining is None else min(want, remaining - pending)

    def request(self, want: int, parent: str, head_metric: float | None, claim: Callable[[], Any]) -> None:
        while len(self.ready) + self.proposing < want:
            wt = self.pool.lease()
            if wt is None:
                return
            idea = claim() if self.uses_ideas else None
            self.thread.request(Candidate(parent=parent, head_metric=head_metric, idea=idea, worktree=wt))
            self.proposing += 1

    # --- answers ----------------------------------------------------------------------------------
    def on_proposed(self, cand: Candidate, runnable: bool) -> Outcome:
        self.proposing -= 1
        if cand.worktree is not None and (cand.fatal or cand.stop or not runnable or cand.error or not cand.commit
                                          or cand.violations):
            self.pool.release(cand.worktree)  # nothing will run there
            cand.worktree = None
        if cand.fatal or cand.stop or not runnable:
            reopen = cand.idea.id if cand.idea is not None else None
            if cand.fatal:
                return Outcome("fatal", reason=cand.fatal, reopen_idea=reopen)
            if cand.stop:  # said once: with workers or lookahead, every proposal asked meanwhile says it too
                said, self.said, self.no_more = self.said == cand.stop, cand.stop, True
                return Outcome("stop", reason="" if said else cand.stop, reopen_idea=reopen)
            return Outcome("dropped", reopen_idea=reopen, withdrawn=_meta(cand))
        if cand.error:
            self.errors += 1
            return Outcome("unrun", Status.ERROR, cand.error, self.bill(self.fields(cand)),
                           fatal=self.errors >= MAX_CONSECUTIVE_ERRORS)
        self.errors = 0
        if cand.commit is None:
            return Outcome("unrun", Status.NO_CHANGE, "the proposal changed nothing", self.bill(self.fields(cand)))
        if cand.violations:  # an invalid candidate is recorded, never executed
            return Outcome("unrun", Status.INVALID, "; ".join(cand.violations), self.bill(self.fields(cand)),
                           commit=cand.commit, diff=cand.diff)
        why = self.screen(cand.diff) if self.screen is not None and cand.retry_of is None else None
        if why:  # the judge discards it from its diff alone: running it measures nothing
            if cand.worktree is not None:
                self.pool.release(cand.worktree)
                cand.worktree = None
            return Outcome("unrun", Status.DISCARD, why, self.bill(self.fields(cand)), commit=cand.commit,
                           diff=cand.diff)
        self.ready.append(cand)
        return Outcome("ready")

    def reopen(self) -> None:
        """A proposal was withdrawn: a proposer that had nothing left to propose may have it back."""
        self.no_more = False

    def fields(self, cand: Candidate) -> dict[str, Any]:
        if cand.fields is not None:  # a re-queued candidate: what the proposer said the first time
            return {**cand.fields, "tag": self.tag, "platform": self.platform, "parent_commit": cand.parent,
                    "head_metric": cand.head_metric}
        p = cand.proposal
        return dict(
            tag=self.tag, parent_commit=cand.parent, head_metric=cand.head_metric, platform=self.platform,
            idea_id=cand.idea.id if cand.idea else None, propose_seconds=cand.propose_seconds,
            proposer=p.proposer if p else getattr(self.proposer, "name", "?"),
            description=printable(p.description if p else "")[:500], transcript=p.transcript if p else "",
            tokens_in=p.tokens_in if p else 0, tokens_out=p.tokens_out if p else 0,
            cost_usd=p.cost_usd if p else 0.0, meta=dict(p.meta) if p else {},
            operator=p.operator if p else None, parent_id=p.parent_id if p else None,
        )

    def bill(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Add the spend of proposals that were dropped unrecorded (a conflict with a new head)."""
        t_in, t_out, usd = self.unbilled
        self.unbilled = [0, 0, 0.0]
        return {**fields, "tokens_in": fields.get("tokens_in", 0) + t_in,
                "tokens_out": fields.get("tokens_out", 0) + t_out, "cost_usd": fields.get("cost_usd", 0.0) + usd}

    # --- a slot takes one -------------------------------------------------------------------------
    def prepare(self, cand: Candidate, slot: Slot, head_commit: str, head_metric: float | None,
                say: Callable[[str], None]) -> Prepared | Outcome:
        """The candidate on `slot`'s worktree, rebased first when the head has moved; an `Outcome` when it
        turned invalid on the new head, or `dropped` when it conflicts (re-proposed: its idea goes back; a draft
        conflicting with the head is recorded `invalid` instead, or `no_change` when the head holds it)."""
        assert cand.commit and slot.worktree is not None
        parent, commit, meta, diff = cand.parent, cand.commit, {}, cand.diff
        repo = self.track.repo
        if cand.worktree is not None:  # the slot runs the candidate where it was proposed
            self.pool.release(slot.worktree)
            slot.worktree, slot.commit, cand.worktree = cand.worktree, commit, None
        if parent != head_commit:
            message = f"overnight: {self.fields(cand)['description'][:200]} (rebased)"
            with self.pool.lock:
                result, new = rebase(repo, slot.worktree, commit, head_commit, message)
            slot.commit = new or head_commit
            if result != "ok" or new is None:
                if _operator(cand) == Operator.DRAFT and cand.retry_of is None:  # re-proposed, it would be drafted again
                    why = DRAFT_EMPTY if result == "empty" else DRAFT_CONFLICT
                    say(f"a draft {why} {head_commit[:7]}: recorded")
                    return Outcome("unrun", Status.NO_CHANGE if result == "empty" else Status.INVALID,
                                   f"{why} {head_commit[:7]}", self.bill(self.fields(cand)), commit=commit, diff=diff)
                if cand.proposal is not None:  # its tokens were spent: bill them to the next experiment
                    p = cand.proposal
                    self.unbilled = [self.unbilled[0] + p.tokens_in, self.unbilled[1] + p.tokens_out,
                                     self.unbilled[2] + p.cost_usd]
                what = "is already in" if result == "empty" else "conflicts with"
                say(f"a candidate proposed on {parent[:7]} {what} the new head {head_commit[:7]}: re-proposing")
                back = cand.idea.id if cand.idea is not None and cand.retry_of is None else None
                return Outcome("dropped", reopen_idea=back, withdrawn=_meta(cand))
            meta = {"rebased_from": commit, "proposed_on": parent}
            parent, commit = head_commit, new
            violations = repo.frozen_violations(parent, commit, self.track.spec.track.editable)
            if violations:
                fields = {**self.bill(self.fields(cand)), "parent_commit": parent}
                return Outcome("unrun", Status.INVALID, "; ".join(violations), fields, commit=commit)
            diff = repo.diff(parent, commit)
        diff = diff or repo.diff(parent, commit)
        fields = self.fields(cand)
        fields.update(parent_commit=parent, head_metric=head_metric,
                      meta={**fields["meta"], **meta, "lines_delta": lines_delta(diff)})
        if cand.retry_of is not None:
            fields["meta"]["retry_of"] = cand.retry_of
        return Prepared(self.bill(fields), commit, diff)

    def drain(self, events: queue.Queue) -> list[Candidate]:
        """At shutdown: every candidate that will never run (ready, or proposed and still queued)."""
        while True:
            try:
                kind, *rest = events.get_nowait()
            except queue.Empty:
                break
            if kind == "proposed":
                self.ready.append(rest[0])
        left = list(self.ready)
        self.ready.clear()
        return left


def _operator(cand: Candidate) -> str | None:
    return cand.proposal.operator if cand.proposal is not None else (cand.fields or {}).get("operator")


def _meta(cand: Candidate) -> dict[str, Any] | None:
    """What the proposer said of a candidate that will never run (None: nothing to withdraw), with the
    operation it started (an agent proposer lets that operation go)."""
    if cand.fields is not None:
        return dict(cand.fields.get("meta") or {})
    p = cand.proposal
    return {**p.meta, "operator": p.operator, "parent_id": p.parent_id} if p is not None else None
