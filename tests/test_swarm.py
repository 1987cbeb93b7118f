"""The swarm simulation over the real hub service, keep rule and verifier plan (small and fast)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import update

from overnight.bench.noise import improved
from overnight.bench.swarm import Swarm, SwarmConfig, simulate
from overnight.hub import judging, reputation
from overnight.hub.models import Account


def test_small_swarm_rejects_lies_and_accepts_honest_work() -> None:
    r, _ = simulate(SwarmConfig(contributors=20, liars=0.1, verifiers=2, ticks=40, lie_every=4, seed=1))
    assert r.lies_submitted > 0 and r.lies_verified > 0
    assert r.lies_null_in_chain == 0 and r.lies_rejected >= r.lies_verified - r.lies_in_chain
    assert r.honest_accepted > 0 and r.final_loss < r.start_loss
    assert 0 < r.verifier < r.contributed


def _verify(sim: Swarm) -> tuple[dict, int]:
    """Drive one verifier slot through the next queued claim; (the hub's answer, candidate re-runs)."""
    slot, answers = sim.verifiers[0], []
    report = sim.hub.report

    def spy(caller, sub_id, body):
        answers.append(report(caller, sub_id, body))
        return answers[-1]

    sim.hub.report = spy
    try:
        while not answers:
            assert slot.step()
    finally:
        sim.hub.report = report
    return answers[0], len(slot.values)


def test_trusted_contributors_cost_fewer_reruns_and_one_lie_resets_trust(tmp_path: Path) -> None:
    sim = Swarm(SwarmConfig(contributors=2, liars=0.0, verifiers=1, ticks=0, seed=3), tmp_path)
    old, new = sim.agents
    with sim.hub.db.session() as s, s.begin():
        s.execute(update(Account).where(Account.id == old.caller.id).values(streak=reputation.TRUSTED_STREAK))
    trusted_runs, new_runs = [], []
    for i in range(6):  # the same honest +2 sigma improvement, from each kind of contributor in turn
        head = sim.head()
        better = improved(sim.params[head], sim.optimum, 2 * sim.sigma)
        better["WEIGHT_DECAY"] *= 1 + 1e-9 * (i + 1)  # a distinct patch each time
        who = old if i % 2 == 0 else new
        base = sim.true_loss(sim.params[head])
        sim.submit(who, head, better, "", base - 2 * sim.sigma, base, [base - 2 * sim.sigma] * 3, liar=False)
        res, runs = _verify(sim)
        (trusted_runs if who is old else new_runs).append(runs)
        if who is new:
            with sim.hub.db.session() as s, s.begin():  # keep the newcomer new
                s.execute(update(Account).where(Account.id == new.caller.id).values(streak=0))
    assert all(2 <= n <= judging.TRUSTED_MAX_RUNS for n in trusted_runs)  # fewer re-runs, never below two
    assert sum(trusted_runs) < sum(new_runs)
    assert sim.hub.account(old.caller)["streak"] >= reputation.TRUSTED_STREAK  # a miss within noise costs nothing
    # now the trusted contributor lies: a harmful edit it never measured, claimed as a big gain
    head = sim.head()
    worse = {**sim.params[head], "MOMENTUM": 0.1}
    base = sim.true_loss(sim.params[head])
    sim.submit(old, head, worse, "tuned", base - 4 * sim.sigma, base, [base - 4 * sim.sigma] * 3, liar=True)
    res, runs = _verify(sim)
    assert res["status"] == "rejected" and runs >= 1
    me = sim.hub.account(old.caller)
    assert me["streak"] == 0 and me["false_claims"] == 1 and me["trust"] == reputation.trust(0)
    assert sim.head() == head  # nothing entered the chain
