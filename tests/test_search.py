"""`overnight bench search`: its ground truth is true, its compute is equal, and the CLI prints it."""

from __future__ import annotations

import io
import itertools
import random

from rich.console import Console
from typer.testing import CliRunner

from overnight.bench import search
from overnight.bench.search_tracks import AGENT, TUNING, ScriptedAgent
from overnight.cli import app


def test_the_categorical_optima_are_the_true_minima():
    for t in (t for t in TUNING if t.categorical):
        names = [s["name"] for s in t.search]
        best = min(t.f(dict(zip(names, combo, strict=True)))
                   for combo in itertools.product(*(s["choices"] for s in t.search)))
        assert abs(best - t.optimum) < 1e-12, t.name
        assert t.f(t.start) > t.optimum  # there is something to find


def test_no_point_beats_a_continuous_optimum():
    rng = random.Random(0)
    for t in (t for t in TUNING if not t.categorical):
        for _ in range(2000):
            x = {}
            for s in t.search:
                if "choices" in s:
                    x[s["name"]] = rng.choice(s["choices"])
                    continue
                v = (s["low"] * (s["high"] / s["low"]) ** rng.random()) if s.get("log") else rng.uniform(s["low"], s["high"])
                x[s["name"]] = int(round(v)) if s.get("int") else v
            assert t.f(x) >= t.optimum - 1e-12, (t.name, x)


def test_the_agent_optimum_is_reachable_and_nothing_beats_it():
    a = AGENT[0]
    helpful = [e.id for e in a.edits if e.effect < 0 or e.partner is not None]
    best = min(a.truth(frozenset(c)) for k in range(len(helpful) + 1) for c in itertools.combinations(helpful, k))
    assert abs(best - a.optimum) < 1e-12
    assert any(e.crash and e.effect < 0 for e in a.edits)  # a good idea hides behind a crash
    assert any(e.partner is not None for e in a.edits)


def test_the_scripted_agent_fixes_the_crash_it_just_caused():
    a = AGENT[0]
    agent = ScriptedAgent(a, random.Random(3))
    for _ in range(200):
        eid, crashes, desc, diff = agent.propose(frozenset())
        if crashes:
            agent.last_crash = eid
            fixed, again, fdesc, fdiff = agent.propose(frozenset())
            assert fixed == eid and not again and fdesc.startswith("fix the crash")
            assert "undefined_name" in diff and "undefined_name" not in fdiff
            return
    raise AssertionError("no crash in 200 drafts")


def test_every_method_gets_the_same_compute_and_ends_no_better_than_the_truth_allows():
    out = search.main(seeds=2, experiments=8, sampler="tpe", tracks=["categorical", "agent"],
                      console=Console(width=200, file=io.StringIO()))
    for name, res in out.items():
        optimum = next(t.optimum for t in [*TUNING, *AGENT] if t.name == name)
        ours = res["overnight"]
        assert all(n.experiments == 8 for n in ours)
        for method, nights in res.items():
            assert len(nights) == 2
            for n, mine in zip(nights, ours, strict=True):
                assert n.runs == mine.runs, (name, method)  # equal compute, seed by seed
                assert n.truth >= optimum - 1e-12, (name, method)


def test_the_cli_prints_every_method_against_the_optimum():
    res = CliRunner().invoke(app, ["bench", "search", "--seeds", "1", "--experiments", "5", "--track", "deceptive"],
                             env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    for word in ("deceptive", "optimum 1", "overnight", "greedy-chain", "random", "best-of-n", "optuna-tpe",
                 "true final", "gap/σ", "runs"):
        assert word in res.output, word
    assert "bowl:" not in res.output and "agent:" not in res.output  # only the track asked for


def test_the_held_out_tracks_run_on_their_own_and_their_optima_are_exact():
    from overnight.bench.search_heldout import HELD_OUT

    res = CliRunner().invoke(app, ["bench", "search", "--held-out", "--seeds", "1", "--experiments", "3",
                                   "--track", "atbound"], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    assert "atbound:" in res.output and "bowl:" not in res.output and "agent:" not in res.output
    for t in HELD_OUT:  # the optimum is a lower bound of the truth, reached inside the box
        assert t.f(t.start) > t.optimum
    ints = next(t for t in HELD_OUT if t.name == "intheavy")
    assert ints.f({"LAYERS": 8, "HEADS": 4, "WIDTH": 512}) == ints.optimum


def test_a_bad_track_or_sampler_is_one_clear_line():
    res = CliRunner().invoke(app, ["bench", "search", "--track", "nope[x]"])
    assert res.exit_code == 2 and "--track 'nope[x]': no such track; the tracks are agent, bowl" in res.output
    res = CliRunner().invoke(app, ["bench", "search", "--sampler", "annealing"])
    assert res.exit_code == 2 and "--sampler: unknown sampler 'annealing'" in res.output


def test_the_simulated_agent_drives_the_real_operator_policy(monkeypatch):
    """Every proposal of overnight's simulated night asks `proposers.operators.choose`; crashes are fixed by
    debug (not by the agent's memory), near-misses are combined, and a debugged crash can reach the head."""
    from overnight.bench import search_agent
    from overnight.proposers import operators

    asked: list[str] = []

    def spy(nodes, skip=(), allowed=None):
        op, picked = operators.choose(nodes, skip, allowed)
        asked.append(op.value)
        if op == operators.Operator.DEBUG:
            assert picked[0].status in ("crash",)
        return op, picked

    monkeypatch.setattr(search_agent, "choose", spy)
    a = AGENT[0]
    hidden = next(e.id for e in a.edits if e.crash and e.effect < -3)  # the good idea behind a crash
    nights = []
    for seed in range(6):
        heads: list[frozenset[int]] = []
        monkeypatch.setattr(a, "truth", lambda h, f=type(a).truth, heads=heads: (heads.append(h), f(a, h))[1])
        nights.append((search_agent.overnight_agent_night(a, seed, 30), heads))
    assert len(asked) == 6 * 30 and {"debug", "combine", "refine", "improve"} <= set(asked)
    assert all(sum(n.operators.values()) == 30 for n, _ in nights)
    assert any(hidden in heads[-1] for _, heads in nights)  # found through debug: the agent never fixes on its own


def test_the_agent_rows_count_what_a_night_ends_with():
    # The "found" note reads the edits a method ends with: the optimum's set holds every good single,
    # the good idea behind a crash and both pairs; half a pair counts as no pair.
    from overnight.bench.search_sim import Night

    a = AGENT[0]
    best = frozenset(e.id for e in a.edits if e.effect < 0 or e.partner is not None)
    assert a.truth(best) <= a.optimum + 1e-12
    half = frozenset(e.id for e in a.edits if e.partner is not None and e.id < e.partner)
    note = search.found(a, [Night(a.truth(best), 0, 0, point=best), Night(a.truth(half), 0, 0, point=half)])
    assert note == "found: good 1.5/3, behind a crash 0.5/1, pairs 1.0/2", note
