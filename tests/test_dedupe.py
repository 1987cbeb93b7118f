"""Duplicate proposals: recognised, sent back to the model through its tool loop, shown as dead ends."""

from __future__ import annotations

import pytest
from fakeprovider import FakeProvider, Reply, call

from overnight.loop import Limits, Loop
from overnight.proposers import context, dedupe
from overnight.proposers.dedupe import Tried, find_duplicate
from overnight.proposers.llm import LLMProposer
from overnight.storage.ledger import Experiment
from overnight.track import Track

GREEDY = '\n[policy]\nrule = "greedy"\n'
DIFF = """diff --git a/train.py b/train.py
index 1111111..2222222 100644
--- a/train.py
+++ b/train.py
@@ -10,3 +10,3 @@ import torch
 model = Net()
-act = nn.ReLU()
+act = nn.GELU()
 opt = make_opt(model)
"""


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "OVERNIGHT_PRICES"):
        monkeypatch.delenv(var, raising=False)


def test_reformatted_diff_and_reworded_description_are_repeats():
    tried = [Tried(7, "discard", "switch the activation to GELU", DIFF)]
    reformatted = DIFF.replace("nn.GELU()", "nn.GELU( )  # smoother").replace("@@ -10,3 +10,3 @@", "@@ -40,3 +40,3 @@")
    dup = find_duplicate("something else entirely", reformatted, tried)
    assert dup is not None and dup.of.id == 7 and dup.by == "diff"
    dup = find_duplicate("Try: switch the activation to GELU again.", "", tried)
    assert dup is not None and dup.by == "description" and "#7 (discard)" in dup.message()


@pytest.mark.parametrize("desc, diff", [
    ("switch the activation to SiLU", DIFF.replace("GELU", "SiLU")),  # another word is another idea
    ("raise LR to 0.03", "+LR = 0.03\n-LR = 0.01\n"),  # another number is another experiment
    ("tweak", ""),  # too short to call anything a repeat
])
def test_near_but_different_proposals_are_not_repeats(desc, diff):
    tried = [Tried(1, "discard", "switch the activation to GELU", DIFF),
             Tried(2, "discard", "raise LR to 0.02", "+LR = 0.02\n-LR = 0.01\n"), Tried(3, "discard", "tweak", "")]
    assert find_duplicate(desc, diff, tried) is None


def test_a_crash_is_not_a_tried_idea_and_the_baseline_is_not_either(quad_track):
    track = Track(quad_track())
    with track.ledger.session() as s:
        s.add_all([Experiment(tag="quad", parent_commit="p", proposer="b", description="baseline", status="keep",
                              meta={"baseline": True}),
                   Experiment(tag="quad", parent_commit="p", proposer="a", description="use GELU", status="crash",
                              diff=DIFF, meta={}),
                   Experiment(tag="quad", parent_commit="p", proposer="a", description="X to 4", status="discard",
                              diff="-X = 3.0\n+X = 4.0\n", meta={})])
    assert [t.description for t in dedupe.tried(track, "quad")] == ["X to 4"]
    # What an agent CLI's proposer calls on its worktree: the uncommitted edit is compared.
    (track.dir / "params.py").write_text("X = 4.0   # again\nY = 2  # an int\n")
    dup = dedupe.check(track, "quad", "a fresh idea", track.dir)
    assert dup is not None and dup.by == "diff" and dup.of.description == "X to 4"
    (track.dir / "params.py").write_text("X = 4.5\nY = 2  # an int\n")
    assert dedupe.check(track, "quad", "a fresh idea", track.dir) is None


def test_a_repeat_is_sent_back_through_the_tool_loop_and_the_model_tries_again(quad_track):
    track = Track(quad_track(spec_extra=GREEDY))
    worse = call("str_replace", path="params.py", old_str="X = 3.0", new_str="X = 4.0")
    script = [Reply(tools=[worse]), Reply(tools=[call("finish", description="move X up to 4")]),
              # the next proposal repeats it in other words; the harness sends it back
              Reply(tools=[worse, call("finish", description="Try X = 4.0 once more")]),
              Reply(tools=[call("str_replace", path="params.py", old_str="X = 4.0", new_str="X = 1.0"),
                           call("finish", description="move X down to its optimum 1")])]
    with FakeProvider(script) as fp:
        Loop(track, LLMProposer(track, model="gpt-test", base_url=fp.openai_url),
             limits=Limits(max_experiments=3), lookahead=0).run()
    base, first, second = track.ledger.experiments()
    assert (first.status, first.description) == ("discard", "move X up to 4")
    assert (second.status, second.description) == ("keep", "move X down to its optimum 1")
    assert second.meta["sent_back"] == 1 and "X = 1.0" in second.diff and "4.0" not in second.diff
    answer = [m["content"] for m in fp.requests[3]["body"]["messages"] if m["role"] == "tool"][-1]
    assert f"repeats the same change as experiment #{first.id} (discard)" in answer
    assert "not finished: this repeats" in second.transcript


def test_a_model_that_insists_gets_its_run_marked(quad_track):
    track = Track(quad_track(spec_extra=GREEDY))
    worse = call("str_replace", path="params.py", old_str="X = 3.0", new_str="X = 4.0")
    again = Reply(tools=[call("finish", description="X to 4")])
    script = [Reply(tools=[worse, call("finish", description="X to 4")]), Reply(tools=[worse]), again, again, again]
    with FakeProvider(script) as fp:
        Loop(track, LLMProposer(track, model="gpt-test", base_url=fp.openai_url),
             limits=Limits(max_experiments=3), lookahead=0).run()
    first, second = track.ledger.experiments()[1:]
    assert second.meta["duplicate_of"] == first.id and second.meta["sent_back"] == dedupe.MAX_REPEATS


def test_the_digest_groups_reworded_dead_ends_with_their_best_delta(quad_track):
    track = Track(quad_track())
    rows = [Experiment(tag="quad", parent_commit="p", proposer="b", description="baseline", status="keep",
                       metric=10.0, meta={"baseline": True})]
    for i, desc in enumerate(["Try cosine schedule.", "retry: cosine  schedule", "cosine schedule again",
                              "warmup 100 steps", "warmup 200 steps"]):
        rows.append(Experiment(tag="quad", parent_commit="p", proposer="a", description=desc, status="discard",
                               metric=10.0 + 0.1 * (i + 1), head_metric=10.0, meta={}))
    with track.ledger.session() as s:
        s.add_all(rows)
    digest = context.history_digest(track, "quad", recent=0)
    assert "Dead ends (5 earlier" in digest
    assert "[discard ×3 best Δ +0.1] #4 cosine schedule again" in digest
    assert "warmup 100 steps" in digest and "warmup 200 steps" in digest  # numbers keep ideas apart


def test_floor_division_in_python_is_code_not_a_comment():
    tried = [Tried(4, "discard", "a quarter of the width", "+++ b/model.py\n-    h = n_embd\n+    h = n_embd // 4\n")]
    half = "diff --git a/model.py b/model.py\n+++ b/model.py\n-    h = n_embd\n+    h = n_embd // 2\n"
    assert find_duplicate("half the width", half, tried) is None
    assert find_duplicate("half", half.replace("// 2", "// 4  # a quarter"), tried) is not None  # # is Python's
    c_tried = [Tried(5, "discard", "a quarter", "+++ b/k.cu\n-int h = n;\n+int h = n / 4; // a quarter\n")]
    assert find_duplicate("x", "+++ b/k.cu\n-int h = n;\n+int h = n / 4; // a fourth\n", c_tried) is not None
    assert find_duplicate("x", "+++ b/k.cu\n-#define H 2\n+#define H 4\n", [  # # is C's preprocessor
        Tried(6, "discard", "y", "+++ b/k.cu\n-#define H 2\n+#define H 8\n")]) is None


def test_a_matching_description_does_not_override_a_diff_with_other_numbers():
    tried = [Tried(3, "discard", "raise X", "+++ b/params.py\n-X = 3.0\n+X = 4.0\n")]
    assert find_duplicate("Raise X.", "+++ b/params.py\n-X = 3.0\n+X = 5.0\n", tried) is None
    same = find_duplicate("Raise X.", "+++ b/params.py\n-X = 3.0\n+X = 4.0  # higher\n", tried)
    assert same is not None and same.of.id == 3
    assert find_duplicate("Raise X.", "", tried) is not None  # no diff to tell them apart: the words decide
