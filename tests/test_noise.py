"""The noise-aware keep rule: spec keys, decisions, sequential design, and the bench's numbers."""

from __future__ import annotations

import random

import pytest
from rich.console import Console

from overnight.core.spec import Spec, SpecError, load_spec
from overnight.judge.noise import NoisePolicy, efficacy_looks
from overnight.judge.policy import GreedyPolicy, make_policy

BASE = {"track": {"name": "q", "editable": ["a"]}, "run": {"command": "x"}, "metric": {"name": "loss"}}


def spec(direction: str = "minimize", **policy) -> Spec:
    return Spec.model_validate({**BASE, "metric": {"name": "loss", "direction": direction}, "policy": policy})


def run_candidate(policy, head: list[float], draw, lines_delta: int = 0):
    values: list[float] = []
    while True:
        values.append(draw())
        v = policy.decide(head, values, lines_delta=lines_delta)
        if v.action != "more":
            return v, values


def test_defaults_and_unknown_keys_rejected(quad_track):
    s = spec()
    assert s.policy.rule == "noise" and s.policy.alpha == 0.05 and s.policy.baseline_runs == 3
    assert isinstance(make_policy(s), NoisePolicy)
    assert isinstance(make_policy(spec(rule="greedy")), GreedyPolicy)
    track = quad_track(spec_extra='[policy]\nrule = "noise"\nalpah = 0.1\n')
    with pytest.raises(SpecError, match=r"\[policy\] alpah: unknown key"):
        load_spec(track)


def test_spec_keys_reach_the_policy():
    p = NoisePolicy(spec(alpha=0.01, min_effect=0.5, baseline_runs=4, max_runs=6, simplicity=False))
    assert (p.alpha, p.min_effect, p.baseline_runs, p.max_runs, p.simplicity) == (0.01, 0.5, 4, 6, False)
    assert sum(p.looks.values()) == pytest.approx(0.01)  # the spent alpha never exceeds alpha
    with pytest.raises(ValueError):
        spec(baseline_runs=1)  # the noise rule needs two runs to see any noise


@pytest.mark.parametrize("max_runs", [1, 2, 3, 5, 9])
def test_alpha_spending_sums_to_alpha(max_runs):
    looks = efficacy_looks(max_runs, 0.05)
    assert sum(looks.values()) == pytest.approx(0.05)
    assert max(looks) == max_runs


def test_clear_win_kept_with_stats_and_clear_loss_discarded_early():
    p = NoisePolicy(spec())
    head = [1.00, 1.02, 0.98]
    v, values = run_candidate(p, head, iter([0.50, 0.51, 0.49, 0.5, 0.5]).__next__)
    assert v.action == "keep" and len(values) == 3  # the first look (3 runs: the seed check can see jitter)
    for key in ("p_value", "delta", "ci_low", "ci_high", "n"):
        assert key in v.stats
    assert v.stats["ci_high"] < 0 < 0.5 and v.stats["p_value"] < 0.01  # delta is cand - head: negative
    v, values = run_candidate(p, head, iter([1.5, 1.5]).__next__)
    assert v.action == "discard" and len(values) == 1 and "futility" in v.reason


def test_maximize_direction():
    p = NoisePolicy(spec("maximize"))
    head = [1.00, 1.02, 0.98]
    assert run_candidate(p, head, iter([1.5, 1.51, 1.49]).__next__)[0].action == "keep"
    assert run_candidate(p, head, iter([0.5, 0.51, 0.49]).__next__)[0].action == "discard"


def test_lucky_seed_candidate_discarded():
    """A candidate that hard-codes a lucky seed gives the same value for every seed."""
    p = NoisePolicy(spec())
    v, values = run_candidate(p, [1.00, 1.02, 0.98], lambda: 0.9)
    assert v.action == "discard" and "OVERNIGHT_SEED" in v.reason and len(values) == 2


def test_simplicity_within_noise():
    """Inside the noise band (below min_effect) removing code wins and adding code loses."""
    rng = random.Random(3)
    head = [1 + rng.gauss(0, 0.002) for _ in range(3)]
    cand = [0.985 + rng.gauss(0, 0.002) for i in range(5)]  # better by 0.015, inside min_effect 0.02
    removes = run_candidate(NoisePolicy(spec(min_effect=0.02)), head, iter(cand).__next__, lines_delta=-3)[0]
    adds = run_candidate(NoisePolicy(spec(min_effect=0.02)), head, iter(cand).__next__, lines_delta=+3)[0]
    assert removes.action == "keep" and "removes code" in removes.reason
    assert adds.action == "discard"
    off = run_candidate(NoisePolicy(spec(min_effect=0.02, simplicity=False)), head, iter(cand).__next__,
                        lines_delta=-3)[0]
    assert off.action == "discard"


def test_deterministic_metric():
    p = NoisePolicy(spec())
    assert run_candidate(p, [1.0, 1.0, 1.0], lambda: 0.9)[0].action == "keep"
    assert run_candidate(NoisePolicy(spec()), [1.0, 1.0, 1.0], lambda: 1.0)[0].action == "discard"


def test_null_edits_rarely_kept_and_real_gains_found():
    """Peeking at every run must not inflate false keeps: simulate both populations."""
    rng = random.Random(11)
    p = NoisePolicy(spec())
    kept = {False: 0, True: 0}
    for i in range(400):
        real = i % 2 == 1
        head = [rng.gauss(0, 1) for _ in range(3)]
        v, _ = run_candidate(p, head, lambda real=real: rng.gauss(-2.0 if real else 0.0, 1))
        kept[real] += v.action == "keep"
    assert kept[False] / 200 <= 0.07  # alpha 0.05 plus sampling slack
    assert kept[True] / 200 >= 0.72


def test_the_noise_model_is_the_heads_alone_and_counts_each_series_once():
    p = NoisePolicy(spec())
    rng = random.Random(5)
    head = [1 + rng.gauss(0, 0.05) for _ in range(6)]
    p.observe_head((1, 0), head[:3])
    p.observe_head((1, 0), head)  # the same series grown: replaces, never adds
    sigma, df = p.noise_floor()
    assert df == 5
    for _ in range(50):  # rejected seed-ignoring candidates (identical runs) cannot shrink the floor
        v, _ = run_candidate(p, head[-3:], lambda: 0.8)
        assert v.action == "discard" and "OVERNIGHT_SEED" in v.reason
    assert p.noise_floor() == (sigma, df)
    p.decide(head[-3:], [0.99, 1.01, 1.0])  # the head passed in again is a suffix of its series: not recounted
    assert p.noise_floor()[1] == 5


def test_plain_lists_count_each_head_once():
    """The hub's way: decide(head, values) without a head tracker; each distinct head enters once."""
    p = NoisePolicy(spec())
    head = [1.00, 1.02, 0.98]
    p.decide(head, [1.0])
    p.decide(head, [1.0, 1.01])
    assert p.noise_floor()[1] == 2
    p.decide([0.9, 0.95, 0.85], [1.0])
    assert p.noise_floor()[1] == 4


def test_a_noisier_candidate_is_judged_with_its_own_variance():
    p = NoisePolicy(spec())
    p.observe_head("h", [1 + 0.01 * x for x in (0, 1, -1, 2, -2, 1, -1, 0, 1, -1, 0, 2)])
    quiet = p.decide([1.0, 1.01, 0.99], [0.98, 0.99, 0.985])
    noisy = p.decide([1.0, 1.01, 0.99], [0.93, 1.04, 0.985])  # the same mean, 6x the spread
    assert noisy.stats["test_df"] < quiet.stats["test_df"] and noisy.stats["p_value"] > quiet.stats["p_value"]


def test_a_pinned_seed_with_jitter_is_not_kept_on_its_few_runs():
    p = NoisePolicy(spec())
    rng = random.Random(2)
    p.observe_head("h", [1 + rng.gauss(0, 0.05) for _ in range(20)])
    head = [1.0, 1.05, 0.95]
    pinned = iter([0.85 + rng.gauss(0, 0.3 * 0.05) for _ in range(10)])  # 3 sd lucky, 0.3 sd jitter
    v, values = run_candidate(p, head, pinned.__next__)
    # a win on runs that vary too little gets more seeds (twice max_runs in all), then is discarded
    assert v.action == "discard" and "OVERNIGHT_SEED" in v.reason and 5 < len(values) <= 10
    honest = iter([0.85 + rng.gauss(0, 0.05) for _ in range(5)])
    assert run_candidate(p, head, honest.__next__)[0].action == "keep"


def test_runs_that_ignore_their_seed_count_as_one_draw():
    from overnight.judge.noise import mean_var

    rng = random.Random(3)
    honest = [rng.gauss(0, 1) for _ in range(12)]
    assert mean_var(honest, 1.0) == pytest.approx(1 / 12)  # varies like the head: sigma^2 / n
    pinned = [0.3 * rng.gauss(0, 1) for _ in range(12)]
    assert mean_var(pinned, 1.0) > 0.5  # twelve runs of one pinned draw are about one draw
    p = NoisePolicy(spec())
    p.observe_head("h", [rng.gauss(0, 1) for _ in range(30)])
    # A pinned head (a kept seed-ignorer) cannot make an ordinary draw look like a win.
    stuck = [2.0 + 0.05 * x for x in (0, 1, -1, 1, -1, 0, 1, -1, 0, 1, -1, 0)]
    v = p.decide(stuck, [0.8, -0.4, 1.1, 0.1, 0.6])
    assert v.action == "discard", v.reason


def test_an_honest_win_whose_runs_happen_to_vary_little_gets_more_seeds_and_is_kept():
    """Seen on the categorical bench track: a true 10 sd gain whose 5 runs varied 0.25x the head's by chance
    was discarded as a seed-ignorer (about 1.5 % of honest wins). More seeds tell the two apart."""
    p = NoisePolicy(spec())
    rng = random.Random(7)
    p.observe_head("h", [1 + rng.gauss(0, 0.05) for _ in range(20)])
    head = [1 + rng.gauss(0, 0.05) for _ in range(12)]
    runs = iter([0.5 + 0.05 * z for z in (0.1, -0.1, 0.12, -0.12, 0.0)]  # sd 0.1 of sigma: looks pinned
                + [0.5 + rng.gauss(0, 0.05) for _ in range(5)])  # ... but its seeds do matter
    v, values = run_candidate(p, head, runs.__next__)
    assert v.action == "keep" and len(values) == 10, v.reason


def keep_rate(rng: random.Random, n: int, runs) -> float:
    """How often candidates drawn by `runs(rng)` (a list of values) are kept: each against its own head, sd 0.05,
    sigma known from 30 head runs, 12 runs beside it (what the loop's head tracker gives the judge)."""
    from overnight.judge.noise import SEED_RUNS

    kept = 0
    for _ in range(n):
        p = NoisePolicy(spec())
        p.observe_head("h", [1 + rng.gauss(0, 0.05) for _ in range(30)])
        head = [1 + rng.gauss(0, 0.05) for _ in range(12)]
        v, values = run_candidate(p, head, iter(runs(rng)).__next__)
        assert len(values) <= SEED_RUNS * p.max_runs
        kept += v.action == "keep"
    return kept / n


def test_a_lucky_pinned_draw_with_jitter_passes_the_seed_checks_less_often_than_before():
    """4 sd lucky, pinned, 0.3 sd of seed-following jitter, significant at every look: the worst case. The
    checks at 0.15 with one more-seeds look at twice max_runs keep it 30 % of the time (at 0.3 with no more
    seeds, before: 43 %), while an honest win is lost less often (the test below)."""
    assert keep_rate(random.Random(3), 300, lambda r: [0.8 + r.gauss(0, 0.3 * 0.05) for _ in range(10)]) <= 0.36


def test_honest_3_sd_wins_are_rarely_lost_to_the_seed_checks():
    """A true 3 sd gain, seeds followed: kept 98.7 % of the time in 4000 draws (97.8 % with the previous checks)."""
    assert keep_rate(random.Random(11), 1000, lambda r: [0.85 + r.gauss(0, 0.05) for _ in range(10)]) >= 0.98


def test_the_more_seeds_stage_judges_its_fresh_runs_not_the_selected_ones():
    """An attacker's find: pinned 4 sd lucky (0.3 sd jitter) for 5 runs, then honest runs with no gain. Testing the
    gain on runs 1-5 and the spread on all 10 (the jump between the halves inflates it) kept it 88 % of the time;
    25 % in 2000 draws now: what the first stage alone lets through."""
    assert keep_rate(random.Random(5), 300, lambda r: [0.8 + r.gauss(0, 0.015) for _ in range(5)]
                     + [1 + r.gauss(0, 0.05) for _ in range(5)]) <= 0.3


def test_a_candidate_near_zero_cannot_loosen_the_seed_check():
    p = NoisePolicy(spec())
    rng = random.Random(5)
    p.observe_head("h", [0.1 + rng.gauss(0, 0.05) for _ in range(20)])
    head = [0.1 + rng.gauss(0, 0.05) for _ in range(12)]
    near_zero = iter([0.01 + rng.gauss(0, 0.15 * 0.05) for _ in range(5)])  # pinned, 0.15 sd jitter, near 0
    v, _ = run_candidate(p, head, near_zero.__next__)
    assert v.action == "discard", v.reason


def test_seed_only_changes_are_screened_and_the_baseline_told():
    from overnight.judge.diff import only_changes_seed

    assert only_changes_seed("--- a/train.py\n+++ b/train.py\n-SEED = 42\n+SEED = 137\n")
    assert only_changes_seed("-torch.manual_seed(42)\n+torch.manual_seed(7)  # luckier\n")
    assert not only_changes_seed("-SEED = 42\n+SEED = 137\n-LR = 0.1\n+LR = 0.2\n")
    assert not only_changes_seed("")
    p = NoisePolicy(spec())
    assert "random seed" in p.screen("-SEED = 42\n+SEED = 137\n") and p.screen("-LR = 1\n+LR = 2\n") is None
    assert "OVERNIGHT_SEED" in p.baseline_note([1.5, 1.5 + 1e-12, 1.5])
    assert p.baseline_note([1.5, 1.52, 1.49]) is None


def test_replication_keeps_what_reproduces_and_reverts_the_rest():
    p = NoisePolicy(spec(night_alpha=0.05))
    assert p.replication_alpha == pytest.approx(0.005) and p.false_keep_bound() == pytest.approx(0.00025)
    rng = random.Random(4)
    p.observe_head("h", [rng.gauss(0, 1) for _ in range(30)])
    old = [rng.gauss(0, 1) for _ in range(8)]
    assert p.replicate(old, [rng.gauss(0, 1) for _ in range(7)]).action == "more"
    assert p.replicate(old, [rng.gauss(-2.5, 1) for _ in range(8)]).action == "keep"
    null = p.replicate(old, [rng.gauss(0, 1) for _ in range(8)])
    assert null.action == "discard" and "reverted" in null.reason
    pinned = p.replicate(old, [-2.5 + rng.gauss(0, 0.3) for _ in range(8)])
    assert pinned.action == "discard" and "reverted" in pinned.reason  # one draw, however many runs
    # Half the head's spread: the old check (chi-square at level 0.15) let such a seed-ignorer through.
    # (unsure at 8 pairs, it runs more fresh pairs before deciding).
    half_spread = [-2.5 + 0.5 * x for x in (1.0, -1.0, 0.6, -0.6, 1.4, -1.4, 0.2, -0.2)]
    assert p.replicate(old, half_spread).action == "more"
    old16 = old + [rng.gauss(0, 1) for _ in range(8)]
    half = p.replicate(old16, half_spread * 2)
    assert half.action == "discard" and "OVERNIGHT_SEED" in half.reason
    honest = p.replicate(old16, [rng.gauss(-2.5, 1) for _ in range(16)])
    assert honest.action == "keep", honest.reason


def test_bench_noise_prints_every_regime_and_rule():
    from overnight.bench.noise import REGIMES, main

    console = Console(record=True, width=220)
    chosen = [r for r in REGIMES if r.name in ("iid gaussian", "gain 2 sd (10%)")]
    res = main(3, 1, console, chosen)
    text = console.export_text()
    for word in ("greedy", "floor 2sd", "overnight+replication", "false keeps / null", "power", "target"):
        assert word in text
    iid = res["iid gaussian"]
    assert iid["greedy"].null_kept > iid["overnight"].null_kept  # same regime, same night count
    assert iid["overnight"].nulls == 300 and res["gain 2 sd (10%)"]["overnight"].reals > 0
