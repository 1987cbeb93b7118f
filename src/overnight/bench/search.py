"""`overnight bench search`: whole simulated nights with a known truth, methods side by side.

Every method gets the same workload and the same compute (runs): overnight's default (the real
OptunaProposer or the scripted agent with duplicate rejection, judged by the real NoisePolicy)
runs `experiments` experiments and its run count is the budget of every baseline on that seed.
Runs are in-process draws truth + N(0, sigma): no subprocess, no git. What is printed is the
TRUE metric of what each method ends with (its head, or its best observed point), averaged
over seeds, against the track's optimum. Tracks: bench/search_tracks.py.
"""

from __future__ import annotations

import random
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from statistics import fmean, median
from typing import Any

import optuna
from rich.console import Console
from rich.table import Table

from overnight.bench.search_agent import agent_best_of_n, agent_night, agent_random, overnight_agent_night
from overnight.bench.search_sim import Night, Noise, SimLoop
from overnight.bench.search_tracks import AGENT, TUNING, AgentTrack, Tuning
from overnight.core.status import Status
from overnight.judge.policy import make_policy
from overnight.proposers.base import ProposalContext
from overnight.proposers.constants import distribution, literal, read_constant, write_constant
from overnight.proposers.optuna import OptunaProposer
from overnight.storage.ledger import Experiment
from overnight.track import Track

METHODS = ["overnight", "greedy-chain", "random", "best-of-n", "optuna-tpe"]


# --- tuning tracks --------------------------------------------------------------------------------
def track_dir(t: Tuning, root: Path) -> Track:
    d = root / t.name
    d.mkdir(parents=True, exist_ok=True)
    (d / "params.py").write_text("".join(f"{k} = {literal(v)}\n" for k, v in t.start.items()))
    toml = [f'[track]\nname = "{t.name}"\neditable = ["params.py"]\n[run]\ncommand = "true"\n'
            '[metric]\nname = "loss"\ndirection = "minimize"\n']
    for s in t.search:
        toml.append('[[search]]\nfile = "params.py"\n' + "".join(
            f"{k} = {_toml(v)}\n" for k, v in s.items()))
    (d / "overnight.toml").write_text("".join(toml))
    return Track(d)


def _toml(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml(x) for x in v) + "]"
    return f'"{v}"' if isinstance(v, str) else repr(v)


def overnight_tuning(t: Tuning, track: Track, seed: int, experiments: int, sampler: str, walk: bool = True) -> Night:
    rng = random.Random(seed)
    noise = Noise(t.f, t.sigma, rng)
    workdir = track.dir
    tag = f"bench-{seed}-{sampler}-{walk}"
    (workdir / "params.py").write_text("".join(f"{k} = {literal(v)}\n" for k, v in t.start.items()))
    prop = OptunaProposer(track, tag, sampler=sampler, seed=seed, storage=optuna.storages.InMemoryStorage(), walk=walk)
    head = dict(t.start)
    loop = SimLoop(make_policy(track.spec), noise, head)
    prop.baseline(Experiment(status=Status.KEEP, metric=loop.metric, meta={"baseline": True}))
    solved = 1 if t.f(head) <= t.optimum + 1e-12 else None
    for k in range(1, experiments + 1):
        for name, value in head.items():
            write_constant(workdir / "params.py", name, value)
        ctx = ProposalContext(track=track, tag=tag, workdir=workdir, parent_commit="bench", head_metric=loop.metric)
        p = prop.propose(ctx)
        cand = {s["name"]: read_constant(workdir / "params.py", s["name"]) for s in t.search}
        if all(literal(cand[n]) == literal(head[n]) for n in cand):
            status, values, stats = Status.NO_CHANGE, [], {}
        else:
            status, values, stats = loop.judged(lambda c=cand: noise(c))  # type: ignore[misc]
        head_metric = loop.metric
        if status == Status.KEEP:
            head = cand
            loop.keep(cand, values)
            if solved is None and t.f(head) <= t.optimum + 1e-12:
                solved = 1 + k
        prop.observe(Experiment(status=status, metric=fmean(values) if values else None,
                                head_metric=head_metric, meta=p.meta, stats=stats))
    return Night(t.f(head), noise.runs, experiments, solved)


def one_move(t: Tuning, x: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """What a person or a simple agent does next: change one constant by a random amount."""
    s = rng.choice(t.search)
    n, c = s["name"], x[s["name"]]
    if "choices" in s:
        v: Any = rng.choice([o for o in s["choices"] if o != c])
    elif s.get("log"):
        v = c * 2 ** rng.uniform(-2, 2)
    else:
        v = c + rng.uniform(-1, 1) * (s["high"] - s["low"]) / 4
    if "choices" not in s:
        v = min(max(v, s["low"]), s["high"])
        v = int(round(v)) if s.get("int") else float(v)
    return {**x, n: v}


def greedy_tuning(t: Tuning, track: Track, seed: int, budget: int) -> Night:
    rng = random.Random(seed + 1)
    noise = Noise(t.f, t.sigma, rng)
    policy = make_policy(track.spec.model_copy(update={"policy": track.spec.policy.model_copy(
        update={"rule": "greedy"})}))
    head = dict(t.start)
    loop = SimLoop(policy, noise, head)
    n = 0
    while noise.runs < budget:
        cand = one_move(t, head, rng)
        n += 1
        status, values, _ = loop.judged(lambda c=cand: noise(c))  # type: ignore[misc]
        if status == Status.KEEP:
            head = cand
            loop.keep(cand, values)
    return Night(t.f(head), noise.runs, n)


def best_observed(f: Callable[[Any], float], noise: Noise, points: list[Any]) -> Night:
    seen = [(noise(x), x) for x in points]
    return Night(f(min(seen, key=lambda s: s[0])[1]), noise.runs, len(points))


def random_tuning(t: Tuning, track: Track, seed: int, budget: int) -> Night:
    rng = random.Random(seed + 2)
    sampler = optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(sampler=sampler)
    dists = {p.name: distribution(p) for p in track.spec.search}
    points = [dict(t.start)] + [study.ask(dists).params for _ in range(budget - 1)]
    return best_observed(t.f, Noise(t.f, t.sigma, rng), points)


def best_of_n_tuning(t: Tuning, track: Track, seed: int, budget: int) -> Night:
    rng = random.Random(seed + 3)
    points = [dict(t.start)] + [one_move(t, t.start, rng) for _ in range(budget - 1)]
    return best_observed(t.f, Noise(t.f, t.sigma, rng), points)


def tpe_tuning(t: Tuning, track: Track, seed: int, budget: int) -> Night:
    rng = random.Random(seed + 4)
    noise = Noise(t.f, t.sigma, rng)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=seed))
    dists = {p.name: distribution(p) for p in track.spec.search}
    study.enqueue_trial(dict(t.start))
    for _ in range(budget):
        trial = study.ask(dists)
        study.tell(trial, noise(trial.params))
    return Night(t.f(study.best_trial.params), noise.runs, budget)


# --- the table ------------------------------------------------------------------------------------
def _row(table: Table, method: str, nights: list[Night], optimum: float, sigma: float, note: str = "") -> None:
    truth = fmean(n.truth for n in nights)
    gap = fmean(n.truth - optimum for n in nights)
    table.add_row(method, f"{truth:.4f}", f"{gap:.4f}", f"{gap / sigma:.2f}", f"{fmean(n.runs for n in nights):.0f}",
                  f"{fmean(n.experiments for n in nights):.0f}", note)


def _table(title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col in ("method", "true final", "gap", "gap/σ", "runs", "experiments", "note"):
        table.add_column(col, justify="left" if col in ("method", "note") else "right")
    return table


def run_tuning(t: Tuning, seeds: range, experiments: int, sampler: str, methods: list[str], root: Path,
               walk: bool = True) -> tuple[Table, dict[str, list[Night]]]:
    track = track_dir(t, root)
    res: dict[str, list[Night]] = {m: [] for m in methods}
    for seed in seeds:
        ours = overnight_tuning(t, track, seed, experiments, sampler, walk)
        res["overnight"].append(ours)
        for m, fn in (("greedy-chain", greedy_tuning), ("random", random_tuning),
                      ("best-of-n", best_of_n_tuning), ("optuna-tpe", tpe_tuning)):
            if m in res:
                res[m].append(fn(t, track, seed, ours.runs))
    table = _table(f"{t.name}: {t.what}; optimum {t.optimum:g}")
    for m, nights in res.items():
        note = ""
        if m == "overnight":
            note = f"{'walk + ' if walk else ''}{sampler}"
            if t.categorical:
                solved = [n.solved_at for n in nights]
                done = sorted(s for s in solved if s is not None)
                within = sum(1 for s in done if s <= t.walk_bound)
                note += (f"; solved {len(done)}/{len(solved)}, {within} within {t.walk_bound}"
                         + (f", median at {median(done):g}" if done else ""))
        _row(table, m, nights, t.optimum, t.sigma, note)
    return table, res


def run_agent(a: AgentTrack, seeds: range, experiments: int, methods: list[str]
              ) -> tuple[Table, dict[str, list[Night]]]:
    res: dict[str, list[Night]] = {m: [] for m in methods if m != "optuna-tpe"}
    for seed in seeds:
        ours = overnight_agent_night(a, seed, experiments)
        res["overnight"].append(ours)
        if "greedy-chain" in res:
            res["greedy-chain"].append(agent_night(a, seed, "greedy", ours.runs, experiments, dedupe=False))
        if "best-of-n" in res:
            res["best-of-n"].append(agent_best_of_n(a, seed, ours.runs))
        if "random" in res:
            res["random"].append(agent_random(a, seed, ours.runs))
    table = _table(f"{a.name}: {a.what}; optimum {a.optimum:.4g}")
    for m, nights in res.items():
        note = found(a, nights)
        if m == "overnight":
            ops = {o: fmean(n.operators.get(o, 0) for n in nights) for o in sorted({o for n in nights for o in n.operators})}
            note += (f"; {fmean(n.rejected for n in nights):.1f} repeats sent back; per night "
                     + ", ".join(f"{o} {v:.1f}" for o, v in ops.items()))
        _row(table, m, nights, a.optimum, a.sigma, note)
    table.add_row("optuna-tpe", "—", "—", "—", "—", "—", "n/a: no constants")
    if "greedy-chain" in res:  # the other unit of cost: the agent's proposals, not the runs
        g = [agent_night(a, s, "greedy", None, experiments, dedupe=False) for s in seeds]
        _row(table, "greedy, equal proposals", g, a.optimum, a.sigma,
             found(a, g) + f"; greedy chain with overnight's {experiments} proposals (its own run count)")
    # where the difference comes from: the operators without the noise rule, the noise rule without them
    _row(table, "ablation: chain only", [overnight_agent_night(a, s, experiments, operators=[])
                                         for s in seeds], a.optimum, a.sigma,
         "overnight's agent and noise rule, improve only (its own run count)")
    if "overnight" in res:
        _row(table, "ablation: greedy rule", [overnight_agent_night(a, s, experiments, "greedy", o.runs)
                                              for s, o in zip(seeds, res["overnight"], strict=True)],
         a.optimum, a.sigma,
             "overnight's operators under the greedy keep rule, equal compute")
    return table, res


def found(a: AgentTrack, nights: list[Night]) -> str:
    """Per night, how many of the track's good single edits, edits behind a crash and pairs the method ends with."""
    singles = [e.id for e in a.edits if e.partner is None and e.effect <= -1.0 and not e.crash]
    hidden = [e.id for e in a.edits if e.crash and e.effect <= -1.0]
    pairs = [(e.id, e.partner) for e in a.edits if e.partner is not None and e.id < e.partner]
    got = [(sum(i in n.point for i in singles), sum(i in n.point for i in hidden),
            sum(x in n.point and y in n.point for x, y in pairs)) for n in nights if n.point is not None]
    if not got:
        return ""
    s, h, p = (fmean(g[k] for g in got) for k in range(3))
    return f"found: good {s:.1f}/{len(singles)}, behind a crash {h:.1f}/{len(hidden)}, pairs {p:.1f}/{len(pairs)}"


def main(seeds: int, experiments: int, sampler: str, tracks: list[str] | None, console: Console,
         walk: bool = True, first_seed: int = 0, held_out: bool = False) -> dict[str, Any]:
    t0 = time.monotonic()
    from overnight.bench.search_heldout import HELD_OUT

    chosen = [t for t in (HELD_OUT if held_out else TUNING) if tracks is None or t.name in tracks]
    agents = [a for a in AGENT if not held_out and (tracks is None or a.name in tracks)]
    nights = range(first_seed, first_seed + seeds)
    console.print(f"bench search: {seeds} seeds per track ({nights.start}-{nights.stop - 1}), overnight runs {experiments} experiments after its "
                  "baseline; every other method gets the same number of runs (equal compute) on each seed.\n"
                  "true final = the noiseless metric of what the method ends with (lower is better); gap = true "
                  "final - optimum, averaged over seeds.", markup=False)
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="overnight-bench-search-") as tmp:
        for t in chosen:
            table, res = run_tuning(t, nights, experiments, sampler, list(METHODS), Path(tmp), walk)
            console.print(table)
            out[t.name] = res
    for a in agents:
        table, res = run_agent(a, nights, experiments, list(METHODS))
        console.print(table)
        out[a.name] = res
    console.print(f"wall time {time.monotonic() - t0:.1f} s", markup=False)
    return out
