"""External coding-agent CLIs (Claude Code, Codex, aider, opencode, Gemini CLI, or any command).

The agent runs inside the candidate's worktree with the assembled prompt in a
file (`{prompt_file}`) and on stdin; the harness diffs the worktree after it
exits. Timeouts, non-zero exits, empty diffs and frozen edits become outcomes.
"""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path
from typing import Any

from overnight.execution.process import MARKER, run_process
from overnight.git.repo import RepoError, git
from overnight.proposers import context
from overnight.proposers.base import FatalProposerError, Proposal, ProposalContext
from overnight.storage.ledger import Experiment
from overnight.track import Track

# Each preset is the exact shell command run in the track folder of the worktree; see docs/agents.md.
PRESETS: dict[str, str] = {
    "claude": 'claude -p "$(cat {prompt_file})" --permission-mode acceptEdits --output-format text',
    "codex": 'codex exec --full-auto "$(cat {prompt_file})"',
    "aider": "aider --message-file {prompt_file} --yes-always --no-auto-commits --no-git {editable}",
    "opencode": 'opencode run "$(cat {prompt_file})"',
    "gemini": 'gemini -p "$(cat {prompt_file})" --approval-mode auto_edit',
}
DEFAULT_TIMEOUT = 1800.0
TRANSCRIPT_CHARS = 400_000
INSTRUCTIONS = (
    "Propose the next experiment now: edit the editable files in the current directory to test one "
    "focused idea. Do not run the full experiment, do not commit, and do not touch frozen files: the "
    "harness commits your edits, runs them under the budget and decides. Finish with a last line of the "
    "form `DESCRIPTION: <one line saying what you changed>`."
)
DESC_RE = re.compile(r"^\W*DESCRIPTION:\s*(.+?)\s*$", re.MULTILINE | re.IGNORECASE)


def resolve_command(agent_cmd: str | None) -> str:
    if not agent_cmd or not agent_cmd.strip():
        names = ", ".join(PRESETS)
        raise FatalProposerError(f"--proposer agent needs --agent-cmd: a preset ({names}) or a command "
                                 "template with {prompt_file} (the prompt is also on stdin)")
    return PRESETS.get(agent_cmd.strip().lower(), agent_cmd.strip())


def render(template: str, prompt_file: Path, workdir: Path, editable: list[str]) -> str:
    """Fill the placeholders with shell-quoted values; other braces are left alone."""
    values = {"prompt_file": shlex.quote(str(prompt_file)), "workdir": shlex.quote(str(workdir)),
              "editable": " ".join(shlex.quote(f) for f in editable)}
    return re.sub(r"\{(prompt_file|workdir|editable)\}", lambda m: values[m.group(1)], template)


def describe(log: str, changed: list[str]) -> str:
    found = DESC_RE.findall(log)
    if found:
        return found[-1][:300]
    return f"agent edit: {', '.join(changed[:5])}" if changed else "agent made no change"


class AgentProposer:
    uses_ideas = True  # the loop claims an idea from the queue for each proposal

    def __init__(self, track: Track, agent_cmd: str | None = None, timeout: float | None = None, **_: Any):
        self.track = track
        self.template = resolve_command(agent_cmd)
        preset = (agent_cmd or "").strip().lower()
        self.name = f"agent:{preset}" if preset in PRESETS else "agent"
        self.timeout = timeout or DEFAULT_TIMEOUT

    def propose(self, ctx: ProposalContext) -> Proposal:
        work = self.track.paths.state / "agent"
        work.mkdir(parents=True, exist_ok=True)
        run_id = uuid.uuid4().hex[:10]
        prompt_file, log = work / f"{run_id}.prompt.md", work / f"{run_id}.log"
        prompt_file.write_text(context.assemble(self.track, ctx.tag, ctx.idea, ctx.workdir, INSTRUCTIONS))
        files = context.editable_files(ctx.workdir, self.track.spec.track.editable)
        command = render(self.template, prompt_file, ctx.workdir, files)
        # The prompt also goes on stdin, for CLIs that read it there.
        shell = f"( {command} ) < {shlex.quote(str(prompt_file))}"
        env = self.track.base_env()
        env[MARKER] = f"{self.track.token}:agent:{run_id}"  # strays are found and killed like runs
        res = run_process(shell, ctx.workdir, env, timeout=self.timeout, log_path=log, stop=ctx.stop)
        text = log.read_text(errors="replace") if log.exists() else ""
        transcript = f"$ {command}\n\n" + context.clip(text, TRANSCRIPT_CHARS, "agent output")
        meta = {"agent_cmd": command, "agent_log": str(log), "agent_seconds": round(res.wall_seconds, 2)}
        self._unwrap_commits(ctx)
        if res.interrupted:
            return Proposal("", self.name, error="interrupted", transcript=transcript, meta=meta)
        if res.timed_out:
            return Proposal("", self.name, error=f"agent timed out after {res.wall_seconds:.0f}s and was killed",
                            transcript=transcript, meta=meta)
        if res.exit_code != 0:
            tail = "\n".join(res.tail.strip().splitlines()[-5:])
            hint = " (is the agent CLI installed and on PATH?)" if res.exit_code == 127 else ""
            return Proposal("", self.name, error=f"agent exited with {res.exit_code}{hint}: {tail}",
                            transcript=transcript, meta=meta)
        return Proposal(describe(text, self._changed(ctx.workdir)), self.name, transcript=transcript, meta=meta)

    def _unwrap_commits(self, ctx: ProposalContext) -> None:
        """An agent that committed on its own: undo the commits, keep the changes for the harness."""
        try:
            head = git(ctx.workdir, "rev-parse", "HEAD").strip()
            if head != ctx.parent_commit:
                git(ctx.workdir, "reset", "-q", "--soft", ctx.parent_commit)
        except RepoError:
            pass  # the harness's own commit step reports a broken worktree

    def _changed(self, workdir: Path) -> list[str]:
        try:
            out = git(workdir, "status", "--porcelain", "--", ".")
        except RepoError:
            return []
        return [line[3:] for line in out.splitlines() if line.strip()]

    def observe(self, experiment: Experiment) -> None:
        """Nothing to keep: the next prompt is rebuilt from the ledger."""

    def baseline(self, experiment: Experiment) -> None:
        """The baseline reaches the agent through the history digest."""
