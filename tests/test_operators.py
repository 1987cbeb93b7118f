"""Operators and the research tree: real loops on a temp track, the LLM on a scripted local server."""

from __future__ import annotations

from fakeprovider import FakeProvider, Reply, call

from overnight.core.status import Status
from overnight.loop import Limits, Loop
from overnight.proposers.llm import LLMProposer
from overnight.proposers.operators import Node, Operator, choose, material
from overnight.track import Track

BROKEN = call("str_replace", path="params.py", old_str="X = 3.0", new_str="X = 1.0 + undefined_name")
FIX = call("str_replace", path="params.py", old_str="X = 1.0 + undefined_name", new_str="X = 1.0")


def prompt_of(req: dict) -> str:
    return req["body"]["messages"][1]["content"]


def test_a_crash_is_debugged_from_its_own_tree_and_judged_against_the_head(quad_track):
    track = Track(quad_track())
    script = [Reply(tools=[BROKEN]), Reply(tools=[call("finish", description="move X to 1")]),
              # the fix only applies where the crashed change is in the files: the debug operator put it there
              Reply(tools=[FIX]), Reply(tools=[call("finish", description="fix the NameError, X to 1")])]
    with FakeProvider(script) as fp:
        Loop(track, LLMProposer(track, model="m", base_url=fp.openai_url), limits=Limits(max_experiments=3),
             lookahead=0).run()  # serial: the second proposal sees the crash
    base, crash, fixed = track.ledger.experiments()
    assert crash.status == Status.CRASH and (crash.operator, crash.parent_id) == (Operator.IMPROVE, base.id)
    assert (fixed.operator, fixed.parent_id) == (Operator.DEBUG, crash.id)
    assert fixed.status == Status.KEEP, fixed.reason
    assert fixed.parent_commit == base.commit  # judged against the head, not the crashed node
    assert "+X = 1.0" in fixed.diff and "undefined_name" not in fixed.diff
    debug_prompt = prompt_of(fp.requests[2])
    assert "# Operator: debug" in debug_prompt and f"#{crash.id}" in debug_prompt
    assert "NameError" in debug_prompt  # the traceback's tail reached the agent
    assert "# Operator" not in prompt_of(fp.requests[0])


def node(i: int, status: str, op: str | None = "improve", parent: int | None = 0, imp: float | None = None,
         sigma: float = 1.0, other: int | None = None) -> Node:
    return Node(i, status, op, parent, other, imp, sigma, commit=f"c{i}", baseline=i == 0)


def test_the_policy_needs_material_tries_the_untried_first_then_follows_keep_rates():
    base = node(0, Status.KEEP, None, None)
    assert choose([base])[0] == Operator.IMPROVE
    crashed = [base, node(1, Status.CRASH)]
    assert choose(crashed) == (Operator.DEBUG, (crashed[1],))
    debugged = [*crashed, node(2, Status.DISCARD, "debug", 1, imp=-5.0)]
    assert choose(debugged)[0] == Operator.IMPROVE  # the crash has had its debug; nothing near
    near = [*debugged, node(3, Status.DISCARD, imp=0.4), node(4, Status.DISCARD, imp=-0.5),
            node(5, Status.DISCARD, imp=-3.0)]
    mat = material(near)
    assert [n.id for (n,) in mat[Operator.REFINE]] == [3, 4]  # within a noise sd, best first; #5 is no near-miss
    assert [(a.id, b.id) for a, b in mat[Operator.COMBINE]] == [(3, 4)]
    assert choose(near)[0] == Operator.COMBINE
    combined = [*near, node(6, Status.DISCARD, "combine", 3, imp=-2.0, other=4)]
    assert not material(combined)[Operator.COMBINE] and choose(combined)[0] == Operator.REFINE
    assert material(combined)[Operator.DRAFT]  # five discards in a row: the chain stalled
    assert choose(combined, skip={3, 4})[0] == Operator.DRAFT  # stale nodes are no material: draft, untried


def history(rates: dict[str, tuple[int, int]]) -> list[Node]:
    """Many decided experiments per operator (tries, keeps), then two fresh near-misses: all have material."""
    out, i = [node(0, Status.KEEP, None, None)], 1
    for op, (tries, keeps) in rates.items():
        for k in range(tries):
            out.append(node(i, Status.KEEP if k < keeps else Status.DISCARD, op, 10_000 + i, imp=-9.0))
            i += 1
    return [*out, node(i, Status.DISCARD, imp=0.5), node(i + 1, Status.DISCARD, imp=0.4)]


def test_with_every_operator_tried_the_keep_rates_decide():
    rates = {"improve": (12, 1), "debug": (6, 0), "refine": (12, 6), "combine": (12, 0), "draft": (6, 0)}
    nodes = history(rates)
    assert material(nodes)[Operator.DEBUG] == [] and choose(nodes)[0] == Operator.REFINE
    rates["refine"], rates["combine"] = (12, 0), (12, 6)
    assert choose(history(rates))[0] == Operator.COMBINE
    rates["combine"] = (12, 1)  # equal rates: the rarer tried gets the exploration bonus
    assert choose(history({**rates, "improve": (40, 1)}))[0] == Operator.DRAFT
