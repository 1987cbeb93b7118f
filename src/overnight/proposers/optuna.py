"""The Optuna proposer: samples the spec's `[[search]]` constants and rewrites them in place.

Every head gets its own neighbourhood walk before the sampler is asked (docs/search.md):
all other choices of a categorical, x2 and /2 on a log scale, a step each way on a linear
one, then finer rings (steps halved, factors square-rooted). A move whose point the study
already holds is skipped, so the walk's progress is the study itself and survives a restart.
The candidate is an ordinary diff; the study lives in the ledger's SQLite file.
"""

from __future__ import annotations

import ast
import logging
import math
from collections import Counter
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from overnight.core.spec import SearchParam, constant_pattern
from overnight.core.status import Status
from overnight.git.repo import RepoError
from overnight.proposers import steps
from overnight.proposers.base import FatalProposerError, Proposal, ProposalContext
from overnight.proposers.constants import (
    Move,
    distribution,
    kind_of,
    literal,
    moves,
    numeric,
    read_constant,
    snap,
    write_constant,
)
from overnight.proposers.sampling import make_sampler, sample, stalled
from overnight.proposers.scales import rescaled
from overnight.proposers.space import RINGS, a_step, from_unit, unit
from overnight.proposers.surrogate import model_minimum
from overnight.storage.ledger import Experiment
from overnight.track import Track

optuna.logging.set_verbosity(logging.ERROR)  # the GP's kernel-fit retries are not the user's business

COMBINE = True  # near-misses of several constants proposed together, once per head
COMBINED = "(near-misses)"  # the move name of that proposal
BOX = "(into the box)"  # the move name of the head brought into the [[search]] box
MODEL = "(model)"  # the move name of the local quadratic model's minimum
REFIT = 3  # measured points the study must gain before the model is proposed again at the same head
VERTICES = 1  # parabola moves per constant and head (chosen with `overnight bench search`)
Point = tuple[str, ...]


class OptunaProposer:
    name = "optuna"

    def __init__(self, track: Track, tag: str, sampler: str = "gp", seed: int | None = None,
                 storage: optuna.storages.BaseStorage | None = None, walk: bool = True):
        if not track.spec.search:
            raise FatalProposerError(
                f"{track.dir / 'overnight.toml'}: the optuna proposer needs [[search]] entries "
                "(constants to tune); add some, or use --proposer llm / --proposer agent"
            )
        self.track, self.walks = track, walk
        self.params = track.spec.search
        self.dists = {p.name: distribution(p) for p in self.params}
        if storage is None:
            storage = optuna.storages.RDBStorage(track.ledger.url, engine_kwargs={"connect_args": {"timeout": 30}})
        self.study = optuna.create_study(
            storage=storage, study_name=f"overnight:{tag}", load_if_exists=True,
            direction=track.spec.metric.direction, sampler=make_sampler(sampler, seed),
        )
        self._fail_orphans()

    def _fail_orphans(self) -> None:
        """Trials asked (or queued) by a loop that died before its candidate became an experiment:
        failed and marked, so the walk tries their points again."""
        known = {e.meta.get("trial") for e in self.track.ledger.experiments() if e.meta}
        while self.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            t = self.study.ask(self.dists)
            t.set_user_attr("orphan", True)
            self.study.tell(t, state=TrialState.FAIL)
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number not in known:
                self._orphan(t.number)

    # --- points -----------------------------------------------------------------------------------
    def key(self, values: dict[str, Any]) -> Point:
        return tuple(literal(self._snapped(p, values[p.name])) if p.name in values else "?" for p in self.params)

    @staticmethod
    def _snapped(p: SearchParam, v: Any) -> Any:
        """A sampled number as it is written (rounded, in the box); anything else as it is."""
        return snap(p, v) if p.choices is None and numeric(v) else v

    def tried(self) -> set[Point]:
        """Every point the study holds: measured, running, or failed while running (not orphans)."""
        return {self.key(t.params) for t in self.study.get_trials(deepcopy=False)
                if not t.user_attrs.get("orphan") and t.state != TrialState.PRUNED}

    def _current(self, workdir: Path) -> dict[str, Any]:
        return {p.name: read_constant(workdir / p.file, p.name) for p in self.params}

    def _in_box(self, current: dict[str, Any]) -> dict[str, Any]:
        """The head as a point of the search space; a value outside it is left to the sampler."""
        point: dict[str, Any] = {}
        for n, d in self.dists.items():
            v = current[n]
            if isinstance(d, CategoricalDistribution):
                if v in d.choices:  # 32.0 in the file is the choice 32: one key for one point
                    point[n] = d.choices[d.choices.index(v)]
            elif numeric(v):
                v = min(max(v, d.low), d.high)
                point[n] = int(round(v)) if isinstance(d, IntDistribution) else float(v)
        return point

    def _clipped(self, current: dict[str, Any]) -> dict[str, Any] | None:
        """The head with its numbers brought into the box and onto its grid, when that changes one."""
        point = self._in_box(current)
        if len(point) != len(self.dists):
            return None
        point = {p.name: self._snapped(p, point[p.name]) for p in self.params}
        moved = any(literal(point[n]) != literal(current[n]) and not _same_number(point[n], current[n])
                    for n in point)
        return point if moved else None

    def values(self) -> dict[Point, float]:
        """The latest measured value at each point, signed so that lower is better."""
        sign = -1.0 if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else 1.0
        return {self.key(t.params): sign * t.value for t in self.study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None}

    def outcomes(self, head: dict[str, Any]) -> dict[tuple[str, str], bool]:
        """The last decision on each kind of move (constant, direction or choice): kept or not. A choice
        that lost at another scale (a log constant 10x or more from the head's) is news again."""
        last: dict[tuple[str, str], bool] = {}
        logs = [p.name for p in self.params if p.log and numeric(head.get(p.name))]
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
            a = t.user_attrs
            if "move" not in a or "status" not in a:
                continue
            kind, kept = (a["move"], a.get("sign", "")), a["status"] == Status.KEEP
            if not kept and kind[1].startswith("=") and any(
                    numeric(t.params.get(n)) and t.params[n] > 0 and abs(math.log10(head[n] / t.params[n])) >= 1
                    for n in logs):
                last.pop(kind, None)
                continue
            last[kind] = kept
            if kept and "was" in a:  # the choice it replaced lost to it
                last[(a["move"], a["was"])] = False
        return last

    def walk(self, current: dict[str, Any], tried: set[Point]) -> Move | None:
        """The head's next untried move, or None when its neighbourhood is spent. Ring by ring, but
        the kind of move kept last time goes first and one discarded last time goes last: the walk
        keeps going the way that worked and does not spend the night re-trying a dead direction.
        The other choices of a categorical whose current choice was just kept wait for the rest."""
        head = self._in_box(current)
        last, values, at = self.outcomes(head), self.values(), "|".join(self.key(head))
        trials = self.study.get_trials(deepcopy=False)
        here = [t.user_attrs for t in trials  # an orphan's move is tried again
                if t.user_attrs.get("vertex") == at and not t.user_attrs.get("orphan")]
        spent = Counter(a.get("move") for a in here)  # a parabola per constant, head and ring
        vertices = [(p.name, v) for p in self.params
                    if spent[p.name] < VERTICES and (v := steps.vertex(head, p, values, self.key, list(self.dists))) is not None]
        plan = []
        fitted = max((a.get("points", 0) for a in here if a.get("move") == MODEL), default=-len(values))
        guess = self.modelled(head, values) if len(values) - fitted >= REFIT else None
        if guess is not None and self.key(guess) not in tried:
            plan.append((0, -2, Move(guess, MODEL, 0, "+", at)))
        longer = steps.expanded(head, self.params, trials, self.key)
        if longer is not None and self.key(longer.point) not in tried:
            plan.append((0, -3, longer))
        both = self.combined(head, values) if COMBINE else None
        if both is not None and self.key(both) not in tried and not spent[COMBINED]:
            plan.append((0, -1, Move(both, COMBINED, 0, "+", at)))
        for ring in range(RINGS + 1):
            for i, (name, value) in enumerate((vertices if ring == 0 else []) + moves(self.params, head, ring)):
                point = {**head, name: value}
                if self.key(point) not in tried:
                    sign = kind_of(head.get(name), value)
                    vertex = ring == 0 and i < len(vertices)
                    won = True if vertex else last.get((name, sign))
                    fresh = 1.5 if last.get((name, kind_of(None, head.get(name)))) else 1  # a choice just won
                    plan.append((0 if won else fresh if won is None else 2, len(plan),
                                 Move(point, name, ring, sign, at if vertex else "")))
        for i, (_, name, point, sign) in enumerate(rescaled(self.params, head, values, tried, self.key)):
            plan.append((1.2, i, Move(point, name, 1, sign)))  # after the fresh moves, before the dead ones
        return min(plan, key=lambda m: m[:2])[2] if plan else None

    def combined(self, head: dict[str, Any], values: dict[Point, float]) -> dict[str, Any] | None:
        """Near-misses of several constants at once: each constant's best measured value on its axis
        that beat the head's measured value without being kept. Together they may beat the head by
        more than the noise where each alone could not be told from luck."""
        hk = self.key(head)
        f0 = values.get(hk)
        if f0 is None:
            return None
        point, n = dict(head), 0
        for i, name in enumerate(self.dists):
            near = [(f, k[i]) for k, f in values.items()
                    if k[i] != hk[i] and k[:i] == hk[:i] and k[i + 1:] == hk[i + 1:] and f < f0]
            if near:
                point[name] = ast.literal_eval(min(near)[1])
                n += 1
        return point if n >= 2 else None

    def modelled(self, head: dict[str, Any], values: dict[Point, float]) -> dict[str, Any] | None:
        """The minimum of a quadratic fitted to the measured points nearest the head (`surrogate`),
        over the numeric constants, the categorical ones held at the head's choices."""
        axes = [p for p in self.params if p.choices is None and numeric(head.get(p.name))]
        if not axes or len(head) != len(self.dists):
            return None
        names = list(self.dists)
        fixed = [i for i, n in enumerate(names) if n not in {p.name for p in axes}]
        hk = self.key(head)
        pts, ys = [], []
        for k, f in values.items():
            if all(k[i] == hk[i] for i in fixed):
                try:
                    pts.append([unit(p, float(ast.literal_eval(k[names.index(p.name)]))) for p in axes])
                except (ValueError, SyntaxError, TypeError):
                    continue
                ys.append(f)
        found = model_minimum(pts, ys, [unit(p, float(head[p.name])) for p in axes], seed=len(values))
        if found is None:
            return None
        point, far = dict(head), False
        for p, u in zip(axes, found[0], strict=True):
            point[p.name] = snap(p, from_unit(p, u))
            far |= a_step(p, point[p.name], head[p.name])
        return point if far else None

    def _tell_head(self, current: dict[str, Any], metric: float | None, tried: set[Point]) -> None:
        """The study learns the head's measured value when it does not hold that point yet."""
        point = self._in_box(current)
        if metric is None or len(point) != len(self.dists) or self.key(point) in tried:
            return
        if any(numeric(current[n]) and current[n] != point[n] for n in point):
            return  # a head outside the box: its value measured there is not the value at the clipped point
        try:
            self.study.add_trial(optuna.trial.create_trial(params=point, distributions=self.dists, value=metric,
                                                           user_attrs={"head": True}))
            tried.add(self.key(point))
        except (ValueError, TypeError):
            pass  # a head off the declared grid is simply not taught

    # --- the proposer seam ------------------------------------------------------------------------
    def propose(self, ctx: ProposalContext) -> Proposal:
        current = self._current(ctx.workdir)
        tried = self.tried() | self._replayed(ctx.tag)
        self._tell_head(current, ctx.head_metric, tried)
        step = self.walk(current, tried) if self.walks else None
        inside = self._clipped(current)
        if inside is not None and self.key(inside) not in tried:
            step = Move(inside, BOX, 0, "+")  # alone: a move that also clipped would get the clip's credit
        if step is not None and (step.ring or step.name in (MODEL, COMBINED)) and stalled(self.study.get_trials(deepcopy=False)):
            step = None  # the sampler's turn: a stalled walk past its first ring alternates with it
        if step is not None:
            attrs: dict[str, Any] = {"move": step.name, "ring": step.ring, "sign": step.sign}
            if step.sign.startswith("="):
                attrs["was"] = kind_of(None, current[step.name])
            elif step.name in self.dists and numeric(current.get(step.name)) and not isinstance(
                    self.dists[step.name], CategoricalDistribution):
                attrs["from"] = float(current[step.name])  # the step's length, for the next one's (`expanded`)
            if step.vertex:
                attrs["vertex"] = step.vertex
            if step.name == MODEL:
                attrs["points"] = len(self.values())
            self.study.enqueue_trial(step.point, user_attrs=attrs)
            trial = self.study.ask(self.dists)
        else:
            trial = sample(self.study, self.dists, self.params, self.key, tried, self._in_box(current), self.values)
        changed = []
        for p in self.params:
            value = self._snapped(p, trial.params[p.name])
            if literal(value) != literal(current[p.name]) and not _same_number(value, current[p.name]):
                write_constant(ctx.workdir / p.file, p.name, value)
                changed.append(f"{p.name}={literal(value)}")
        desc = ", ".join(changed) if changed else "no change"
        meta: dict[str, Any] = {"trial": trial.number}
        if step is not None:
            meta.update(move=step.name, ring=step.ring)
        return Proposal(description=desc, proposer=self.name, meta=meta)

    def observe(self, exp: Experiment) -> None:
        number = exp.meta.get("trial")
        if number is None:
            return
        value = exp.metric
        trial = next((t for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                      if t.number == number), None)
        if trial is None:
            return  # already told (a resumed loop observing twice)
        if exp.meta.get("rebased_from") and exp.commit:
            return self._rebased(trial, exp)  # the decision belongs to the point that ran, not the asked one
        # A win that lost the race to another keep is a move that worked: the walk replays it on the new head.
        won = exp.status == Status.DISCARD and exp.meta.get("lost_race")
        self.study._storage.set_trial_user_attr(trial._trial_id, "status", str(Status.KEEP if won else exp.status))
        if exp.status == Status.NO_CHANGE:
            value = exp.head_metric  # the sampled point is the head: its measured value is the answer
        try:
            if value is None:
                self.study.tell(number, state=TrialState.FAIL)
            else:
                self.study.tell(number, value)
        except (RuntimeError, ValueError):
            pass  # already told (a resumed loop observing twice)

    def withdraw(self, meta: dict[str, Any]) -> None:
        """The loop dropped this proposal unrun (it conflicted with a new head): its point is untried again."""
        number = meta.get("trial")
        if any(t.number == number for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))):
            self._orphan(number)

    def _orphan(self, number: int) -> None:
        self.study._storage.set_trial_user_attr(self.study._storage.get_trial_id_from_study_id_trial_number(
            self.study._study_id, number), "orphan", True)
        self.study.tell(number, state=TrialState.FAIL)

    def _rebased(self, trial: FrozenTrial, exp: Experiment) -> None:
        """The head moved while the candidate waited and the loop replayed it on the new head: what
        ran is the move applied there. The asked point never ran (it stays untried); what ran is
        taught instead, read from the commit that ran."""
        self._orphan(trial.number)
        try:
            point = self._at_commit(exp.commit)
            attrs = {**{k: v for k, v in trial.user_attrs.items() if k != "orphan"}, "status": str(exp.status)}
            state = TrialState.COMPLETE if exp.metric is not None else TrialState.FAIL
            self.study.add_trial(optuna.trial.create_trial(params=point, distributions=self.dists, value=exp.metric
                                                           if exp.metric is not None else None, state=state,
                                                           user_attrs=attrs))
        except (ValueError, SyntaxError, TypeError, KeyError, RepoError):
            pass  # a commit the study cannot read back is simply not taught

    def _at_commit(self, commit: str) -> dict[str, Any]:
        return self._in_box(self._read_commit(commit))

    def _read_commit(self, commit: str) -> dict[str, Any]:
        ran = {}
        for p in self.params:
            path = "/".join(x for x in (self.track.repo.rel, p.file) if x)
            m = constant_pattern(p.name).search(self.track.repo.run("show", f"{commit}:{path}"))
            ran[p.name] = ast.literal_eval(m.group("value").strip()) if m else None
        return ran

    def _replayed(self, tag: str) -> set[Point]:
        """Points running right now as replays on a newer head: the study learns them only later."""
        out = set()
        for e in self.track.ledger.experiments(tag, status={Status.RUNNING}):
            if (e.meta or {}).get("rebased_from") and e.commit:
                try:
                    out.add(self.key(self._at_commit(e.commit)))
                except (ValueError, SyntaxError, RepoError):
                    continue
        return out

    def baseline(self, exp: Experiment) -> None:
        """Teach the study the starting point, so it samples around a known value."""
        if exp.metric is None or self.study.get_trials(deepcopy=False):
            return
        try:  # the baseline commit's constants: the working tree may be another branch's
            current = self._read_commit(exp.commit) if exp.commit else self._current(self.track.dir)
        except (ValueError, SyntaxError, RepoError):
            current = self._current(self.track.dir)
        self._tell_head(current, exp.metric, set())


def _same_number(a: Any, b: Any) -> bool:
    """32 and 32.0: the file's spelling is left as it is."""
    return numeric(a) and numeric(b) and a == b
