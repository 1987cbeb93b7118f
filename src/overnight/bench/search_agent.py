"""The simulated-agent nights of `overnight bench search`.

overnight's night drives the real operator policy (`proposers.operators.choose`) over the nodes
it has recorded, and the scripted agent acts on the operator it is given: improve draws a new
edit for the head (repeats sent back by the real duplicate check), debug fixes the crashed
node's bug, refine draws a new edit on top of the near-miss's change, combine joins two
near-misses' changes, draft draws from the base (re-applied on the head). Every candidate is
the head plus a change and is judged against the head by the real judge. The greedy chain is
autoresearch's: its agent fixes a crash it just caused on the next proposal, as autoresearch's
program.md tells it to.
"""

from __future__ import annotations

import random
from collections import Counter

from overnight.bench.search_sim import Night, Noise, SimLoop
from overnight.bench.search_tracks import AgentTrack, ScriptedAgent
from overnight.core.spec import Spec
from overnight.core.status import Status
from overnight.judge.policy import make_policy
from overnight.proposers.dedupe import Tried, find_duplicate
from overnight.proposers.operators import Node, Operator, choose

REDRAWS = 3  # duplicates sent back to the scripted agent before one goes through


def agent_spec(rule: str) -> Spec:
    return Spec.model_validate({"track": {"name": "agent", "editable": ["train.py"]}, "run": {"command": "true"},
                                "metric": {"name": "loss", "direction": "minimize"}, "policy": {"rule": rule}})


def draw(agent: ScriptedAgent, head: frozenset[int], history: list[Tried], dedupe: bool) -> tuple[int, bool, int]:
    """(edit, crashes, repeats sent back): the scripted agent's next edit for `head`."""
    eid, crashes, desc, diff = agent.propose(head)
    sent = 0
    for _ in range(REDRAWS if dedupe else 0):
        if find_duplicate(desc, diff, history) is None:
            break
        sent += 1
        eid, crashes, desc, diff = agent.propose(head)
    return eid, crashes, sent


def overnight_agent_night(a: AgentTrack, seed: int, experiments: int, rule: str = "noise",
                          budget: int | None = None, operators: list[Operator] | None = None) -> Night:
    """`experiments` proposals (or as many as `budget` runs allow) under the keep rule `rule`, with
    `operators` allowed (default all; improve always)."""
    rng = random.Random(seed)
    agent = ScriptedAgent(a, random.Random(seed * 7 + 1))
    noise = Noise(a.truth, a.sigma, rng)
    head: frozenset[int] = frozenset()
    loop = SimLoop(make_policy(agent_spec(rule)), noise, head)
    nodes = [Node(0, Status.KEEP, commit="base", baseline=True)]
    change: dict[int, frozenset[int]] = {0: frozenset()}  # what each node added to its head
    history: list[Tried] = []
    used: Counter[str] = Counter()
    rejected = 0
    n = 0
    while (n < experiments) if budget is None else (noise.runs < budget):
        n += 1
        op, picked = choose(nodes, allowed=operators)
        used[op.value] += 1
        if op in (Operator.DEBUG, Operator.COMBINE):
            edits = frozenset().union(*(change[p.id] for p in picked))
            agent.fixed |= {i for i in edits if a.edits[i].crash}  # debug: the bug is fixed; combine: both ran
            crashes = False
        else:
            on = change[picked[0].id] if op == Operator.REFINE else frozenset()
            eid, crashes, sent = draw(agent, head | on, history, dedupe=True)
            rejected += sent
            edits = on | {eid}
        agent.last_crash = None  # overnight's crashes are the debug operator's material, not the agent's memory
        edits -= head
        cand = head | edits
        status, values, stats = loop.judged(lambda c=cand, x=crashes: None if x else noise(c), lines_delta=1)
        improvement = stats.get("improvement", -stats["delta"] if "delta" in stats else None)
        nodes.append(Node(n, status, op.value, picked[0].id if picked else None,
                          picked[1].id if len(picked) > 1 else None, improvement, float(stats.get("sigma") or 0.0),
                          commit=str(n)))
        change[n] = edits
        if status != Status.CRASH:
            history.append(Tried(n, status, " + ".join(a.edits[i].text for i in sorted(edits)),
                                 "".join(f"+{a.edits[i].line}\n" for i in sorted(edits))))
        if status == Status.KEEP:
            head = cand
            loop.keep(cand, values)
    return Night(a.truth(head), noise.runs, n, rejected=rejected, operators=dict(used), point=head)


def agent_night(a: AgentTrack, seed: int, rule: str, budget: int | None, experiments: int,
                dedupe: bool) -> Night:
    """A chain on the head: the scripted agent proposes, the judge decides; greedy gets `budget` runs."""
    rng = random.Random(seed + (0 if rule == "noise" else 5))
    agent = ScriptedAgent(a, random.Random(seed * 7 + 1))
    noise = Noise(a.truth, a.sigma, rng)
    head: frozenset[int] = frozenset()
    loop = SimLoop(make_policy(agent_spec(rule)), noise, head)
    history: list[Tried] = []
    n = rejected = 0
    while (n < experiments) if budget is None else (noise.runs < budget):
        eid, crashes, desc, diff = agent.propose(head)
        for _ in range(REDRAWS if dedupe else 0):
            if find_duplicate(desc, diff, history) is None:
                break
            rejected += 1
            eid, crashes, desc, diff = agent.propose(head)
        n += 1
        cand = head | {eid}
        status, values, _ = loop.judged(lambda c=cand, x=crashes: None if x else noise(c), lines_delta=1)
        if status == Status.CRASH:
            agent.last_crash = eid
            continue
        history.append(Tried(n, status, desc, diff))
        if status == Status.KEEP:
            head = cand
            loop.keep(cand, values)
    return Night(a.truth(head), noise.runs, n, rejected=rejected, point=head)


def agent_best_of_n(a: AgentTrack, seed: int, budget: int) -> Night:
    rng = random.Random(seed + 6)
    agent = ScriptedAgent(a, random.Random(seed * 7 + 2))
    noise = Noise(a.truth, a.sigma, rng)
    seen: list[tuple[float, frozenset[int]]] = [(noise(frozenset()), frozenset())]
    while noise.runs < budget:
        eid, crashes, _, _ = agent.propose(frozenset())
        agent.last_crash = None  # independent proposals from the base: nobody fixes a crash
        if crashes:
            noise.runs += 1
            continue
        seen.append((noise(frozenset({eid})), frozenset({eid})))
    best = min(seen, key=lambda s: s[0])[1]
    return Night(a.truth(best), noise.runs, len(seen) - 1, point=best)


def agent_random(a: AgentTrack, seed: int, budget: int) -> Night:
    rng = random.Random(seed + 7)
    noise = Noise(a.truth, a.sigma, rng)
    seen: list[tuple[float, frozenset[int]]] = [(noise(frozenset()), frozenset())]
    while noise.runs < budget:
        pick = frozenset(e.id for e in a.edits if rng.random() < 3 / len(a.edits))
        if any(a.edits[i].crash for i in pick):
            noise.runs += 1
            continue
        seen.append((noise(pick), pick))
    best = min(seen, key=lambda s: s[0])[1]
    return Night(a.truth(best), noise.runs, len(seen) - 1, point=best)


