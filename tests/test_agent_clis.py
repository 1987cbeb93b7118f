"""The shipped presets driving the real agent CLIs against local servers that speak their providers' protocols.

`.ci/agent-clis.sh` installs the CLIs (versions in docs/agents.md) under
~/.cache/overnight-agent-clis; a test skips, naming the package, only when its CLI is not there.
Each run is a real `Loop` on a temp track: baseline, then one proposal by the CLI, whose scripted
model makes one edit with the CLI's own edit tool.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from agentserver import AgentServer, Edit
from typer.testing import CliRunner

from overnight.cli import app
from overnight.loop import Limits, Loop
from overnight.proposers.agent import INSTRUCTIONS, AgentProposer
from overnight.proposers.cost import PriceTable
from overnight.track import Track

GREEDY = '\n[policy]\nrule = "greedy"\n'
PREFIX = Path(os.environ.get("OVERNIGHT_AGENT_CLIS", "~/.cache/overnight-agent-clis")).expanduser()
BIN_DIRS = [PREFIX / "node_modules" / ".bin", PREFIX / "aider-venv" / "bin"]
PACKAGES = {"claude": "@anthropic-ai/claude-code", "codex": "@openai/codex", "opencode": "opencode-ai",
            "gemini": "@google/gemini-cli", "aider": "aider-chat (PyPI, in its own venv)"}
MODELS = {"claude": "claude-sonnet-4-5", "codex": "gpt-5.5", "aider": "openai/test-model",
          "opencode": "local/test-model", "gemini": "gemini-2.5-pro"}
MARK = INSTRUCTIONS[:40]  # in the prompt exactly once: the prompt was sent once
EDIT = Edit("params.py", "X = 3.0", "X = 1.0", "set X to 1.0",
            prefix="I lowered X toward the optimum, which should reduce the score a lot because the")


def cli_path(name: str) -> str:
    path = os.pathsep.join([*map(str, BIN_DIRS), os.environ.get("PATH", "")])
    found = shutil.which(name, path=path)
    if found is None:
        pytest.skip(f"{name} is not installed ({PACKAGES[name]}): .ci/agent-clis.sh could not install it "
                    f"under {PREFIX} and it is not on PATH")
    return path


@pytest.fixture
def home():
    # Not under /tmp: codex refuses to set up its apply_patch helper in a temporary folder.
    base = Path("/var/tmp") if os.access("/var/tmp", os.W_OK) else Path(tempfile.gettempdir())
    d = Path(tempfile.mkdtemp(prefix="overnight-agent-home-", dir=base))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def configure(name: str, srv: AgentServer, home: Path, mp: pytest.MonkeyPatch) -> None:
    """Point the CLI at the local server the way docs/agents.md tells a user to."""
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "ANTHROPIC_BASE_URL",
                "OPENAI_BASE_URL", "OPENAI_API_BASE", "CODEX_HOME", "CLAUDE_CONFIG_DIR", "OPENCODE_CONFIG"):
        mp.delenv(var, raising=False)
    mp.setenv("HOME", str(home))
    mp.setenv("PATH", cli_path(name))
    if name == "claude":
        mp.setenv("ANTHROPIC_BASE_URL", srv.url)
        mp.setenv("ANTHROPIC_API_KEY", "sk-test")
        mp.setenv("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
    elif name == "codex":
        (home / ".codex").mkdir()
        (home / ".codex" / "config.toml").write_text(
            f'model_provider = "local"\n[model_providers.local]\nname = "local"\nbase_url = "{srv.url}/v1"\n'
            'env_key = "OPENAI_API_KEY"\nwire_api = "responses"\n')
        mp.setenv("OPENAI_API_KEY", "sk-test")
    elif name == "aider":  # a price for the local model, so aider reports dollars
        (home / ".aider.model.metadata.json").write_text(json.dumps({MODELS["aider"]: {
            "input_cost_per_token": 3e-6, "output_cost_per_token": 1.5e-5, "max_tokens": 8192,
            "litellm_provider": "openai", "mode": "chat"}}))
        mp.setenv("OPENAI_API_BASE", f"{srv.url}/v1")
        mp.setenv("OPENAI_API_KEY", "sk-test")
    elif name == "opencode":
        (home / ".config" / "opencode").mkdir(parents=True)
        (home / ".config" / "opencode" / "opencode.json").write_text(json.dumps({"snapshot": False, "provider": {
            "local": {
            "npm": "@ai-sdk/openai-compatible", "name": "local",
            "options": {"baseURL": f"{srv.url}/v1", "apiKey": "sk-test"},
            "models": {"test-model": {"cost": {"input": 3, "output": 15}}}}}}))
        mp.setenv("OPENCODE_DISABLE_MODELS_FETCH", "1")
        mp.setenv("OPENCODE_DISABLE_AUTOUPDATE", "1")
        mp.setenv("OPENCODE_DISABLE_DEFAULT_PLUGINS", "1")
        mp.setenv("OPENCODE_DISABLE_LSP_DOWNLOAD", "1")
    elif name == "gemini":
        (home / ".gemini").mkdir()
        (home / ".gemini" / "settings.json").write_text(json.dumps({"security": {"auth": {
            "selectedType": "gemini-api-key"}}}))
        mp.setenv("GEMINI_API_KEY", "sk-test")
        mp.setenv("GOOGLE_GEMINI_BASE_URL", srv.url)


def logged(exp) -> str:
    return Path(exp.meta["agent_log"]).read_text()


@pytest.mark.parametrize("sandbox", [False, True], ids=["plain", "sandboxed"])
@pytest.mark.parametrize("name", list(PACKAGES))
def test_preset_keeps_a_scripted_edit(name, sandbox, quad_track, home, monkeypatch):
    with AgentServer(EDIT, model=MODELS[name]) as srv:
        configure(name, srv, home, monkeypatch)
        track = Track(quad_track(spec_extra=GREEDY))
        prop = AgentProposer(track, agent_cmd=name, model=MODELS[name], sandbox=sandbox, timeout=90)
        Loop(track, prop, limits=Limits(max_experiments=2)).run()
    exp = track.ledger.experiments()[-1]
    assert exp.status == "keep", f"{exp.status}: {exp.reason}\n{exp.transcript[-3000:]}"
    assert "X = 1.0" in exp.diff and exp.description == "set X to 1.0", exp.description
    assert f"--model {MODELS[name]}" in exp.meta["agent_cmd"]
    turns = srv.agent_requests()
    assert turns and all(json.dumps(t.body).count(MARK) == 1 for t in turns)  # never twice in one request
    assert "\x1b" not in exp.transcript and "\x1b" not in logged(exp)
    assert exp.tokens_in > 0 and exp.tokens_out > 0
    if name in ("claude", "codex", "gemini"):  # these count exactly what the server reported
        sent = [t for t in srv.served if t.agent]
        assert exp.tokens_in == sum(t.usage.tokens_in for t in sent)
        assert exp.tokens_out == sum(t.usage.tokens_out for t in sent)
    if name == "claude":  # the CLI's own dollar figure, not a re-pricing
        result = [json.loads(ln) for ln in logged(exp).splitlines() if '"type":"result"' in ln][-1]
        assert exp.cost_usd == pytest.approx(result["total_cost_usd"], abs=1e-6) and exp.cost_usd > 0
    if name == "opencode":
        steps = [json.loads(ln) for ln in logged(exp).splitlines() if '"step_finish"' in ln]
        assert exp.cost_usd == pytest.approx(sum(s["part"]["cost"] for s in steps), abs=1e-6) and exp.cost_usd > 0
    if name == "aider":  # its private files went to the proposal's own folder, not the worktree
        private = Path(exp.meta["agent_dir"])
        assert (private / "aider.chat.history.md").is_file()
        sends = [json.loads(ln) for ln in (private / "aider.analytics.jsonl").read_text().splitlines()
                 if '"message_send"' in ln]
        assert exp.tokens_in == sum(s["properties"]["prompt_tokens"] for s in sends)
        assert exp.cost_usd == pytest.approx(sum(s["properties"]["cost"] for s in sends), abs=1e-6)
        assert exp.cost_usd > 0
    if name == "codex":  # tokens only: priced by overnight's table for the model codex ran
        assert exp.cost_usd == pytest.approx(PriceTable().cost(MODELS[name], exp.tokens_in, exp.tokens_out), abs=1e-6)
        assert exp.cost_usd > 0


def test_claude_max_cost_counts_the_cli_spend(quad_track, home, monkeypatch):
    """--max-cost sees what the CLI reported, passes the rest to claude's own budget flag and stops."""
    with AgentServer(EDIT, model=MODELS["claude"]) as srv:
        configure("claude", srv, home, monkeypatch)
        track = Track(quad_track(spec_extra=GREEDY))
        prop = AgentProposer(track, agent_cmd="claude", model=MODELS["claude"], max_cost=0.3, timeout=90)
        Loop(track, prop, limits=Limits(max_experiments=6)).run()
    exps = [e for e in track.ledger.experiments() if e.proposer.startswith("agent")]
    assert 1 <= len(exps) < 5
    assert "--max-budget-usd 0.3000" in exps[0].meta["agent_cmd"]
    if len(exps) > 1:  # the second got what was left, and claude stopped itself there
        assert exps[-1].status == "error" and "budget" in exps[-1].reason.lower(), exps[-1].reason
    reported = sum(json.loads(ln)["total_cost_usd"] for e in exps for ln in logged(e).splitlines()
                   if '"type":"result"' in ln)
    assert sum(e.cost_usd for e in exps) == pytest.approx(reported, abs=1e-5)
    assert sum(e.cost_usd for e in exps) >= 0.3 > sum(e.cost_usd for e in exps[:-1])


def test_overnight_run_with_sandbox_drives_claude(quad_track, home, monkeypatch):
    """The user's command line: --proposer agent --agent-cmd claude --model M --sandbox."""
    with AgentServer(EDIT, model=MODELS["claude"]) as srv:
        configure("claude", srv, home, monkeypatch)
        path = quad_track(spec_extra=GREEDY)
        r = CliRunner().invoke(app, ["run", str(path), "--proposer", "agent", "--agent-cmd", "claude",
                                     "--model", MODELS["claude"], "--sandbox", "--max-experiments", "2"])
        assert r.exit_code == 0, r.output
    exp = Track(path).ledger.experiments()[-1]
    assert exp.status == "keep" and exp.meta["sandbox"] is True and exp.cost_usd > 0, exp.reason


def test_a_real_cli_error_is_the_reason(quad_track, home, monkeypatch):
    """gemini asked for a model the server does not serve: the reason is its error, not a stack frame."""
    with AgentServer(EDIT, model=MODELS["gemini"]) as srv:
        configure("gemini", srv, home, monkeypatch)
        monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", srv.url + "/nowhere")
        track = Track(quad_track(spec_extra=GREEDY))
        prop = AgentProposer(track, agent_cmd="gemini", model=MODELS["gemini"], timeout=90)
        Loop(track, prop, limits=Limits(max_experiments=2)).run()
    exp = track.ledger.experiments()[-1]
    assert exp.status == "error" and "no route" in exp.reason, exp.reason
    assert "    at " not in exp.reason and "\x1b" not in exp.reason


def test_codex_rejecting_a_flag_gives_its_error_not_its_usage(quad_track, home, monkeypatch):
    """The old preset's `--full-auto`: codex prints an error line, then usage text, and exits 2."""
    with AgentServer(EDIT, model=MODELS["codex"]) as srv:
        configure("codex", srv, home, monkeypatch)
        track = Track(quad_track(spec_extra=GREEDY))
        prop = AgentProposer(track, agent_cmd="codex exec --full-auto --json -", timeout=60)
        Loop(track, prop, limits=Limits(max_experiments=2)).run()
    exp = track.ledger.experiments()[-1]
    assert exp.status == "error" and "exited with 2" in exp.reason, exp.reason
    assert "unexpected argument '--full-auto'" in exp.reason and "Usage" not in exp.reason, exp.reason
    assert "\x1b" not in exp.reason and "\x1b" not in exp.transcript


def test_sandboxed_codex_cannot_show_the_model_held_out_data(quad_track, home, monkeypatch):
    """The model has codex `cat` the held-out answers (unsandboxed, codex's own sandbox lets it read the
    whole disk and the labels reach the model): in overnight's sandbox the file is not there."""
    path = quad_track(spec_extra=GREEDY)
    track = Track(path)
    track.ensure_state()
    secret = track.paths.heldout / "answers.txt"
    secret.write_text("HELD-OUT-LABELS-7f3a\n")
    peek = Edit(EDIT.file, EDIT.old, EDIT.new, EDIT.description, peek=str(secret))
    with AgentServer(peek, model=MODELS["codex"]) as srv:
        configure("codex", srv, home, monkeypatch)
        prop = AgentProposer(track, agent_cmd="codex", model=MODELS["codex"], sandbox=True, timeout=90)
        Loop(track, prop, limits=Limits(max_experiments=2)).run()
    bodies = [json.dumps(s.body) for s in srv.served]
    assert not any("HELD-OUT-LABELS-7f3a" in b for b in bodies)
    assert any("No such file or directory" in b for b in bodies)  # the attempt ran and found nothing
    exp = track.ledger.experiments()[-1]
    assert exp.status == "keep", exp.reason
