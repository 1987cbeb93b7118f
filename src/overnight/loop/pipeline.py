"""The proposer side of the pipeline: one thread that owns the proposer, and rebasing stale candidates.

Proposers are not thread-safe, so propose(), observe() and baseline() are all called from
this one thread, in the order the loop asked for them; the loop never waits on it while a
slot could be running something.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overnight.git.repo import Repo, RepoError, git
from overnight.loop.worktrees import checkout
from overnight.proposers.base import FatalProposerError, Proposal, ProposalContext, Proposer, StopProposing

if TYPE_CHECKING:
    from overnight.storage.ledger import Experiment, Idea
    from overnight.track import Track


@dataclass
class Candidate:
    """A proposal on its way to a slot: a commit on `parent`, or why there is none."""

    parent: str
    head_metric: float | None
    idea: Idea | None = None
    commit: str | None = None
    proposal: Proposal | None = None
    error: str = ""  # the proposer failed: recorded as an `error` experiment
    fatal: str = ""  # FatalProposerError: the loop stops
    stop: str = ""  # StopProposing: no more proposals, queued work still runs
    propose_seconds: float = 0.0
    retry_of: int | None = None  # an experiment whose keep lost the race to another keep
    fields: dict[str, Any] | None = None  # ledger fields carried over by a retry
    worktree: Path | None = None  # where it was proposed; a slot runs it right there when the head held
    diff: str = ""
    violations: list[str] | None = None


class ProposerThread(threading.Thread):
    """Turns proposal requests into committed candidates in its own worktree, one at a time."""

    def __init__(self, track: Track, tag: str, proposer: Proposer, git_lock: threading.RLock,
                 events: queue.Queue, stop: threading.Event):
        super().__init__(name="proposer", daemon=True)
        self.track, self.tag, self.proposer = track, tag, proposer
        self.repo: Repo = track.repo
        self.git_lock, self.events, self.stop = git_lock, events, stop
        self.inbox: queue.Queue = queue.Queue()

    def request(self, cand: Candidate) -> None:
        self.inbox.put(("propose", cand))

    def observe(self, exp: Experiment) -> None:
        self.inbox.put(("observe", exp))

    def baseline(self, exp: Experiment) -> None:
        self.inbox.put(("baseline", exp))

    def withdraw(self, meta: dict[str, Any]) -> None:
        """A proposal that will never run (it conflicts with a new head): a proposer that tracks what it
        proposed (`withdraw`) lets it go, so it may be proposed again."""
        self.inbox.put(("withdraw", meta))

    def close(self, timeout: float = 10.0) -> None:
        self.inbox.put(None)
        if self.is_alive():
            self.join(timeout)

    def run(self) -> None:
        while (msg := self.inbox.get()) is not None:
            kind, arg = msg
            try:
                if kind == "observe":
                    self.proposer.observe(arg)
                elif kind == "baseline":
                    self.proposer.baseline(arg)
                elif kind == "withdraw":
                    if hasattr(self.proposer, "withdraw"):
                        self.proposer.withdraw(arg)
                else:
                    self.events.put(("proposed", self._propose(arg)))
            except Exception as e:  # the loop must hear about it, not hang waiting for a proposal
                if kind == "propose":
                    arg.error = f"{type(e).__name__}: {e}"
                    self.events.put(("proposed", arg))
                else:
                    self.events.put(("message", f"proposer.{kind} failed: {type(e).__name__}: {e}"))

    def _propose(self, cand: Candidate) -> Candidate:
        wt = cand.worktree
        assert wt is not None
        with self.git_lock:
            checkout(wt, cand.parent)
        ctx = ProposalContext(track=self.track, tag=self.tag, workdir=self.repo.workdir(wt), parent_commit=cand.parent,
                              head_metric=cand.head_metric, idea=cand.idea, stop=self.stop)
        t0 = time.monotonic()
        try:
            prop = self.proposer.propose(ctx)
        except FatalProposerError as e:
            cand.fatal = str(e) or "the proposer cannot go on"
            return cand
        except StopProposing as e:
            cand.stop = str(e) or "the proposer asked to stop"
            return cand
        except Exception as e:  # a proposer bug is an outcome, not a dead loop
            cand.error = f"{type(e).__name__}: {e}"
            return cand
        finally:
            cand.propose_seconds = time.monotonic() - t0
        cand.proposal = prop
        if prop.parent_commit:  # a draft edited on another commit: intake rebases it onto the head
            cand.parent = prop.parent_commit
        if prop.parent_id is None:
            prop.parent_id = self.track.ledger.node_at(self.tag, cand.parent)
        if prop.error:
            cand.error = prop.error
            return cand
        with self.git_lock:
            cand.commit = self.repo.commit_all(wt, f"overnight: {prop.description[:200]}")
            if cand.commit:
                self.repo.clean(wt)  # the proposer may have left ignored files: the run sees the commit only
        if cand.commit:  # read-only checks here keep them off the slots' critical path
            cand.diff = self.repo.diff(cand.parent, cand.commit)
            cand.violations = self.repo.frozen_violations(cand.parent, cand.commit, self.track.spec.track.editable)
        return cand


def rebase(repo: Repo, wt: Path, commit: str, onto: str, message: str) -> tuple[str, str | None]:
    """Replay the candidate's diff on `onto` in worktree `wt`: ("ok", new), ("empty", None) or ("conflict", None)."""
    checkout(wt, onto)
    try:
        git(wt, "cherry-pick", "--no-commit", commit)
    except RepoError:  # a conflict: the worktree is reset, the candidate goes back to the proposer
        git(wt, "cherry-pick", "--quit", check=False)
        checkout(wt, onto)
        return "conflict", None
    try:
        new = repo.commit_all(wt, message)
    except RepoError:
        checkout(wt, onto)
        return "conflict", None
    return ("ok", new) if new else ("empty", None)
