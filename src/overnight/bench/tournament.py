"""`overnight bench tournament`: simulated contestants of known quality, judged by the real judge.

Workload (simulated, in-process, no subprocess): a contestant's night is `budget` proposals
whose true effects are drawn from its skill (a share of real gains of `gain` noise sd, the rest
null or harmful), each measured with Gaussian noise and decided by overnight's NoisePolicy with
fresh head runs after every keep, as the loop does. The verdict then re-measures every final head
for `rounds` seed-blocked rounds (a shared per-round effect of 1 sd plays drift and the seed) and
ranks them with `overnight.tournament.verdict`. Two parts are printed side by side:
- the verdict alone, for two heads whose true gap is 0, 0.5, 1 and 2 sd: how often the better one
  is declared the winner, how often any difference is declared (wrong when the gap is 0);
- whole tournaments: a skilled against an unskilled contestant, and two equally skilled ones:
  how often the head that is truly better wins, how often a wrong ordering is declared, and the
  re-measurement's share of all runs; two null contestants end on truly equal heads, so any
  winner declared there is a false one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from rich.console import Console
from rich.table import Table

from overnight.core.spec import Spec
from overnight.judge.policy import make_policy
from overnight.tournament import verdict as V

SPEC = {"track": {"name": "sim", "editable": ["x.py"]}, "run": {"command": "true"},
        "metric": {"name": "loss", "direction": "minimize"}}


@dataclass
class Skill:
    name: str
    p_gain: float  # share of proposals with a real gain
    gain: float = 1.0  # in noise sd
    p_harm: float = 0.3  # share that make things worse by 1 sd


def night(skill: Skill, budget: int, rng: random.Random, sigma: float = 1.0) -> tuple[float, int]:
    """(true final head, runs spent) of one contestant's simulated night under the real judge."""
    policy = make_policy(Spec.model_validate(SPEC))
    runs = policy.baseline_runs
    true_head = 0.0
    head = [true_head + rng.gauss(0, sigma) for _ in range(policy.baseline_runs)]
    for _ in range(budget):
        u = rng.random()
        effect = -skill.gain if u < skill.p_gain else (1.0 if u < skill.p_gain + skill.p_harm else 0.0)
        cand_true = true_head + effect * sigma
        values: list[float] = []
        while True:
            values.append(cand_true + rng.gauss(0, sigma))
            runs += 1
            v = policy.decide(head, values)
            if v.action != "more":
                break
        if v.action == "keep":
            true_head = cand_true
            head = [true_head + rng.gauss(0, sigma) for _ in range(policy.baseline_runs)]  # fresh head runs
            runs += policy.baseline_runs
    return true_head, runs


def remeasure(heads: dict[str, float], rounds: int, rng: random.Random, sigma: float = 1.0) -> V.Verdict:
    shared = [rng.gauss(0, sigma) for _ in range(rounds)]  # drift and the seed's effect, common to a round
    values = {c: [h + shared[r] + rng.gauss(0, sigma) for r in range(rounds)] for c, h in heads.items()}
    return V.decide(values, minimize=True, alpha=0.05)


def main(trials: int, budget: int, rounds: int, seed: int, console: Console) -> None:
    rng = random.Random(seed)
    console.print(f"workload: simulated (Gaussian noise sd 1, shared round effect sd 1), {trials} trials a row, "
                  f"{rounds} re-measurement rounds, alpha 0.05")
    t = Table("true gap (sd)", "better one declared winner", "any difference declared", title="the verdict alone")
    for gap in (0.0, 0.5, 1.0, 2.0):
        wins = diffs = 0
        for _ in range(trials):
            v = remeasure({"a": -gap, "b": 0.0}, rounds, rng)
            wins += v.winner == "a"
            diffs += any(p.significant for p in v.pairs)
        t.add_row(f"{gap:g}", "-" if gap == 0 else f"{wins / trials:.1%}", f"{diffs / trials:.1%}")
    console.print(t)
    t = Table("contestants", "truly better head wins", "wrong ordering declared", "no winner",
              "re-measurement share of runs", title=f"whole tournaments, {budget} proposals each")
    pairs = [(Skill("skilled", 0.15), Skill("unskilled", 0.02)), (Skill("equal-a", 0.1), Skill("equal-b", 0.1)),
             (Skill("null-a", 0.0, p_harm=0.0), Skill("null-b", 0.0, p_harm=0.0))]  # last: truly equal heads
    for a, b in pairs:
        right = wrong = none = contest_runs = 0
        for _ in range(trials):
            ha, ra = night(a, budget, rng)
            hb, rb = night(b, budget, rng)
            contest_runs += ra + rb
            v = remeasure({a.name: ha, b.name: hb}, rounds, rng)
            truly = a.name if ha < hb else b.name if hb < ha else None
            if v.winner is None:
                none += 1
            elif v.winner == truly:
                right += 1
            else:
                wrong += 1  # declared better while not truly better (including equal heads)
        share = 2 * rounds * trials / (contest_runs + 2 * rounds * trials)
        t.add_row(f"{a.name} vs {b.name}", f"{right / trials:.1%}", f"{wrong / trials:.1%}", f"{none / trials:.1%}",
                  f"{share:.1%}")
    console.print(t)
