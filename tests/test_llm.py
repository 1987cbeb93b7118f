"""The built-in LLM agent against a local server speaking the real OpenAI / Anthropic wire formats."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from fakeprovider import Fail, FakeProvider, Reply, call

from overnight.loop import Limits, Loop, LoopError
from overnight.proposers.base import ProposalContext, StopProposing
from overnight.proposers.llm import LLMProposer
from overnight.proposers.tools import Toolbox
from overnight.track import Track

RULE = ""  # the default keep rule (greedy keeps tests of its own in test_loop.py)
EDIT_X = call("str_replace", path="params.py", old_str="X = 3.0", new_str="X = 1.0")


@pytest.fixture(autouse=True)
def no_keys(monkeypatch):
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "OVERNIGHT_PRICES"):
        monkeypatch.delenv(var, raising=False)


def ctx_for(track: Track) -> ProposalContext:
    """Propose straight into the track folder (a git checkout) for unit-level tests."""
    return ProposalContext(track=track, tag=track.name, workdir=track.dir, parent_commit="", head_metric=None)


def tool_messages(req: dict) -> list[str]:
    return [m["content"] for m in req["body"]["messages"] if m["role"] == "tool"]


def test_edit_becomes_kept_experiment_with_tokens(quad_track):
    track = Track(quad_track(spec_extra=RULE))
    script = [Reply(tools=[call("view", path="params.py")], usage=(100, 20)),
              Reply(text="X should be 1.", tools=[EDIT_X], usage=(150, 30)),
              Reply(tools=[call("finish", description="move X to its optimum 1.0")], usage=(200, 10))]
    with FakeProvider(script) as fp:
        prop = LLMProposer(track, model="gpt-test", base_url=fp.openai_url)
        Loop(track, prop, limits=Limits(max_experiments=2)).run()
    base, exp = track.ledger.experiments()
    assert exp.status == "keep", exp.reason
    assert exp.description == "move X to its optimum 1.0"
    assert exp.metric < base.metric
    assert (exp.tokens_in, exp.tokens_out) == (450, 60)
    assert exp.proposer == "llm:gpt-test" and exp.meta["calls"] == 3
    assert "X = 1.0" in exp.diff and "str_replace" in exp.transcript
    first = fp.requests[0]
    assert first["path"] == "/v1/chat/completions"
    assert first["headers"]["authorization"] == "Bearer overnight-no-key"  # no key needed for a local server
    assert {t["function"]["name"] for t in first["body"]["tools"]} >= {"view", "str_replace", "finish", "smoke"}
    prompt = first["body"]["messages"][1]["content"]
    assert "`score`, minimize" in prompt and "baseline:" in prompt
    assert "params.py (2 lines)" in tool_messages(fp.requests[1])[0]
    assert fp.requests[1]["body"]["messages"][2]["tool_calls"][0]["function"]["name"] == "view"


def test_bad_str_replace_gets_a_teaching_error(quad_track):
    track = Track(quad_track())
    script = [Reply(tools=[call("str_replace", path="params.py", old_str="X = 5.0", new_str="X = 1.0")]),
              Reply(tools=[call("str_replace", path="params.py", old_str="X = 3.0", new_str="X = (1.0")]),
              Reply(tools=[call("str_replace", path="run.py", old_str="SIGMA", new_str="S")]),
              Reply(tools=[call("finish", description="gave up")])]
    with FakeProvider(script) as fp:
        out = LLMProposer(track, model="gpt-test", base_url=fp.openai_url).propose(ctx_for(track))
    assert out.error is None and out.description == "gave up"
    assert "old_str not found in params.py" in tool_messages(fp.requests[1])[0]
    syntax = tool_messages(fp.requests[2])[-1]
    assert "edit not applied" in syntax and "not be valid Python" in syntax and "line 1" in syntax
    assert "run.py is frozen" in tool_messages(fp.requests[3])[-1]
    assert (track.dir / "params.py").read_text().startswith("X = 3.0")  # nothing was applied


def test_rate_limit_and_server_error_are_retried(quad_track):
    track = Track(quad_track())
    script = [Fail(429, headers={"retry-after": "0"}), Fail(503),
              Reply(tools=[EDIT_X, call("finish", description="x to 1")], usage=(70, 7))]
    with FakeProvider(script) as fp:
        out = LLMProposer(track, model="gpt-test", base_url=fp.openai_url, backoff=0.01).propose(ctx_for(track))
    assert out.error is None and len(fp.requests) == 3
    assert (out.tokens_in, out.tokens_out) == (70, 7)
    assert "X = 1.0" in (track.dir / "params.py").read_text()


def test_retries_used_up_is_an_error_not_a_crash(quad_track):
    track = Track(quad_track())
    with FakeProvider(default=Fail(500)) as fp:
        out = LLMProposer(track, model="gpt-test", base_url=fp.openai_url, backoff=0.001,
                          retries=2).propose(ctx_for(track))
    assert out.error and "openai API" in out.error and len(fp.requests) == 3


def test_auth_error_stops_the_loop(quad_track):
    track = Track(quad_track(spec_extra=RULE))
    track.ledger.add_idea("try X = 1")
    with FakeProvider([Fail(401, "invalid api key")]) as fp:
        prop = LLMProposer(track, model="gpt-test", base_url=fp.openai_url)
        with pytest.raises(LoopError, match="OPENAI_API_KEY"):
            Loop(track, prop, limits=Limits(max_experiments=5)).run()
    assert [e.proposer for e in track.ledger.experiments()] == ["baseline"]  # no experiment burnt
    assert track.ledger.ideas()[0].status == "open"  # the idea goes back to the queue
    assert len(fp.requests) == 1


def test_never_calling_finish_is_an_error_with_tokens(quad_track):
    track = Track(quad_track(spec_extra=RULE))
    with FakeProvider(default=Reply(tools=[call("view", path=".")], usage=(10, 1))) as fp:
        prop = LLMProposer(track, model="gpt-test", base_url=fp.openai_url, max_turns=4)
        Loop(track, prop, limits=Limits(max_experiments=2)).run()
    exp = track.ledger.experiments()[-1]
    assert exp.status == "error" and "did not call finish within 4 turns" in exp.reason
    assert (exp.tokens_in, exp.tokens_out) == (40, 4) and len(fp.requests) == 4


def test_text_only_replies_are_nudged_then_error(quad_track):
    track = Track(quad_track())
    with FakeProvider(default=Reply(text="All done!")) as fp:
        out = LLMProposer(track, model="gpt-test", base_url=fp.openai_url).propose(ctx_for(track))
    assert out.error == "the model stopped without calling finish"
    assert "call finish" in fp.requests[1]["body"]["messages"][-1]["content"]


def test_bad_json_arguments_are_explained(quad_track):
    track = Track(quad_track())
    script = [Reply(tools=[call("view", path="x")], raw_args="{not json"),
              Reply(tools=[call("finish", description="d")])]
    with FakeProvider(script) as fp:
        LLMProposer(track, model="gpt-test", base_url=fp.openai_url).propose(ctx_for(track))
    assert "not valid JSON" in tool_messages(fp.requests[1])[0]


def test_anthropic_messages_path(quad_track):
    track = Track(quad_track(spec_extra=RULE))
    script = [Reply(text="Looking first.", tools=[call("view", path="params.py")], usage=(50, 5)),
              Reply(tools=[EDIT_X, call("finish", description="x to 1 via claude")], usage=(80, 9))]
    with FakeProvider(script) as fp:
        prop = LLMProposer(track, model="claude-test", base_url=fp.anthropic_url + "/v1")
        assert prop.provider == "anthropic"
        Loop(track, prop, limits=Limits(max_experiments=2)).run()
    exp = track.ledger.experiments()[-1]
    assert exp.status == "keep" and (exp.tokens_in, exp.tokens_out) == (130, 14)
    first, second = fp.requests
    assert first["path"] == "/v1/messages" and "anthropic-version" in first["headers"]
    auth = first["headers"].get("x-api-key") or first["headers"].get("authorization", "")
    assert auth.endswith("overnight-no-key")
    assert "input_schema" in first["body"]["tools"][0] and "research engineer" in first["body"]["system"]
    assistant, results = second["body"]["messages"][1:]
    assert assistant["content"][1]["type"] == "tool_use"
    assert results["content"][0]["type"] == "tool_result" and "X = 3.0" in results["content"][0]["content"]


def test_max_cost_stops_before_spending(quad_track, monkeypatch):
    monkeypatch.setenv("OVERNIGHT_PRICES", json.dumps({"gpt-test": [1000.0, 1000.0]}))  # $0.001 a token
    track = Track(quad_track())
    with FakeProvider() as fp:
        prop = LLMProposer(track, model="gpt-test", base_url=fp.openai_url, max_cost=0.5)
        with pytest.raises(StopProposing, match="max-cost"):
            prop.propose(ctx_for(track))
    assert fp.requests == []


def test_cost_is_computed_from_reported_usage(quad_track, monkeypatch):
    monkeypatch.setenv("OVERNIGHT_PRICES", json.dumps({"gpt-test": {"input": 2.0, "output": 10.0}}))
    track = Track(quad_track())
    with FakeProvider([Reply(tools=[call("finish", description="d")], usage=(1000, 100))]) as fp:
        out = LLMProposer(track, model="gpt-test", base_url=fp.openai_url, max_cost=5).propose(ctx_for(track))
    assert out.cost_usd == pytest.approx((1000 * 2 + 100 * 10) / 1e6)


def test_tools_teach_and_guard_paths(quad_track, tmp_path):
    track = Track(quad_track())
    tb = Toolbox(track, track.dir)
    assert tb.call("view", {"path": "/etc/passwd"}) == (
        "error: /etc/passwd is outside the track folder; use a path relative to it, e.g. \"train.py\"", True)
    text, err = tb.call("create", {"path": "run2.py", "content": "x = 1\n"})
    assert err and "frozen" in text
    text, err = tb.call("str_replace", {"path": "params.py", "old_str": "=", "new_str": ":="})
    assert err and "appears 2 times" in text and "lines 1, 2" in text
    text, err = tb.call("view", {"path": str(track.dir / "params.py"), "start_line": 2})
    assert not err and "Y = 2" in text and "X = 3.0" not in text
    assert "params.py:1: X = 3.0" in tb.call("search", {"pattern": "X ="})[0]
    assert "no tool" in tb.call("rm", {})[0]
    assert "bad arguments for view" in tb.call("view", {"file": "x"})[0]
    assert "no smoke_command" in tb.call("smoke", {})[0]
    tb.call("note", {"text": "X matters more than Y"})
    tb.call("add_idea", {"text": "try Y = 5"})
    assert track.ledger.notes()[0].text == "X matters more than Y"
    assert track.ledger.ideas()[0].source == "llm"


def test_smoke_runs_the_smoke_command(quad_track):
    from conftest import QUAD_SPEC

    spec = QUAD_SPEC.replace('timeout_seconds = 20\n', 'timeout_seconds = 20\nsmoke_command = "{python} run.py"\n')
    track = Track(quad_track(spec=spec))
    text, err = Toolbox(track, track.dir).call("smoke", {})
    assert not err and "exited with 0" in text and "score:" in text


def test_missing_key_without_base_url_is_fatal(quad_track):
    from overnight.proposers.base import FatalProposerError

    with pytest.raises(FatalProposerError, match="OPENAI_API_KEY"):
        LLMProposer(Track(quad_track()), model="gpt-test")


def test_cli_run_with_only_model_and_base_url(quad_track):
    from typer.testing import CliRunner

    from overnight.cli import app

    path = quad_track(spec_extra=RULE)
    edit_y = Reply(tools=[call("str_replace", path="params.py", old_str="Y = 2", new_str="Y = 5"),
                          call("finish", description="y to 5")], usage=(222, 22))
    # The second proposal may be made ahead on the baseline, conflict with the first keep and be asked again.
    script = [Reply(tools=[EDIT_X, call("finish", description="x to 1")], usage=(111, 11)), edit_y, edit_y]
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with FakeProvider(script) as fp:
            res = CliRunner().invoke(app, ["run", str(path), "--proposer", "llm", "--model", "gpt-test",
                                           "--base-url", fp.openai_url, "--max-experiments", "3"])
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
    assert res.exit_code == 0, res.output
    exps = Track(Path(path)).ledger.experiments()
    assert [e.status for e in exps] == ["keep", "keep", "keep"]
    assert [e.tokens_in for e in exps][:2] == [0, 111] and exps[2].tokens_in in (222, 444)
    # Every token the server reported is billed, including a proposal dropped for a conflict.
    served = [r for r in fp.requests if r["path"].endswith("/chat/completions")]
    assert sum(e.tokens_in for e in exps) == 111 + 222 * (len(served) - 1)
    assert exps[1].tokens_out == 11 and exps[2].description == "y to 5"
    assert exps[-1].metric < 0.1


def test_a_summary_after_edits_ends_the_proposal(quad_track):
    # Hosted models often edit, then answer in prose instead of calling finish: the edit stands.
    track = Track(quad_track())
    script = [Reply(tools=[EDIT_X]), Reply(text="Set X to 1.0 to reach the optimum.\nMore detail.")]
    with FakeProvider(script) as fp:
        out = LLMProposer(track, model="gpt-test", base_url=fp.openai_url).propose(ctx_for(track))
    assert out.error is None and out.description == "Set X to 1.0 to reach the optimum."
    assert len(fp.requests) == 2 and "X = 1.0" in (track.dir / "params.py").read_text()
