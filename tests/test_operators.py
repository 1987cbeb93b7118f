"""Operators and the research tree: real loops on a temp track, the LLM on a scripted local server."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from conftest import git
from fakeprovider import FakeProvider, Reply, call

from overnight.bench.dashboard import CHROMIUM, serve
from overnight.core.status import Status
from overnight.loop import Limits, Loop
from overnight.proposers import context
from overnight.proposers.agent import AgentProposer
from overnight.proposers.llm import LLMProposer
from overnight.proposers.operators import Memory, Node, Operator, choose, material, prepare
from overnight.track import Track
from overnight.ui.dashboard import create_app

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
    again = context.history_digest(track, base.tag)
    assert f"#{fixed.id} keep" in again and f"[debug of #{crash.id}]" in again  # the next agent sees the tree


# An agent CLI that acts on the prompt it is given: the harness's operator decides what it sees.
AGENT = """\
import sys
from pathlib import Path
prompt, p = sys.stdin.read(), Path("params.py")
def sub(a, b): p.write_text(p.read_text().replace(a, b))
if "# Sent back" in prompt:
    sub("X = 2.9", "X = 3.0"); sub("Y = 2 ", "Y = 2.1 "); print("DESCRIPTION: nudge Y up to 2.1")
elif "# Operator: refine" in prompt:
    assert "X = 2.9" in p.read_text()  # the near-miss is in the files
    print("DESCRIPTION: nudge X down to 2.9")  # no new edit: a repeat
elif "# Operator: combine" in prompt:
    assert "X = 2.9" in p.read_text() and "Y = 2.1" in p.read_text()
    print("DESCRIPTION: the X and Y nudges together")
else:
    sub("X = 3.0", "X = 2.9"); print("DESCRIPTION: nudge X down to 2.9")
"""
SPACED = "X = 3.0\n#\n#\n#\nY = 2  # an int\n"  # the two lines far enough apart to merge


def combine_night(quad_track, tmp_path) -> Track:
    """Alone each nudge gains less than the minimum effect (0.9): X 0.39, Y 0.59; together 0.98."""
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(AGENT))
    track = Track(quad_track(sigma=0.0, spec_extra="\n[policy]\nmin_effect = 0.9\n", files={"params.py": SPACED}))
    prop = AgentProposer(track, agent_cmd=f"{sys.executable} {script}")
    Loop(track, prop, limits=Limits(max_experiments=4), lookahead=0).run()
    return track


def test_near_misses_are_refined_then_combined_and_a_repeat_is_sent_back(quad_track, tmp_path):
    track = combine_night(quad_track, tmp_path)
    base, x, y, both = track.ledger.experiments()
    assert (x.status, y.status) == (Status.DISCARD, Status.DISCARD), (x.reason, y.reason)
    assert (y.operator, y.parent_id) == (Operator.REFINE, x.id)
    assert y.meta["sent_back"] == 1 and "repeats the same change as experiment #2" in y.transcript
    assert y.description == "nudge Y up to 2.1" and "X = 2.9" not in y.diff
    assert (both.operator, both.parent_id, both.meta["other_id"]) == (Operator.COMBINE, y.id, x.id)
    assert both.status == Status.KEEP, both.reason
    assert both.parent_commit == base.commit and "+X = 2.9" in both.diff and "+Y = 2.1" in both.diff


def test_an_operation_started_is_not_started_again_before_the_ledger_shows_it(quad_track, tmp_path):
    """A pipelined loop proposes while earlier proposals wait unrecorded: one crash gets one debug."""
    track = Track(quad_track())
    script = [Reply(tools=[BROKEN]), Reply(tools=[call("finish", description="move X to 1")])]
    with FakeProvider(script) as fp:
        Loop(track, LLMProposer(track, model="m", base_url=fp.openai_url), limits=Limits(max_experiments=2),
             lookahead=0).run()
    base, crash = track.ledger.experiments()
    assert crash.status == Status.CRASH
    wt = tmp_path / "wt"
    git(track.dir, "worktree", "add", "-q", "--detach", str(wt), base.commit)
    memory = Memory()
    first = prepare(track, base.tag, wt, base.commit, memory)
    assert (first.operator, first.node.id) == (Operator.DEBUG, crash.id)
    assert "undefined_name" in (wt / "params.py").read_text()  # the crashed change, applied for the agent
    git(wt, "checkout", "-q", "-f", base.commit)
    assert prepare(track, base.tag, wt, base.commit, memory).operator == Operator.IMPROVE
    assert (wt / "params.py").read_text() == "X = 3.0\nY = 2  # an int\n"
    assert prepare(track, base.tag, wt, base.commit, Memory()).operator == Operator.DEBUG  # the ledger is the truth

    # the head moved and changed the crashed line meanwhile: the crash's change no longer applies there
    git(wt, "checkout", "-q", "-f", base.commit)
    (wt / "params.py").write_text("X = 2.0\nY = 2  # an int\n")
    git(wt, "commit", "-qam", "a new head")
    head = git(wt, "rev-parse", "HEAD").strip()
    fresh = Memory()
    op = prepare(track, base.tag, wt, head, fresh)
    assert op.operator == Operator.IMPROVE and fresh.stale == {crash.id}  # skipped, not forced through
    assert (wt / "params.py").read_text() == "X = 2.0\nY = 2  # an int\n" and not git(wt, "status", "--porcelain")


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
    # the drafts come first: the chain stalled again since (a draft resets the stall count)
    rates = {"draft": (6, 0), "improve": (12, 1), "debug": (6, 0), "refine": (12, 6), "combine": (12, 0)}
    nodes = history(rates)
    assert material(nodes)[Operator.DEBUG] == [] and choose(nodes)[0] == Operator.REFINE
    rates["refine"], rates["combine"] = (12, 0), (12, 6)
    assert choose(history(rates))[0] == Operator.COMBINE
    rates["combine"] = (12, 1)  # equal rates: the rarer tried gets the exploration bonus
    assert choose(history({**rates, "improve": (40, 1)}))[0] == Operator.DRAFT


DRAFTER = """\
import sys
from pathlib import Path
prompt, p, n = sys.stdin.read(), Path("params.py"), Path(sys.argv[1])
def sub(a, b): p.write_text(p.read_text().replace(a, b))
if "# Operator: draft" in prompt:
    assert "X = 3.0" in p.read_text()  # a draft starts from the base, not from the head (X = 1.0)
    sub("Y = 2 ", "Y = 5 "); print("DESCRIPTION: Y to 5 from scratch")
elif "X = 3.0" in p.read_text():
    sub("X = 3.0", "X = 1.0"); print("DESCRIPTION: X to 1")
else:
    k = int(n.read_text()) if n.exists() else 0
    n.write_text(str(k + 1)); sub("Y = 2 ", f"Y = {1 - k} "); print(f"DESCRIPTION: Y down to {1 - k}")
"""


def test_a_stalled_chain_drafts_from_the_base_and_the_draft_is_rebased_onto_the_head(quad_track, tmp_path,
                                                                                    monkeypatch):
    monkeypatch.setattr("overnight.proposers.operators.STALL", 2)
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(DRAFTER))
    track = Track(quad_track(sigma=0.0, files={"params.py": SPACED}))
    prop = AgentProposer(track, agent_cmd=f"{sys.executable} {script} {tmp_path / 'count'}")
    Loop(track, prop, limits=Limits(max_experiments=5), lookahead=0).run()
    base, x, worse, worse2, draft = track.ledger.experiments()
    assert [e.status for e in (x, worse, worse2)] == [Status.KEEP, Status.DISCARD, Status.DISCARD]
    assert (draft.operator, draft.parent_id) == (Operator.DRAFT, base.id)
    assert draft.status == Status.KEEP, draft.reason
    assert draft.parent_commit == x.commit and draft.meta["proposed_on"] == base.commit  # re-parented on the head
    assert "+Y = 5" in draft.diff  # and the head's X = 1.0 is not reverted:
    assert not [line for line in draft.diff.splitlines() if line.startswith(("+X", "-X"))]


needs_browser = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian chromium is not installed")


@needs_browser
def test_the_dashboard_draws_the_tree(quad_track, tmp_path):
    pytest.importorskip("playwright")
    from overnight.bench.dashboard import browser

    track = combine_night(quad_track, tmp_path)
    base, x, y, both = track.ledger.experiments()
    with serve(create_app(track.ledger, track.spec)) as url, browser() as b:
        page = b.new_page(viewport={"width": 1200, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("#tree [data-node]")
        nodes = page.eval_on_selector_all("#tree [data-node]", "els => els.map(e => [e.dataset.node, "
                                          "e.dataset.operator, e.dataset.parent])")
        assert nodes == [[str(base.id), "baseline", ""], [str(x.id), "improve", str(base.id)],
                         [str(y.id), "refine", str(x.id)], [str(both.id), "combine", str(y.id)]]
        assert page.locator(f"#tree [data-edge='{y.id}-{both.id}']").count() == 1
        lanes = page.eval_on_selector_all("#tree circle", "els => els.map(e => +e.getAttribute('cy'))")
        assert lanes[0] == lanes[3] < lanes[1] < lanes[2]  # the kept chain on top, the refine below its node
        assert "combine 1" in page.locator("#tree").inner_text()
        page.click(f"#tree [data-node='{both.id}']")
        page.wait_for_url(f"**/experiments/{both.id}")
        page.wait_for_selector("#operator")
        assert page.locator("#operator").inner_text() == f"combine of #{y.id} and #{x.id}"
        assert not errors, errors


CLASHING = """\
import sys
from pathlib import Path
prompt, p, n = sys.stdin.read(), Path("params.py"), Path(sys.argv[1])
def sub(a, b): p.write_text(p.read_text().replace(a, b))
if "# Operator: combine" in prompt:
    assert "X = 2.8" in p.read_text() and "did not apply cleanly" in prompt and "+X = 2.9" in prompt, prompt
    sub("Y = 2 ", "Y = 2.1 "); print("DESCRIPTION: merged by hand: X stays 2.8, and Y to 2.1")
elif n.exists():
    sub("X = 3.0", "X = 2.8"); print("DESCRIPTION: X further down to 2.8")
else:
    n.write_text("1"); sub("X = 3.0", "X = 2.9"); print("DESCRIPTION: nudge X down to 2.9")
"""


def test_near_misses_that_clash_are_combined_by_hand_with_the_second_diff_in_the_prompt(quad_track, tmp_path,
                                                                                       monkeypatch):
    import overnight.proposers.operators as operators

    no_refine = operators.choose  # two near-misses from the head, not a node and its own refine (no combine)
    monkeypatch.setattr(operators, "choose", lambda nodes, skip: no_refine(
        nodes, skip, allowed=[o for o in Operator if o != Operator.REFINE]))
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(CLASHING))
    track = Track(quad_track(sigma=0.0, spec_extra="\n[policy]\nmin_effect = 2\n", files={"params.py": SPACED}))
    Loop(track, AgentProposer(track, agent_cmd=f"{sys.executable} {script} {tmp_path / 'count'}"),
         limits=Limits(max_experiments=4), lookahead=0).run()
    base, x, x2, both = track.ledger.experiments()
    assert (x2.operator, x2.parent_id) == (Operator.IMPROVE, base.id) and "+X = 2.8" in x2.diff
    assert (both.operator, both.parent_id, both.meta["other_id"]) == (Operator.COMBINE, x2.id, x.id)
    assert both.status != Status.ERROR, both.reason  # the agent's assertions on what it was shown held
    assert "+X = 2.8" in both.diff and "+Y = 2.1" in both.diff and "<<<<<<<" not in both.diff
