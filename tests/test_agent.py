"""The agent-CLI proposer, driven by small scripts that behave like agent CLIs."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from overnight.loop import Limits, Loop
from overnight.proposers.agent import PRESETS, AgentProposer, render, resolve_command
from overnight.proposers.base import FatalProposerError
from overnight.track import Track

GREEDY = '\n[policy]\nrule = "greedy"\n'

# Behaves like a coding-agent CLI: reads the prompt (file arg and stdin), edits, prints a summary.
AGENT = """\
import subprocess, sys
from pathlib import Path
mode, prompt_file = sys.argv[1], sys.argv[2]
stdin = sys.stdin.read()
assert Path(prompt_file).read_text() == stdin and "# History" in stdin
print(f"read {len(stdin)} prompt chars")
if mode == "edit":
    p = Path("params.py"); p.write_text(p.read_text().replace("X = 3.0", "X = 1.0"))
    print("DESCRIPTION: set X to 1.0")
elif mode == "frozen":
    Path("run.py").write_text("print('score: -100')\\n")
    print("DESCRIPTION: rewrite the runner")
elif mode == "commit":
    p = Path("params.py"); p.write_text(p.read_text().replace("Y = 2", "Y = 5"))
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@a", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@a"}
    subprocess.run(["git", "commit", "-qam", "agent commit"], check=True, env=env)
elif mode == "fail":
    print("could not authenticate", file=sys.stderr); sys.exit(3)
"""


@pytest.fixture
def agent_track(quad_track, tmp_path):
    def build(mode: str, **kw) -> tuple[Track, AgentProposer]:
        script = tmp_path / "fake_agent.py"
        script.write_text(textwrap.dedent(AGENT))
        track = Track(quad_track(spec_extra=GREEDY))
        cmd = f"{sys.executable} {script} {mode} {{prompt_file}}"
        return track, AgentProposer(track, agent_cmd=cmd, **kw)

    return build


def run_one(track: Track, prop: AgentProposer):
    Loop(track, prop, limits=Limits(max_experiments=2)).run()
    return track.ledger.experiments()[-1]


def test_agent_edit_is_kept_with_transcript(agent_track):
    track, prop = agent_track("edit")
    exp = run_one(track, prop)
    assert exp.status == "keep", exp.reason
    assert exp.description == "set X to 1.0" and "X = 1.0" in exp.diff
    assert "read " in exp.transcript and "prompt chars" in exp.transcript
    assert Path(exp.meta["agent_log"]).is_file()


def test_agent_editing_a_frozen_file_is_invalid(agent_track):
    track, prop = agent_track("frozen")
    exp = run_one(track, prop)
    assert exp.status == "invalid" and "run.py" in exp.reason


def test_agent_that_commits_itself_still_counts(agent_track):
    track, prop = agent_track("commit")
    exp = run_one(track, prop)
    assert exp.status == "keep" and "Y = 5" in exp.diff
    assert exp.description.startswith("agent edit")


def test_agent_doing_nothing_is_no_change(agent_track):
    track, prop = agent_track("nothing")
    assert run_one(track, prop).status == "no_change"


def test_agent_nonzero_exit_is_an_error(agent_track):
    track, prop = agent_track("fail")
    exp = run_one(track, prop)
    assert exp.status == "error" and "exited with 3" in exp.reason and "could not authenticate" in exp.reason


def test_hanging_agent_times_out(quad_track):
    track = Track(quad_track(spec_extra=GREEDY))
    prop = AgentProposer(track, agent_cmd="sleep 60", timeout=1.0)
    exp = run_one(track, prop)
    assert exp.status == "error" and "timed out" in exp.reason
    assert exp.propose_seconds < 10


def test_presets_and_placeholders():
    assert resolve_command("claude") == PRESETS["claude"] and "-p" in PRESETS["claude"]
    assert resolve_command("codex").startswith("codex exec")
    assert resolve_command("my-agent --go") == "my-agent --go"
    with pytest.raises(FatalProposerError, match="--agent-cmd"):
        resolve_command(None)
    cmd = render(PRESETS["aider"], Path("/tmp/a b/p.md"), Path("/w"), ["train.py", "x y.py"])
    assert cmd == "aider --message-file '/tmp/a b/p.md' --yes-always --no-auto-commits --no-git train.py 'x y.py'"
    assert render("echo {other} {workdir}", Path("p"), Path("/w"), []) == "echo {other} /w"
