"""Operators whose candidate never runs: a draft that conflicts with the head, an operation dropped on rebase,
and pairs that are no combine material."""

from __future__ import annotations

import sys
import textwrap
from types import SimpleNamespace

from conftest import git

from overnight.core.status import Status
from overnight.loop import Limits, Loop
from overnight.loop.intake import _meta
from overnight.loop.pipeline import Candidate
from overnight.proposers.agent import AgentProposer
from overnight.proposers.base import Proposal
from overnight.proposers.operators import Node, Operator, _reset, from_experiment, material, prepare, stamp
from overnight.track import Track

SPACED = "X = 3.0\n#\n#\n#\nY = 2  # an int\n"

# Improve keeps X = 1.0, then makes Y worse; a draft edits X from the base (X = 3.0): it conflicts with the head,
# unless its prompt says the last draft conflicted. The third draft never conflicts, so an old loop ends too.
CONFLICTING_DRAFTER = """\
import sys
from pathlib import Path
prompt, p, state = sys.stdin.read(), Path("params.py"), Path(sys.argv[1])
def sub(a, b): p.write_text(p.read_text().replace(a, b))
def bump(name):
    f = state / name; k = int(f.read_text()) if f.exists() else 0; f.write_text(str(k + 1)); return k
if "# Operator: draft" in prompt:
    if bump("drafts") < 2 and "conflicted with the head" not in prompt:
        sub("X = 3.0", "X = 1.5"); print("DESCRIPTION: fresh: X to 1.5")
    else:
        bump("told"); sub("Y = 2 ", "Y = 6 "); print("DESCRIPTION: fresh: Y to 6")
elif "X = 3.0" in p.read_text():
    sub("X = 3.0", "X = 1.0"); print("DESCRIPTION: X to 1")
else:
    k = bump("worse"); sub("Y = 2 ", f"Y = {1 - k} "); print(f"DESCRIPTION: Y down to {1 - k}")
"""


def test_a_draft_that_conflicts_with_the_head_is_recorded_and_the_next_draft_hears_of_it(quad_track, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setattr("overnight.proposers.operators.STALL", 2)
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(CONFLICTING_DRAFTER))
    track = Track(quad_track(sigma=0.0, files={"params.py": SPACED}))
    prop = AgentProposer(track, agent_cmd=f"{sys.executable} {script} {tmp_path}")
    Loop(track, prop, limits=Limits(max_experiments=8), lookahead=0).run()
    exps = track.ledger.experiments()
    assert len(exps) == 8  # the conflicting draft counted toward --max-experiments
    base, x, w1, w2, conflict, w3, w4, draft = exps
    assert [e.status for e in (x, w1, w2, w3, w4)] == [Status.KEEP] + [Status.DISCARD] * 4
    assert (conflict.operator, conflict.parent_id, conflict.status) == (Operator.DRAFT, base.id, Status.INVALID)
    assert "conflicts with the head" in conflict.reason and "+X = 1.5" in conflict.diff
    assert (draft.operator, draft.status) == (Operator.DRAFT, Status.KEEP), draft.reason  # one draft per stall
    assert (tmp_path / "drafts").read_text() == "2" and (tmp_path / "told").read_text() == "1"


NUDGER = """\
import sys
from pathlib import Path
p = Path("params.py")
p.write_text(p.read_text().replace("X = 3.0", "X = 2.9")); print("DESCRIPTION: nudge X down to 2.9")
"""


def test_an_operation_whose_candidate_was_dropped_is_eligible_again(quad_track, tmp_path):
    """The loop withdraws a candidate that conflicted with a new head: its refine was not done."""
    script = tmp_path / "agent.py"
    script.write_text(textwrap.dedent(NUDGER))
    track = Track(quad_track(sigma=0.0, spec_extra="\n[policy]\nmin_effect = 0.9\n", files={"params.py": SPACED}))
    prop = AgentProposer(track, agent_cmd=f"{sys.executable} {script}")
    Loop(track, prop, limits=Limits(max_experiments=2), lookahead=0).run()
    base, x = track.ledger.experiments()
    assert x.status == Status.DISCARD, x.reason  # a near-miss: refine material
    wt = tmp_path / "wt"
    git(track.dir, "worktree", "add", "-q", "--detach", str(wt), base.commit)
    memory = prop._memory
    op = prepare(track, base.tag, wt, base.commit, memory)
    assert (op.operator, op.node.id) == (Operator.REFINE, x.id)
    cand = Candidate(parent=base.commit, head_metric=None, proposal=stamp(Proposal("refined", "agent"), op))
    _reset(wt, base.commit)
    assert prepare(track, base.tag, wt, base.commit, memory).operator == Operator.IMPROVE  # started: not twice
    prop.withdraw(_meta(cand))  # what the loop's withdraw path hands the proposer thread
    _reset(wt, base.commit)
    again = prepare(track, base.tag, wt, base.commit, memory)
    assert (again.operator, again.node.id) == (Operator.REFINE, x.id)


def near(i: int, diff: str, imp: float, op: str = "improve", parent: int = 0, meta: dict | None = None) -> Node:
    e = SimpleNamespace(id=i, status=Status.DISCARD, operator=op, parent_id=parent, stats={"improvement": imp},
                        meta=meta or {}, metric=None, head_metric=None, commit=f"c{i}", parent_commit="c0",
                        description="", reason="", diff=diff)
    return from_experiment(e, minimize=True)


def test_repeats_a_node_and_its_own_refine_and_equal_changes_are_no_combine_material():
    base = Node(0, Status.KEEP, None, None, commit="c0", baseline=True)
    x = near(1, "+++ b/params.py\n-X = 3.0\n+X = 2.9\n", 0.5)
    again = near(2, "+++ b/params.py\n-X = 3.0\n+X = 2.9  # once more\n", 0.45, meta={"duplicate_of": 1})
    same = near(3, "diff --git a/params.py b/params.py\n-X = 3.0\n+X =  2.9\n", 0.4)
    tuned = near(4, "+++ b/params.py\n-X = 3.0\n+X = 2.5\n-Y = 2\n+Y = 4\n", 0.3, "refine", parent=1)
    mat = material([base, x, again, same, tuned])
    assert [n.id for (n,) in mat[Operator.REFINE]] == [3, 4]  # #1 was refined; the repeat #2 is no near-miss
    assert mat[Operator.COMBINE] == [(same, tuned)]  # not #1 with its equal #3, nor with its own refine #4
    y_only = near(5, "+++ b/params.py\n-Y = 2\n+Y = 2.1\n", 0.2, "refine", parent=1)  # a refine off #1's lines
    assert (x, y_only) in material([base, x, y_only])[Operator.COMBINE]
