"""External coding-agent CLIs (Claude Code, Codex, aider, opencode, Gemini CLI, or any command).

The agent runs inside the candidate's worktree with the assembled prompt on stdin (and in
`{prompt_file}`, outside the worktree); the harness diffs the worktree after it exits.
Timeouts, non-zero exits, empty diffs and frozen edits become outcomes. A preset also
reads the CLI's structured output for tokens, cost, the description and the error; with
`--sandbox` the CLI runs in bubblewrap (execution/agent_sandbox.py).
"""

from __future__ import annotations

import re
import shlex
import uuid
from pathlib import Path
from typing import Any

from overnight.execution import agent_sandbox
from overnight.execution.process import MARKER, ProcessResult, run_process
from overnight.execution.sandbox import SandboxError
from overnight.git.repo import RepoError, git
from overnight.proposers import context, dedupe, operators
from overnight.proposers.agent_presets import (
    AIDER_FILES,
    PRESETS,
    Preset,
    Report,
    describe,
    error_line,
    strip_ansi,
)
from overnight.proposers.base import FatalProposerError, Proposal, ProposalContext, StopProposing
from overnight.proposers.cost import PriceError, PriceTable
from overnight.storage.ledger import Experiment
from overnight.track import Track

__all__ = ["PRESETS", "AgentProposer", "command_for", "render", "resolve_command"]

DEFAULT_TIMEOUT = 1800.0
TRANSCRIPT_CHARS = 400_000
INSTRUCTIONS = (
    "Propose the next experiment now: edit the editable files in the current directory to test one "
    "focused idea. Do not run the full experiment, do not commit, and do not touch frozen files: the "
    "harness commits your edits, runs them under the budget and decides. Finish with a last line of the "
    "form `DESCRIPTION: <one line saying what you changed>`."
)
PLACEHOLDERS = re.compile(r"\{(prompt_file|workdir|editable|model|model_opt|private)\}")


def resolve_command(agent_cmd: str | None) -> str:
    """The command template: a preset's (without the model flag) or the user's own."""
    if not agent_cmd or not agent_cmd.strip():
        names = ", ".join(PRESETS)
        raise FatalProposerError(f"--proposer agent needs --agent-cmd: a preset ({names}) or a command "
                                 "template (the prompt is on stdin and in {prompt_file})")
    preset = PRESETS.get(agent_cmd.strip().lower())
    return preset.command if preset else agent_cmd.strip()


def command_for(agent_cmd: str | None, model: str | None = None, budget_usd: float | None = None,
                sandboxed: bool = False) -> str:
    """The full template: a preset gets `--model` (and a budget flag) appended where it has no slot."""
    template = resolve_command(agent_cmd)
    preset = PRESETS.get((agent_cmd or "").strip().lower())
    if preset is None:
        return template
    if sandboxed and preset.sandboxed:
        template = preset.sandboxed
    extra = []
    if model and "{model_opt}" not in template:
        extra.append("{model_opt}")
    if budget_usd is not None and preset.budget_flag:
        extra.append(f"{preset.budget_flag} {budget_usd:.4f}")
    return " ".join([template, *extra])


def render(template: str, prompt_file: Path, workdir: Path, editable: list[str], model: str | None = None,
           private: Path | None = None, model_flag: str = "--model") -> str:
    """Fill the placeholders with shell-quoted values; other braces are left alone."""
    values = {"prompt_file": shlex.quote(str(prompt_file)), "workdir": shlex.quote(str(workdir)),
              "editable": " ".join(shlex.quote(f) for f in editable),
              "model": shlex.quote(model) if model else "",
              "model_opt": f"{model_flag} {shlex.quote(model)}" if model else "",
              "private": shlex.quote(str(private or prompt_file.parent))}
    return re.sub(r" {2,}", " ", PLACEHOLDERS.sub(lambda m: values[m.group(1)], template)).strip()


def failure(res: ProcessResult, report: Report, text: str, changed: list[str]) -> str | None:
    """Why the proposal failed, in one line, or None."""
    if res.interrupted:
        return "interrupted"
    if res.timed_out:
        return f"agent timed out after {res.wall_seconds:.0f}s and was killed"
    if res.exit_code != 0:
        hint = " (is the agent CLI installed and on PATH?)" if res.exit_code == 127 else ""
        return f"agent exited with {res.exit_code}{hint}: {report.error or error_line(text)}"
    if report.error and not changed:
        return f"agent reported an error: {report.error}"
    return None


class AgentProposer:
    uses_ideas = True  # the loop claims an idea from the queue for each proposal

    def __init__(self, track: Track, agent_cmd: str | None = None, timeout: float | None = None,
                 model: str | None = None, max_cost: float | None = None, sandbox: bool | None = None,
                 base_url: str | None = None, provider: str | None = None, **_: Any):
        if base_url or provider:  # silently ignoring them would send the agent to the wrong place
            flag = "--base-url" if base_url else "--provider"
            raise FatalProposerError(f"{flag} is for --proposer llm; an agent CLI takes its endpoint and "
                                     "provider from its own environment or config (docs/agents.md, per CLI)")
        self.track, self.model, self.max_cost = track, model, max_cost
        self.agent_cmd = (agent_cmd or "").strip()
        resolve_command(agent_cmd)  # fails now on a missing --agent-cmd
        self.preset: Preset | None = PRESETS.get(self.agent_cmd.lower())
        self.name = f"agent:{self.preset.name}" if self.preset else "agent"
        self.timeout = timeout or DEFAULT_TIMEOUT
        # --sandbox (the track's [run] sandbox) puts the agent CLI in bubblewrap too.
        self.sandbox = track.spec.run.sandbox == "bubblewrap" if sandbox is None else sandbox
        if self.sandbox:
            try:
                agent_sandbox.require()
            except SandboxError as e:
                raise FatalProposerError(str(e)) from None
        try:
            self.prices = PriceTable.for_state(track.paths.state)
        except PriceError as e:
            raise FatalProposerError(str(e)) from None
        self._recorded_at_start: float | None = None
        self._spent_here = 0.0
        self._memory = operators.Memory()  # stale nodes, operations not yet in the ledger

    # --- money ------------------------------------------------------------------------------------
    def spent(self, tag: str) -> float:
        """The ledger's total, or more: a pipelined loop records a proposal after the next one starts."""
        recorded = sum(e.cost_usd or 0.0 for e in self.track.ledger.experiments(tag))  # one query per proposal
        if self._recorded_at_start is None:
            self._recorded_at_start = recorded
        return max(recorded, self._recorded_at_start + self._spent_here)

    def _cost(self, report: Report) -> float:
        """What the CLI said it cost, else its tokens at the price of its model."""
        if report.cost_usd is not None:
            return round(report.cost_usd, 6)
        model = report.model or self.model or ""
        return round(self.prices.cost(model, report.tokens_in, report.tokens_out), 6) if model else 0.0

    # --- one proposal -----------------------------------------------------------------------------
    def propose(self, ctx: ProposalContext) -> Proposal:
        self._budget(ctx.tag)  # stop before the operator touches the worktree
        op = operators.prepare(self.track, ctx.tag, ctx.workdir, ctx.parent_commit, self._memory)
        if op.parent_commit:  # a draft: the agent's edit sits on the base, the loop rebases it
            ctx.parent_commit = op.parent_commit
        gate = dedupe.Gate(self.track, ctx.tag, ctx.workdir)
        said, done, log = "", [], []
        while True:
            prop = self._once(ctx, "\n\n".join(t for t in (op.text, said, INSTRUCTIONS) if t))
            done.append(prop)
            log.append(prop.transcript)
            if prop.error or (why := gate.send_back(prop.description, log)) is None:
                break
            said = (f"# Sent back\n\nYour last edit ({prop.description[:200]!r}) was not run: {why}. The files "
                    "still hold that edit: undo it, then make a different one.")
        if len(done) > 1:  # every attempt's spend and output belongs to this proposal
            prop.transcript = "\n\n".join(log)
            prop.tokens_in, prop.tokens_out = sum(p.tokens_in for p in done), sum(p.tokens_out for p in done)
            prop.cost_usd = round(sum(p.cost_usd for p in done), 6)
        prop.meta.update(gate.meta)
        return operators.stamp(prop, op)

    def withdraw(self, meta: dict[str, Any]) -> None:
        """A proposal that will never run (dropped on rebase): its operation may be started again."""
        self._memory.forget(meta)

    def _budget(self, tag: str) -> float | None:
        if self.max_cost is None:
            return None
        spent = self.spent(tag)
        if spent >= self.max_cost:
            raise StopProposing(f"--max-cost ${self.max_cost:g} reached (spent ${spent:.4f})")
        return self.max_cost - spent

    def _once(self, ctx: ProposalContext, instructions: str) -> Proposal:
        budget = self._budget(ctx.tag)
        run_id = uuid.uuid4().hex[:10]
        private = self.track.paths.state / "agent" / run_id  # outside the worktree: the CLI's own files
        private.mkdir(parents=True, exist_ok=True)
        # The log sits beside the folder, not in it: a sandboxed agent can write its folder, not the log.
        prompt_file, log = private / "prompt.md", private.parent / f"{run_id}.log"
        prompt_file.write_text(context.assemble(self.track, ctx.tag, ctx.idea, ctx.workdir, instructions))
        files = context.editable_files(ctx.workdir, self.track.spec.track.editable)
        template = command_for(self.agent_cmd, self.model, budget, self.sandbox)
        flag = self.preset.model_flag if self.preset else "--model"
        command = render(template, prompt_file, ctx.workdir, files, self.model, private, flag)
        env = self.track.base_env()
        for k, v in (self.preset.env if self.preset else {}).items():
            env.setdefault(k, v)
        env[MARKER] = f"{self.track.token}:agent:{run_id}"  # strays are found and killed like runs
        # The prompt goes on stdin only; {prompt_file} is there for CLIs that want a path.
        shell = f"( {command} ) < {shlex.quote(str(prompt_file))}"
        argv: str | list[str] = shell
        if self.sandbox:
            try:
                argv = self._sandboxed(shell, command, ctx.workdir, private, env)
            except SandboxError as e:
                raise FatalProposerError(str(e)) from None
        res = run_process(argv, ctx.workdir, env, timeout=self.timeout, log_path=log, stop=ctx.stop)
        text = strip_ansi(log.read_text(errors="replace")) if log.exists() else ""
        log.write_text(text)
        report = self._report(text, private)
        cost = self._cost(report)
        self._spent_here += cost
        transcript = f"$ {command}\n\n" + context.clip(text, TRANSCRIPT_CHARS, "agent output")
        meta = {"agent_cmd": command, "agent_log": str(log), "agent_dir": str(private),
                "agent_seconds": round(res.wall_seconds, 2), "sandbox": self.sandbox}
        if report.model or self.model:
            meta["model"] = report.model or self.model
        usage = {"tokens_in": report.tokens_in, "tokens_out": report.tokens_out, "cost_usd": cost}
        self._unwrap_commits(ctx)
        changed = self._changed(ctx.workdir)
        error = failure(res, report, text, changed)
        if error:
            return Proposal("", self.name, error=error, transcript=transcript, meta=meta, **usage)
        return Proposal(describe(report, text, changed), self.name, transcript=transcript, meta=meta, **usage)

    def _report(self, text: str, private: Path) -> Report:
        if self.preset is None:
            return Report()
        extra = {}
        if self.preset.name == "aider":
            extra = {k: (private / f).read_text(errors="replace") for k, f in AIDER_FILES.items()
                     if (private / f).is_file()}
        try:
            report = self.preset.parse(text, extra)
        except (ValueError, TypeError, AttributeError, KeyError):
            return Report()  # hostile or odd output: no figures rather than a crashed proposer
        if report.error:
            report.error = " ".join(strip_ansi(report.error).split())[:500]
        return report

    def _sandboxed(self, shell: str, command: str, workdir: Path, private: Path, env: dict[str, str]) -> list[str]:
        home = agent_sandbox.home_of(env)
        preset = self.preset
        home_paths = agent_sandbox.config_paths(home, preset.config, preset.config_env, env) if preset else []
        program = agent_sandbox.first_program(command)
        path_env = env.get("PATH", "")
        readonly: list[Path] = []
        if program:
            readonly += agent_sandbox.install_roots(program, path_env)
        readonly += agent_sandbox.install_roots("node", path_env)  # npm CLIs run on node
        readonly.append(self.track.paths.data)  # public data, as runs see it (never data/heldout)
        top = self._worktree_root(workdir)
        hidden = [self.track.paths.state, self.track.repo.root / ".git"]
        return agent_sandbox.wrap(shell, workdir=workdir, writable=[top, private], readonly=readonly, home=home,
                                  home_paths=home_paths, sealed=[private / "prompt.md"], hidden=hidden)

    def _worktree_root(self, workdir: Path) -> Path:
        for p in [workdir, *workdir.parents]:
            if (p / ".git").exists():
                return p
        return workdir

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
