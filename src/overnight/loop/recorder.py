"""The recorder: the only writer of ledger rows, refs, the branch and the live state.

Every other part of the loop hands it plain data (fields, outcomes, verdicts); it runs on the
loop's thread, so experiments, runs and the branch change in one order.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from overnight.core.status import Status
from overnight.execution.runner import RunOutcome
from overnight.git.repo import RepoError, remove_tree
from overnight.loop.jobs import SlotView
from overnight.storage.ledger import Experiment
from overnight.track import Track


@dataclass
class LoopState:
    """What the live view shows; written by the recorder, read by the view's thread."""

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
    feed: list[tuple[str, Any]] = field(default_factory=list)  # append-only, in order: the plain view's lines

    def show(self, exps: list[Experiment]) -> None:
        self.recent = [*self.recent, *exps][-8:]
        self.feed.extend(("exp", e) for e in exps)


class Recorder:
    def __init__(self, track: Track, tag: str, branch: str, state: LoopState):
        self.track, self.ledger, self.repo = track, track.ledger, track.repo
        self.tag, self.branch, self.state = tag, branch, state

    # --- the session's start ------------------------------------------------------------------------
    def open_tag(self) -> str:
        """The tag's base commit (recorded on first use) and its branch."""
        tags = self.ledger.get("tags", {})
        if self.tag not in tags:
            dirty = self.repo.tracked_dirty()
            if dirty:
                self.say(f"note: uncommitted changes are not part of the baseline: {', '.join(dirty[:5])}")
            base = self.repo.resolve(f"refs/heads/{self.branch}") or self.repo.head_commit()
            tags[self.tag] = {"base": base, "branch": self.branch, "created": time.time()}
            self.ledger.put("tags", tags)
        base = tags[self.tag]["base"]
        self.ledger.put("current_tag", self.tag)
        self.repo.ensure_branch(self.branch, base)
        self._repair_branch(base)
        return base

    def _repair_branch(self, base: str) -> None:
        """A loop killed between moving the branch and recording the keep left the branch ahead of the
        ledger: the ledger decides, so the branch goes back to its last kept commit and the cut-short
        experiment is resumed and decided again (recording it twice would keep one commit twice)."""
        tip = self.repo.resolve(f"refs/heads/{self.branch}")
        exps = self.ledger.experiments(tag=self.tag)
        cut = next((e for e in exps if e.commit == tip and not e.meta.get("baseline")), None)
        if cut is None or any(e.commit == tip and e.status == Status.KEEP for e in exps):
            return  # the tip is a kept commit, or one the user made by hand: nothing to repair
        kept = [e.commit for e in exps if e.status == Status.KEEP and e.commit]
        target = kept[-1] if kept else base
        self.repo.advance(self.branch, target, tip)
        self.say(f"note: the branch was ahead of the ledger (the keep of #{cut.id} was cut short): back to {target[:7]}")

    def reopen_orphan_ideas(self) -> None:
        """Ideas claimed by a loop that died before their candidate became an experiment go back in the queue."""
        self.ledger.reopen_orphan_ideas("loop:")

    def add_baseline(self, base: str, platform: dict[str, Any]) -> Experiment:
        exp = self.ledger.add_experiment(
            tag=self.tag, parent_commit=base, commit=base, proposer="baseline", description="baseline",
            status=Status.RUNNING, meta={"baseline": True}, platform=platform,
        )
        self.repo.keep_ref(self.tag, exp.id, base)
        return exp

    # --- experiments ------------------------------------------------------------------------------
    def add_candidate(self, fields: dict[str, Any], commit: str, diff: str, slot: int) -> Experiment:
        return self.ledger.add_experiment(**fields, commit=commit, diff=diff, status=Status.RUNNING, slot=slot)

    def on_slot(self, exp: Experiment, slot: int) -> Experiment:
        return self.ledger.update_experiment(exp.id, slot=slot)

    def keep_ref(self, exp: Experiment) -> None:
        self.repo.keep_ref(self.tag, exp.id, exp.commit)

    def unrun(self, fields: dict[str, Any], status: str, reason: str, commit: str | None = None,
              diff: str = "") -> Experiment:
        """A candidate that never ran: recorded with why."""
        exp = self.ledger.add_experiment(**fields, commit=commit, diff=diff, status=status, reason=reason,
                                         finished_at=time.time())
        if commit:
            self.repo.keep_ref(self.tag, exp.id, commit)
        self._decided(exp)
        return exp

    def interrupted(self, exp: Experiment, reason: str) -> None:
        self.ledger.update_experiment(exp.id, status=Status.INTERRUPTED, reason=reason)

    def advance(self, exp: Experiment) -> str | None:
        """Move the branch to a kept commit (compare-and-swap on its parent); the error when it moved meanwhile."""
        try:
            self.repo.advance(self.branch, exp.commit, exp.parent_commit)
        except RepoError as e:
            return str(e)
        return None

    def decide(self, exp: Experiment, status: str, reason: str, values: list[float], out: RunOutcome,
               stats: dict[str, Any] | None = None) -> Experiment:
        metric = fmean(values) if values and status in (Status.KEEP, Status.DISCARD) else out.metric
        if status != Status.KEEP:
            for run in self.ledger.runs(exp.id):  # artifacts of discarded candidates are not kept
                remove_tree(Path(run.log_path).parent / "artifacts")  # any shape a candidate left
        # The head the judge compared against (it may have moved since the candidate started).
        head_metric = (stats or {}).get("head_mean", exp.head_metric)
        exp = self.ledger.update_experiment(
            exp.id, status=status, reason=reason, metric=metric, measurements=out.measurements,
            stats=stats or {}, finished_at=time.time(), meta={**exp.meta, "log": out.log_path},
            head_metric=head_metric,
        )
        if status == Status.KEEP:
            self.state.head = metric
        self._decided(exp)
        return exp

    def replicated(self, exp: Experiment, stats: dict[str, Any]) -> Experiment:
        return self.ledger.update_experiment(exp.id, stats={**(exp.stats or {}), **stats})

    def revert(self, exp: Experiment, old: Experiment, reason: str, stats: dict[str, Any]) -> str | None:
        """A keep that did not reproduce: the branch goes back to `old` and the experiment says why."""
        try:
            self.repo.advance(self.branch, old.commit, exp.commit)
        except RepoError as e:
            self.replicated(exp, stats)
            return f"could not revert #{exp.id}: the branch moved on meanwhile ({e})"
        self.ledger.update_experiment(exp.id, status=Status.DISCARD, reason=reason,
                                      stats={**(exp.stats or {}), **stats}, meta={**exp.meta, "reverted": True})
        self.state.head = old.metric
        return None

    def reverted_on_resume(self, exp: Experiment) -> None:
        """A keep its replication reverted: the branch went back, then the loop died before recording it."""
        self.ledger.update_experiment(exp.id, status=Status.DISCARD, meta={**exp.meta, "reverted": True},
                                      reason="kept, then reverted by its replication (the loop was killed "
                                             "before recording the result; the branch was already back)")
        self.say(f"note: #{exp.id} was reverted by its replication just before the last loop died: recorded")

    def _decided(self, exp: Experiment) -> None:
        self.state.done += 1
        self.state.show([exp])

    # --- runs -------------------------------------------------------------------------------------
    def add_run(self, exp: Experiment, index: int, platform_key: str) -> tuple[int, int, Path]:
        """A run row before the run starts: (run id, seed, run folder)."""
        seed = exp.id * 1000 + index
        run_dir = self.track.paths.runs / str(exp.id) / str(index)
        row = self.ledger.add_run(experiment_id=exp.id, seed=seed, status=Status.RUNNING,
                                  log_path=str(run_dir / "run.log"), platform_key=platform_key)
        return row.id, seed, run_dir

    def finish_run(self, run_id: int, out: RunOutcome) -> None:
        self.ledger.finish_run(run_id, status=out.status, metric=out.metric, measurements=out.measurements,
                               exit_code=out.exit_code, wall_seconds=out.wall_seconds, tail=out.tail[-4000:])

    # --- ideas ------------------------------------------------------------------------------------
    def claim_idea(self, lease_seconds: float) -> Any:
        return self.ledger.claim_idea(f"loop:{os.getpid()}", lease_seconds)

    def finish_idea(self, idea_id: int, status: str, exp_id: int | None = None) -> None:
        self.ledger.finish_idea(idea_id, status, exp_id)

    # --- live state -------------------------------------------------------------------------------
    def say(self, text: str) -> None:
        self.state.messages = [*self.state.messages[-4:], text]
        self.state.feed.append(("say", text))

    def slot_running(self, slot: int, exp: Experiment, run: int, head: bool) -> None:
        view = self.state.slots[slot]
        view.exp_id, view.run, view.run_started = exp.id, run, time.time()
        view.description = f"#{exp.id} {'(head) ' if head else ''}{exp.description}"
        self.state.feed.append(("run", (slot, view.description, run)))
        self.publish_slots()

    def slot_idle(self, slot: int) -> None:
        view = self.state.slots[slot]
        view.exp_id, view.description, view.run_started = None, "", None

    def publish_slots(self) -> None:
        """Per-slot status for the live view and for `overnight status` in another terminal."""
        busy = [v for v in self.state.slots if v.exp_id is not None]
        first = busy[0] if busy else None
        self.state.current = first.description if first else ""
        self.state.run_started = first.run_started if first else None
        self.state.phase = f"{len(busy)}/{len(self.state.slots)} slots busy" if len(self.state.slots) > 1 else (
            f"run {first.run}" if first else "proposing")
        self.ledger.put("slots", {"pid": os.getpid(), "executor": self.state.executor, "updated": time.time(),
                                  "slots": [asdict(v) for v in self.state.slots]})

    def clear_slots(self) -> None:
        self.ledger.put("slots", {})
