"""The agent-CLI proposer, driven by small scripts that behave like agent CLIs (and attack like them)."""

from __future__ import annotations

import json
import shlex
import socket
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from overnight.execution import agent_sandbox
from overnight.loop import Limits, Loop
from overnight.proposers.agent import PRESETS, AgentProposer, command_for, render, resolve_command
from overnight.proposers.agent_presets import Report, describe, error_line, parse_claude, parse_opencode
from overnight.proposers.base import FatalProposerError
from overnight.track import Track

GREEDY = '\n[policy]\nrule = "greedy"\n'

# Behaves like a coding-agent CLI: reads the prompt on stdin, edits, prints a summary.
AGENT = """\
import subprocess, sys
from pathlib import Path
mode, prompt_file = sys.argv[1], sys.argv[2]
stdin = sys.stdin.read()
assert Path(prompt_file).read_text() == stdin and "# History" in stdin
print(f"read {len(stdin)} prompt chars")
def edit(): p = Path("params.py"); p.write_text(p.read_text().replace("X = 3.0", "X = 1.0"))
if mode == "edit":
    edit(); print("DESCRIPTION: set X to 1.0")
elif mode == "frozen":
    Path("run.py").write_text("print('score: -100')\\n")
    print("DESCRIPTION: rewrite the runner")
elif mode == "commit":
    p = Path("params.py"); p.write_text(p.read_text().replace("Y = 2", "Y = 5"))
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@a", "GIT_COMMITTER_NAME": "a", "GIT_COMMITTER_EMAIL": "a@a"}
    subprocess.run(["git", "commit", "-qam", "agent commit"], check=True, env=env)
elif mode == "fail":
    print("could not authenticate", file=sys.stderr); sys.exit(3)
elif mode == "usage":  # codex's answer to an unknown flag: the error, then its usage text
    print("\\x1b[31merror:\\x1b[0m unexpected argument '--full-auto' found", file=sys.stderr)
    print("\\n  tip: to pass '--full-auto' as a value, use '-- --full-auto'\\n", file=sys.stderr)
    print("Usage: codex exec [OPTIONS] [PROMPT]\\n\\nFor more information, try '--help'.", file=sys.stderr)
    sys.exit(2)
elif mode == "ansi":
    edit(); print("\\x1b[1m\\x1b[32mDone.\\x1b[0m\\r\\n\\x1b]0;title\\x07I set X to one. DESCRIPTION: **set X to 1.0**")
elif mode == "echo":  # prints the prompt back (its own DESCRIPTION placeholder included) and edits
    edit(); print(stdin)
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
    log = Path(exp.meta["agent_log"])
    assert log.is_file() and track.paths.state in log.parents  # outside the worktree


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


def test_the_error_line_not_the_usage_text_is_the_reason(agent_track):
    track, prop = agent_track("usage")
    exp = run_one(track, prop)
    assert exp.status == "error" and "unexpected argument '--full-auto' found" in exp.reason, exp.reason
    assert "Usage" not in exp.reason and "--help" not in exp.reason and "\x1b" not in exp.reason


def test_ansi_is_stripped_and_a_merged_description_is_found(agent_track):
    track, prop = agent_track("ansi")
    exp = run_one(track, prop)
    assert exp.status == "keep" and exp.description == "set X to 1.0", exp.description
    assert "\x1b" not in exp.transcript and "\x1b" not in Path(exp.meta["agent_log"]).read_text()
    assert "Done." in exp.transcript


def test_the_prompts_own_description_placeholder_is_not_a_description(agent_track):
    track, prop = agent_track("echo")
    exp = run_one(track, prop)
    assert exp.status == "keep" and exp.description == "agent edit: params.py", exp.description


def test_hanging_agent_times_out(quad_track):
    track = Track(quad_track(spec_extra=GREEDY))
    prop = AgentProposer(track, agent_cmd="sleep 60", timeout=1.0)
    exp = run_one(track, prop)
    assert exp.status == "error" and "timed out" in exp.reason
    assert exp.propose_seconds < 10


def test_presets_send_the_prompt_once_and_take_the_model():
    for name, preset in PRESETS.items():
        cmd = render(command_for(name, "m-1"), Path("/s/p.md"), Path("/w"), ["params.py"], "m-1", Path("/s"),
                     preset.model_flag)
        assert "$(cat" not in cmd and "--model m-1" in cmd, cmd  # stdin is the one copy of the prompt
        assert cmd.split()[0] == name
    assert resolve_command("my-agent --go") == "my-agent --go"
    assert "--max-budget-usd 1.5000" in command_for("claude", None, 1.5)
    assert "--dangerously-bypass" in command_for("codex", sandboxed=True)
    assert "--sandbox workspace-write" in command_for("codex")
    with pytest.raises(FatalProposerError, match="--agent-cmd"):
        resolve_command(None)
    aider = render(command_for("aider"), Path("/tmp/a b/p.md"), Path("/w"), ["train.py", "x y.py"], None,
                   Path("/tmp/a b"))
    assert "--message-file '/tmp/a b/p.md'" in aider and aider.endswith("train.py 'x y.py'")
    assert "--chat-history-file '/tmp/a b'/aider.chat.history.md" in aider
    assert render("echo {other} {workdir} {model}", Path("p"), Path("/w"), [], "a b") == "echo {other} /w 'a b'"


def test_parsers_take_nothing_hostile():
    lines = "\n".join(json.dumps(e) for e in [
        {"type": "result", "subtype": "success", "result": "ok\nDESCRIPTION: x", "total_cost_usd": "nan",
         "modelUsage": {"m": {"inputTokens": -5, "outputTokens": "7"}}},
        {"type": "step_finish", "part": {"cost": -3.0, "tokens": {"input": 1e400}}}])
    r = parse_claude(lines, {})
    assert (r.tokens_in, r.tokens_out, r.cost_usd, r.text) == (0, 7, 0.0, "ok\nDESCRIPTION: x")
    o = parse_opencode(lines, {})
    assert o.cost_usd == 0.0 and o.tokens_in == 0
    assert describe(Report(text="All done.\n\n**DESCRIPTION:** `lower the lr`"), "", []) == "lower the lr"
    assert error_line("Usage: x [OPTIONS]\n  --flag   does things\nreal failure here\n") == "real failure here"
    assert error_line("Traceback (most recent call last):\n  File x\nValueError: bad key\n") == "ValueError: bad key"


# --- the sandbox ---------------------------------------------------------------------------------
PROBE = """\
import json, os, socket, sys
from pathlib import Path
seen = {}
paths, port, prompt = json.loads(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
for name, target in (("prompt_write", prompt), ("log_write", prompt.parent.parent / (prompt.parent.name + ".log"))):
    try:
        target.write_text("DESCRIPTION: forged"); seen[name] = "wrote"
    except OSError:
        seen[name] = "refused"
for name, p in paths.items():
    try:
        seen[name] = "read" if Path(p).is_file() and Path(p).read_text() is not None else \\
            ("listed" if Path(p).is_dir() and os.listdir(p) else "hidden")
    except OSError:
        seen[name] = "hidden"
try:
    Path(paths["hook"]).write_text("#!/bin/sh\\necho owned\\n"); seen["hook_write"] = "wrote"
except OSError:
    seen["hook_write"] = "refused"
try:
    Path(paths["home_file"]).write_text("owned"); seen["home_write"] = "wrote"
except OSError:
    seen["home_write"] = "refused"
seen["worktrees"] = sorted(os.listdir(paths["worktrees"])) if os.path.isdir(paths["worktrees"]) else []
seen["cwd"] = os.path.basename(os.getcwd())
try:
    socket.create_connection(("127.0.0.1", port), timeout=5).close(); seen["network"] = "ok"
except OSError as e:
    seen["network"] = f"no: {e}"
p = Path("params.py"); p.write_text(p.read_text().replace("X = 3.0", "X = 1.0"))
print("PROBE " + json.dumps(seen))
print("DESCRIPTION: probed the sandbox")
"""


def test_sandboxed_agent_sees_only_its_worktree_and_keeps_the_network(quad_track, tmp_path, monkeypatch):
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / "secrets.txt").write_text("the user's own files\n")
    monkeypatch.setenv("HOME", str(home))
    listener = socket.create_server(("127.0.0.1", 0))  # stands in for the agent's API
    threading.Thread(target=lambda: listener.accept()[0].close(), daemon=True).start()
    track = Track(quad_track(spec_extra=GREEDY))
    track.ensure_state()
    (track.paths.heldout / "answers.txt").write_text("held-out labels\n")
    other = track.paths.worktrees / "someone-else"
    other.mkdir(parents=True)
    (other / "notes.txt").write_text("another worktree\n")
    repo_git = track.dir / ".git"
    paths = {"ledger": str(track.paths.state / "ledger.db"), "heldout": str(track.paths.heldout / "answers.txt"),
             "heldout_dir": str(track.paths.heldout), "other_worktree": str(other / "notes.txt"),
             "home_secret": str(home / "secrets.txt"), "git_config": str(repo_git / "config"),
             "hook": str(repo_git / "hooks" / "post-commit"), "home_file": str(home / ".bashrc"),
             "worktrees": str(track.paths.worktrees)}
    script = track.dir / "probe.py"  # a frozen file: the probe reads its own copy inside the worktree
    script.write_text(PROBE)
    cmd = f"python probe.py {shlex.quote(json.dumps(paths))} {listener.getsockname()[1]} {{prompt_file}}"
    prop = AgentProposer(track, agent_cmd=cmd, sandbox=True)
    from conftest import git

    git(track.dir, "add", "probe.py")
    git(track.dir, "commit", "-qm", "probe")
    exp = run_one(track, prop)
    listener.close()
    seen = json.loads(exp.transcript.split("PROBE ", 1)[1].splitlines()[0])
    assert exp.status == "keep" and exp.meta["sandbox"] is True, exp.reason
    assert seen["network"] == "ok"
    for name in ("ledger", "heldout", "heldout_dir", "other_worktree", "home_secret", "git_config"):
        assert seen[name] == "hidden", (name, seen)
    assert seen["prompt_write"] == "refused" and "forged" not in Path(exp.meta["agent_log"]).read_text()
    assert exp.description == "probed the sandbox"
    assert seen["worktrees"] == [seen["cwd"]]  # its own worktree, none of the others
    assert seen["hook_write"] == "refused" and not Path(paths["hook"]).exists()
    assert not Path(paths["home_file"]).exists()  # a throwaway home, whatever it wrote there


def test_missing_bwrap_is_a_clear_error(quad_track, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(agent_sandbox, "FALLBACK", ())
    track = Track(quad_track(spec_extra=GREEDY))
    with pytest.raises(FatalProposerError, match="bubblewrap .*apt-get install bubblewrap"):
        AgentProposer(track, agent_cmd="claude", sandbox=True)


def test_llm_only_options_are_refused_not_ignored(quad_track):
    track = Track(quad_track(spec_extra=GREEDY))
    with pytest.raises(FatalProposerError, match="--base-url is for --proposer llm"):
        AgentProposer(track, agent_cmd="claude", base_url="http://127.0.0.1:1/v1")


def test_sandbox_hides_state_under_a_bound_system_folder(tmp_path):
    """A track under /opt: /opt is shown read-only, so its state and git dir are emptied before the binds."""
    work = tmp_path / "wt"
    argv = agent_sandbox.wrap("true", workdir=work, writable=[work], readonly=[], home=tmp_path / "home",
                              home_paths=[], hidden=[Path("/opt/proj/.overnight"), Path("/opt/proj/.git")])
    pairs = [argv[i:i + 2] for i in range(len(argv) - 1)]
    opt = pairs.index(["--ro-bind-try", "/opt"])
    state, gitdir = pairs.index(["--tmpfs", "/opt/proj/.overnight"]), pairs.index(["--tmpfs", "/opt/proj/.git"])
    assert opt < state < pairs.index(["--bind", str(work.resolve())])
    assert opt < gitdir and "--share-net" in argv and "--unshare-all" in argv
