"""The tournament loop: interleaved turns at equal budget, then a side-by-side re-measurement and a verdict.

State lives in the ledger's key-value table under `tournament:<name>`, written after every turn
and every re-measurement round, so a killed tournament resumes where it stopped; each
contestant's own experiments are ordinary loop experiments on its own tag and branch.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overnight.proposers.base import Proposer
from overnight.tournament import verdict as V
from overnight.tournament.budget import Caps, curve, spend
from overnight.tournament.contestants import Contestant

REMEASURE_SEED = 7_000_000  # seeds no loop run uses: round r measures every head with seed REMEASURE_SEED + r


class TournamentError(Exception):
    """The tournament cannot start or go on; the message says why."""


class ProgramTrack:
    """The track as one contestant sees it: everything shared, but its own program.md text."""

    def __init__(self, track: Any, program: str):
        self._track, self._program = track, program

    def __getattr__(self, name: str) -> Any:
        return getattr(self._track, name)

    @property
    def program(self) -> str:
        return self._program


ProposerFactory = Callable[[Contestant, Any, str], Proposer]


@dataclass
class Tournament:
    track: Any
    name: str
    contestants: list[Contestant]
    caps: Caps
    make_proposer: ProposerFactory
    remeasure: int = 8  # rounds of the final side-by-side measurement
    alpha: float = 0.05
    workers: int = 1
    stop: threading.Event = field(default_factory=threading.Event)
    say: Callable[[str], None] = print
    _proposers: dict[str, Proposer] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"tournament:{self.name}"

    def tag(self, c: Contestant) -> str:
        return f"{self.name}-{c.name}"

    # --- state ----------------------------------------------------------------------------------------
    def _load(self) -> dict[str, Any]:
        state = self.track.ledger.get(self.key)
        mine = [c.as_dict() for c in self.contestants]
        if state is None:
            base = self.track.repo.head_commit()
            state = {"name": self.name, "base": base, "contestants": mine, "caps": self.caps.as_dict(),
                     "turns": 0, "wall": {c.name: 0.0 for c in self.contestants}, "out": {},
                     "remeasure": {}, "verdict": None, "created": time.time()}
            self.track.ledger.put(self.key, state)
            names = self.track.ledger.get("tournaments", [])  # the dashboard lists tournaments from here
            self.track.ledger.put("tournaments", [*names, self.name])
        elif [c["name"] for c in state["contestants"]] != [c.name for c in self.contestants]:
            raise TournamentError(f"tournament {self.name!r} already exists with contestants "
                                  f"{', '.join(c['name'] for c in state['contestants'])}: give the same ones, "
                                  "or choose another --name")
        return state

    def _save(self, state: dict[str, Any]) -> None:
        self.track.ledger.put(self.key, state)

    # --- the contest ----------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        state = self._load()
        for c in self.contestants:  # every branch starts from the same base
            self.track.repo.ensure_branch(f"overnight/{self.tag(c)}", state["base"])
        while not self.stop.is_set() and state["verdict"] is None:
            active = [c for c in self.contestants if self._may_play(c, state)]
            if not active:
                break
            order = list(active)
            random.Random(f"{self.name}:{state['turns']}").shuffle(order)  # no contestant always goes first
            for c in order:
                if self.stop.is_set():
                    break
                self._turn(c, state)
        if self.stop.is_set():
            self.say(f"tournament {self.name!r} stopped; run the same command again to resume")
            return state
        if state["verdict"] is None:
            self._remeasure(state)
        return state

    def _may_play(self, c: Contestant, state: dict[str, Any]) -> bool:
        if c.name in state["out"]:
            return False
        reached = self.caps.reached(spend(self.track.ledger, self.tag(c), state["wall"][c.name]))
        return reached is None

    def _proposer(self, c: Contestant, view: Any) -> Proposer:
        if c.name not in self._proposers:
            self._proposers[c.name] = self.make_proposer(c, view, self.tag(c))
        return self._proposers[c.name]

    def _turn(self, c: Contestant, state: dict[str, Any]) -> None:
        from overnight.loop import Limits, Loop, LoopError

        view = ProgramTrack(self.track, c.program.read_text() if c.program else self.track.program)
        t0 = time.time()
        try:
            loop = Loop(view, self._proposer(c, view), tag=self.tag(c), limits=Limits(max_experiments=1),
                        stop=self.stop, workers=self.workers, lookahead=0)
            loop.run()
        except LoopError as e:
            if "baseline" in str(e):
                raise TournamentError(str(e)) from None
            state["out"][c.name] = str(e)  # this contestant cannot go on; the others play on
            self.say(f"{c.name} is out: {e}")
        state["wall"][c.name] += time.time() - t0
        state["turns"] += 1
        self._save(state)
        last = self.track.ledger.experiments(tag=self.tag(c))[-1:]
        if last:
            e = last[0]
            self.say(f"turn {state['turns']}: {c.name} #{e.id} {e.status} {e.description[:60]}")

    # --- the verdict ------------------------------------------------------------------------------------
    def heads(self, state: dict[str, Any]) -> dict[str, str]:
        repo = self.track.repo
        return {c.name: repo.resolve(f"refs/heads/overnight/{self.tag(c)}") or state["base"] for c in self.contestants}

    def _remeasure(self, state: dict[str, Any]) -> None:
        from overnight.execution.runner import execute
        from overnight.loop import LoopError
        from overnight.loop.session import Limits, Session

        track, repo = self.track, self.track.repo
        heads = self.heads(state)
        session = Session(track, Limits(), self.stop)  # the loop's own lock: no `overnight run` meanwhile
        try:
            session.acquire()
        except LoopError as e:
            raise TournamentError(str(e)) from None
        trees: dict[str, Path] = {}
        try:
            for i, c in enumerate(self.contestants):
                trees[c.name] = repo.add_worktree(track.paths.worktrees / f"tournament-{i}", heads[c.name])
            values: dict[str, list[float | None]] = state["remeasure"]
            done = min((len(values.get(c.name, [])) for c in self.contestants), default=0)
            for r in range(done, self.remeasure):
                order = list(self.contestants)
                random.Random(f"{self.name}:remeasure:{r}").shuffle(order)
                for c in order:
                    if self.stop.is_set():
                        return
                    got = values.setdefault(c.name, [])
                    if len(got) > r:
                        continue
                    run_dir = track.paths.runs / "tournament" / self.name / c.name / str(r)
                    out = execute(track, repo.workdir(trees[c.name]), run_dir, REMEASURE_SEED + r, track.token,
                                  stop=self.stop)
                    if out.status == "interrupted":
                        return
                    got.append(out.metric if out.status == "ok" else None)
                    state.setdefault("remeasure_seconds", 0.0)
                    state["remeasure_seconds"] += out.wall_seconds
                self._save(state)
                self.say(f"re-measured round {r + 1} of {self.remeasure}")
            state["verdict"] = self._verdict(state)
            self._save(state)
        finally:
            for tree in trees.values():
                repo.remove_worktree(tree)
            session.release()

    def _verdict(self, state: dict[str, Any]) -> dict[str, Any]:
        values = state["remeasure"]
        failed = sorted(c for c, v in values.items() if any(x is None for x in v))
        ok = {c: [float(x) for x in v] for c, v in values.items() if c not in failed}
        verdict = V.decide(ok, self.track.spec.minimize, self.alpha)
        metric = self.track.spec.metric.name
        spent = {c.name: spend(self.track.ledger, self.tag(c), state["wall"][c.name]).as_dict()
                 for c in self.contestants}
        total_slot = sum(s["slot_seconds"] for s in spent.values())
        return {
            "order": verdict.order + failed, "winner": verdict.winner, "means": verdict.means,
            "failed": failed, "alpha": self.alpha, "rounds": verdict.rounds,
            "pairs": [vars(p) for p in verdict.pairs], "lines": verdict.lines(metric)
            + [f"{c}: its head failed to re-measure" for c in failed],
            "spend": spent, "overhead": (state.get("remeasure_seconds", 0.0) / total_slot) if total_slot else 0.0,
            "curves": {c.name: curve(self.track.ledger, self.tag(c), self.track.spec.minimize)
                       for c in self.contestants},
            "heads": self.heads(state),
        }
