"""The workloads of `overnight bench search`: tracks with a known truth and the noise around it.

Tuning tracks are functions of `[[search]]` constants (minimize; every run adds N(0, sigma)).
Agent tracks are pools of edits with known effects, proposed by a scripted agent that, like a
real one, repeats itself in other words and fixes a crash it just caused.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

ACTS = ["relu", "gelu", "silu", "tanh"]
NORMS = ["layer", "rms", "none"]
OPTS = ["sgd", "adam", "adamw", "lion"]
SCHEDS = ["constant", "cosine", "linear"]


@dataclass
class Tuning:
    name: str
    what: str
    search: list[dict[str, Any]]  # [[search]] entries, all in params.py
    start: dict[str, Any]
    f: Callable[[dict[str, Any]], float]  # the true metric (minimize)
    optimum: float
    sigma: float

    @property
    def categorical(self) -> bool:
        return all("choices" in s for s in self.search)

    @property
    def walk_bound(self) -> int:
        """1 + sum over constants of (choices - 1): the issue's budget for solving a categorical track."""
        return 1 + sum(len(s["choices"]) - 1 for s in self.search)


def _bowl(p: dict[str, Any]) -> float:
    return (1.0 + 0.5 * (math.log10(p["LR"]) - math.log10(3e-3)) ** 2 + 2.0 * (p["WD"] - 0.05) ** 2
            + 0.3 * ((p["WARMUP"] - 300) / 1000) ** 2)


def _valley(p: dict[str, Any]) -> float:
    # The best LR doubles with every fourfold batch (lr ~ sqrt(batch)): one-constant moves zig-zag.
    b, lr = math.log2(p["BATCH"]), math.log2(p["LR"])
    return 1.0 + 0.5 * (lr - (b / 2 - 12)) ** 2 * 0.25 + 0.02 * (b - 8) ** 2 + 1.5 * (p["DROPOUT"] - 0.1) ** 2


CAT_EFFECT = {"ACT": {"relu": 0.3, "gelu": 0.0, "silu": 0.1, "tanh": 0.6},
              "NORM": {"layer": 0.1, "rms": 0.0, "none": 0.5},
              "OPT": {"sgd": 0.8, "adam": 0.15, "adamw": 0.0, "lion": 0.3},
              "SCHED": {"constant": 0.25, "cosine": 0.0, "linear": 0.1}}
SECRET = ["b", "d", "a", "c", "b", "d"]  # the deceptive track's correct choices


OPT_BASE = {"sgd": 0.15, "adam": 0.0, "lion": 0.05}
OPT_LR = {"sgd": 0.1, "adam": 1e-3, "lion": 3e-4}  # each optimizer's own best learning rate
ACT_EFFECT = {"relu": 0.1, "gelu": 0.0, "silu": 0.03, "tanh": 0.3}


def _mixed(p: dict[str, Any]) -> float:
    # The other optimizers look far worse at sgd's learning rate: a one-constant move never finds them.
    o = p["OPT"]
    return (1.0 + OPT_BASE[o] + ACT_EFFECT[p["ACT"]] + 0.2 * (math.log10(p["LR"]) - math.log10(OPT_LR[o])) ** 2
            + (1.0 if o == "sgd" else 0.3) * (p["MOM"] - 0.9) ** 2)


def _cats(p: dict[str, Any]) -> float:
    return 1.0 + sum(CAT_EFFECT[k][p[k]] for k in CAT_EFFECT)


def _count(p: dict[str, Any]) -> float:
    return 1.0 + 0.1 * sum(p[f"C{i}"] != s for i, s in enumerate(SECRET))


TUNING = [
    Tuning("bowl", "3 constants (LR log, WD linear, WARMUP int), separable, sigma 0.02",
           [{"name": "LR", "low": 1e-5, "high": 1.0, "log": True}, {"name": "WD", "low": 0.0, "high": 0.5},
            {"name": "WARMUP", "low": 0, "high": 2000, "int": True}],
           {"LR": 0.05, "WD": 0.3, "WARMUP": 1500}, _bowl, 1.0, 0.02),
    Tuning("valley", "LR (log) interacts with BATCH (log int), plus DROPOUT, sigma 0.02",
           [{"name": "LR", "low": 1e-5, "high": 1.0, "log": True},
            {"name": "BATCH", "low": 16, "high": 4096, "log": True, "int": True},
            {"name": "DROPOUT", "low": 0.0, "high": 0.5}],
           {"LR": 1e-2, "BATCH": 32, "DROPOUT": 0.3}, _valley, 1.0, 0.02),
    Tuning("categorical", "4 categorical constants (4+3+4+3 choices), additive effects 0.1-0.8, sigma 0.03",
           [{"name": "ACT", "choices": ACTS}, {"name": "NORM", "choices": NORMS},
            {"name": "OPT", "choices": OPTS}, {"name": "SCHED", "choices": SCHEDS}],
           {"ACT": "relu", "NORM": "none", "OPT": "sgd", "SCHED": "constant"}, _cats, 1.0, 0.03),
    Tuning("mixed", "OPT (3 choices) x LR (log): each optimizer has its own best LR, 100x apart; ACT (4 "
           "choices), MOM (linear); sigma 0.02",
           [{"name": "OPT", "choices": list(OPT_BASE)}, {"name": "ACT", "choices": list(ACT_EFFECT)},
            {"name": "LR", "low": 1e-5, "high": 1.0, "log": True}, {"name": "MOM", "low": 0.0, "high": 0.99}],
           {"OPT": "sgd", "ACT": "relu", "LR": 0.1, "MOM": 0.5}, _mixed, 1.0, 0.02),
    Tuning("deceptive", "6 categorical constants of 4 choices; only the count of wrong ones shows (0.1 each), "
           "sigma 0.03",
           [{"name": f"C{i}", "choices": ["a", "b", "c", "d"]} for i in range(6)],
           {f"C{i}": "a" for i in range(6)}, _count, 1.0, 0.03),
]


@dataclass
class Edit:
    id: int
    effect: float  # on the metric, in noise sigmas (negative helps)
    text: str
    line: str
    crash: bool = False  # the first version crashes; the fix has `effect`
    partner: int | None = None  # helps only together with this edit
    bonus: float = 0.0


@dataclass
class AgentTrack:
    name: str
    what: str
    edits: list[Edit]
    sigma: float = 0.02
    base: float = 1.0

    def truth(self, applied: frozenset[int]) -> float:
        total = sum(self.edits[i].effect for i in applied)
        total += sum(e.bonus for e in self.edits if e.partner is not None and e.id < e.partner
                     and e.id in applied and e.partner in applied)
        return self.base + total * self.sigma

    @property
    def optimum(self) -> float:
        best = self.base
        for e in self.edits:  # singles that help, and pairs whose sum helps
            if e.partner is None and e.effect < 0:
                best += e.effect * self.sigma
            elif e.partner is not None and e.id < e.partner:
                pair = e.effect + self.edits[e.partner].effect + e.bonus
                best += min(0.0, e.effect, self.edits[e.partner].effect, pair) * self.sigma
        return best


WORDS = ["cosine schedule", "warmup", "weight tying", "rotary embeddings", "gradient clipping", "label smoothing",
         "wider MLP", "deeper model", "qk-norm", "muon optimizer", "batch size", "dropout", "ema of weights",
         "z-loss", "learning rate", "init scale", "attention heads", "bias removal", "swiglu", "value residual"]


def agent_track(name: str, what: str, seed: int, n: int = 40, null: float = 0.55, harmful: float = 0.25,
                crash: float = 0.1, good: int = 3, pairs: int = 2) -> AgentTrack:
    """A pool of n edits: most null or harmful, some crashing with a fixable bug, a few good, pairs."""
    rng = random.Random(seed)
    edits: list[Edit] = []
    for i in range(n):
        topic = f"{WORDS[i % len(WORDS)]} variant {i // len(WORDS) + 1}"
        r = rng.random()
        effect = 0.0 if r < null else rng.uniform(1.0, 4.0) if r < null + harmful else rng.uniform(-0.5, 1.0)
        is_crash = null + harmful <= r < null + harmful + crash
        edits.append(Edit(i, effect, f"try {topic}", f"CFG_{i} = {rng.randint(2, 99)}  # {topic}", crash=is_crash))
    ids = list(range(n))
    rng.shuffle(ids)
    for i in ids[:good]:
        edits[i].effect, edits[i].crash = rng.uniform(-5.0, -3.0), False
    for k in range(pairs):
        a, b = sorted(ids[good + 2 * k: good + 2 * k + 2])
        edits[a].effect = edits[b].effect = 0.5
        edits[a].crash = edits[b].crash = False
        edits[a].partner, edits[b].partner, edits[a].bonus = b, a, -6.0
    fix = ids[good + 2 * pairs]  # at least one crash hides a good idea
    edits[fix].crash, edits[fix].effect = True, -4.0
    return AgentTrack(name, what, edits)


AGENT = [
    agent_track("agent", "40 edits: ~55% null, ~25% harmful (+1..4 sigma), ~10% crash (fixable), 3 good "
                "(-3..-5 sigma), 1 good behind a crash, 2 pairs that help only combined; sigma 0.02", seed=15),
]


@dataclass
class ScriptedAgent:
    """Draws an edit not in the head; after a crash, proposes the same edit fixed. It repeats tried
    ideas as often as chance says, in other words each time (case, spacing, comment, prefix)."""

    track: AgentTrack
    rng: random.Random
    last_crash: int | None = None
    drafts: int = 0
    fixed: set[int] = field(default_factory=set)

    def propose(self, head: frozenset[int]) -> tuple[int, bool, str, str]:
        """(edit id, crashes, description, diff)."""
        self.drafts += 1
        if self.last_crash is not None and self.last_crash not in head:
            e, self.last_crash = self.track.edits[self.last_crash], None
            self.fixed.add(e.id)
            return e.id, False, f"fix the crash in: {e.text}", self._diff(e, fixed=True)
        free = [e for e in self.track.edits if e.id not in head]
        e = self.rng.choice(free)
        crashes = e.crash and e.id not in self.fixed
        return e.id, crashes, self._words(e.text), self._diff(e, fixed=not crashes)

    def _words(self, text: str) -> str:
        r = self.rng.random()
        return text.capitalize() + "." if r < 0.3 else ("retry: " + text if r < 0.5 else text.replace(" ", "  "))

    def _diff(self, e: Edit, fixed: bool) -> str:
        line = e.line if fixed else e.line.replace(" = ", " = undefined_name + ")
        pad = " " * self.rng.randint(0, 2)
        return (f"diff --git a/train.py b/train.py\n--- a/train.py\n+++ b/train.py\n@@ -{e.id + 3},0 +{e.id + 3},1 @@\n"
                f"+{line.replace(' = ', pad + ' = ' + pad)}\n")
