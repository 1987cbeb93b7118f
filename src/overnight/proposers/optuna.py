"""The Optuna proposer: samples the spec's `[[search]]` constants and rewrites them in place.

The candidate is an ordinary diff; the study lives in the ledger's SQLite file,
so a resumed loop continues the same study.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from overnight.core.spec import SearchParam, constant_pattern
from overnight.proposers.base import FatalProposerError, Proposal, ProposalContext
from overnight.storage.ledger import Experiment
from overnight.track import Track

optuna.logging.set_verbosity(logging.WARNING)


def distribution(p: SearchParam) -> BaseDistribution:
    if p.choices is not None:
        return CategoricalDistribution(p.choices)
    assert p.low is not None and p.high is not None
    if p.int:
        step = int(p.step or 1)
        return IntDistribution(int(p.low), int(p.high), log=p.log, step=1 if p.log else step)
    return FloatDistribution(p.low, p.high, log=p.log, step=None if p.log else p.step)


def literal(value: Any) -> str:
    """Python source for a sampled value; floats stay floats (3.0, not 3)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return repr(value)
    if isinstance(value, float):
        s = f"{value:.6g}"
        return s if any(c in s for c in ".eEn") else s + ".0"
    return repr(value)


def read_constant(path: Path, name: str) -> Any:
    m = constant_pattern(name).search(path.read_text())
    if m is None:
        raise FatalProposerError(f"{path}: no top-level line `{name} = <value>` to tune")
    try:
        return ast.literal_eval(m.group("value").strip())
    except (ValueError, SyntaxError):
        return m.group("value").strip()


def write_constant(path: Path, name: str, value: Any) -> None:
    text = path.read_text()
    new, n = constant_pattern(name).subn(lambda m: m.group("lhs") + literal(value) + m.group("tail"), text, count=1)
    if n != 1:
        raise FatalProposerError(f"{path}: no top-level line `{name} = <value>` to tune")
    path.write_text(new)


def moves(params: list[SearchParam], current: dict[str, Any]) -> list[tuple[str, Any]]:
    """One-constant moves around the head (x2 and /2 on a log scale, a quarter of the range
    otherwise, the other choices), tried before the sampler's own search: the code one starts
    from is usually near a better version, and each answer shows which knob matters."""
    up: list[tuple[str, Any]] = []
    down: list[tuple[str, Any]] = []
    for p in params:
        c = current.get(p.name)
        if p.choices is not None:
            others = [x for x in p.choices if x != c]
            up += [(p.name, x) for x in others[:1]]
            down += [(p.name, x) for x in others[1:2]]
            continue
        if isinstance(c, bool) or not isinstance(c, int | float):
            continue
        assert p.low is not None and p.high is not None
        if p.log:
            hi, lo = c * 2, c / 2
        else:
            hi, lo = c + (p.high - p.low) / 4, c - (p.high - p.low) / 4
        if p.int:
            hi, lo = max(round(hi), int(c) + 1), min(round(lo), int(c) - 1)
        for value, side in ((hi, up), (lo, down)):
            value = min(max(value, p.low), p.high)
            if value != c:
                side.append((p.name, int(value) if p.int else float(value)))
    return up + down


class OptunaProposer:
    name = "optuna"

    def __init__(self, track: Track, tag: str):
        if not track.spec.search:
            raise FatalProposerError(
                f"{track.dir / 'overnight.toml'}: the optuna proposer needs [[search]] entries "
                "(constants to tune); add some, or use --proposer llm / --proposer agent"
            )
        self.track = track
        self.params = track.spec.search
        self.dists = {p.name: distribution(p) for p in self.params}
        storage = optuna.storages.RDBStorage(
            track.ledger.url, engine_kwargs={"connect_args": {"timeout": 30}}
        )
        self.study = optuna.create_study(
            storage=storage, study_name=f"overnight:{tag}", load_if_exists=True,
            direction=track.spec.metric.direction, sampler=optuna.samplers.TPESampler(n_startup_trials=8),
        )
        self._fail_orphans()

    def _fail_orphans(self) -> None:
        """Trials asked by a loop that died before its candidate became an experiment."""
        known = {e.meta.get("trial") for e in self.track.ledger.experiments() if e.meta}
        for t in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            if t.number not in known:
                self.study.tell(t.number, state=TrialState.FAIL)

    def _current(self, workdir: Path) -> dict[str, Any]:
        return {p.name: read_constant(workdir / p.file, p.name) for p in self.params}

    def _enqueue_move(self, current: dict[str, Any]) -> None:
        """Queue the next one-constant move around the head; the rest of the point stays the head's."""
        done = sum(1 for t in self.study.get_trials(deepcopy=False) if "move" in t.user_attrs)
        plan = moves(self.params, current)
        if done >= len(plan):
            return
        name, value = plan[done]
        point = {}
        for n, d in self.dists.items():
            v = current[n]
            if isinstance(d, CategoricalDistribution):
                if v in d.choices:
                    point[n] = v
            elif isinstance(v, int | float) and not isinstance(v, bool):
                v = min(max(v, d.low), d.high)
                point[n] = int(round(v)) if isinstance(d, IntDistribution) else float(v)
        self.study.enqueue_trial({**point, name: value}, user_attrs={"move": name})

    def propose(self, ctx: ProposalContext) -> Proposal:
        current = self._current(ctx.workdir)
        self._enqueue_move(current)
        trial = self.study.ask(self.dists)
        changed = []
        for p in self.params:
            value = trial.params[p.name]
            if literal(value) != literal(current[p.name]):
                write_constant(ctx.workdir / p.file, p.name, value)
                changed.append(f"{p.name}={literal(value)}")
        desc = ", ".join(changed) if changed else "no change"
        return Proposal(description=desc, proposer=self.name, meta={"trial": trial.number})

    def observe(self, exp: Experiment) -> None:
        number = exp.meta.get("trial")
        if number is None:
            return
        value = exp.metric if exp.metric is not None else None
        if exp.status == "no_change":
            value = exp.head_metric  # the sampled point is the head: its measured value is the answer
        try:
            if value is None:
                self.study.tell(number, state=TrialState.FAIL)
            else:
                self.study.tell(number, value)
        except (RuntimeError, ValueError):
            pass  # already told (a resumed loop observing twice)

    def baseline(self, exp: Experiment) -> None:
        """Teach the study the starting point, so it samples around a known value."""
        if exp.metric is None or self.study.get_trials(deepcopy=False):
            return
        try:
            current = self._current(self.track.dir)
            if all(d._contains(d.to_internal_repr(current[n])) for n, d in self.dists.items()):
                self.study.add_trial(optuna.trial.create_trial(params=current, distributions=self.dists, value=exp.metric))
        except (ValueError, TypeError, KeyError):
            pass  # a baseline outside the search box is simply not taught
