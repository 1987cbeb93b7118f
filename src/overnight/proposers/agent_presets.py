"""The shipped coding-agent CLI presets and what each CLI's structured output means.

A preset is the exact command, the environment it needs, where the CLI keeps its own
config (for the sandbox), and a parser that reads tokens, cost, the final text and the
error from what the CLI printed. Versions checked are in docs/agents.md.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# CSI (colours, cursor), OSC (titles, links) and lone escapes; what a terminal would not show.
ANSI_RE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]|\r(?!\n)")
DESC_RE = re.compile(r"DESCRIPTION:[*_`\s]*(.+?)[*_`\s]*$", re.MULTILINE | re.IGNORECASE)
PLACEHOLDER = "<one line saying what you changed>"  # the instruction's own text is not a description
ERROR_START = re.compile(r"^\W*(error|fatal|panic)\b", re.IGNORECASE)
RAISED = re.compile(r"^[\w.]*(Error|Exception)\b:")  # the last line of a traceback
ERROR_WORD = re.compile(r"\b(error|fatal|failed|failure|exception|denied|unauthori[sz]ed|forbidden|invalid|"
                        r"not found|no such|refused|cannot|can't|unable)\b", re.IGNORECASE)
USAGE_LINE = re.compile(r"^\s*(usage:|for more information|options:|-{1,2}[\w-]+\b.*\s{2,})", re.IGNORECASE)


@dataclass
class Report:
    """What a CLI said about its own run; None where it said nothing."""

    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: float | None = None
    model: str | None = None
    text: str | None = None  # the agent's final answer
    error: str | None = None
    found: bool = False  # the structured output was there at all


@dataclass(frozen=True)
class Preset:
    name: str
    command: str  # shell template; see docs/agents.md for the placeholders
    model_flag: str  # appended with the shell-quoted --model, when one is given
    parse: Callable[[str, dict[str, str]], Report]
    env: dict[str, str] = field(default_factory=dict)  # set unless the user's environment sets them
    config: tuple[str, ...] = ()  # the CLI's own folders/files under $HOME, writable in the sandbox
    config_env: tuple[str, ...] = ()  # environment variables that move them
    budget_flag: str = ""  # takes the dollars left under --max-cost
    sandboxed: str = ""  # the command inside overnight's sandbox, where the CLI's own one cannot nest


def strip_ansi(text: str) -> str:
    return ANSI_RE.sub("", text)


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` that is a JSON object (CLIs mix them with plain log lines)."""
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict):
                out.append(obj)
    return out


def json_objects(text: str) -> list[dict[str, Any]]:
    """Pretty-printed JSON objects that start at a line's beginning (gemini -o json)."""
    out, dec = [], json.JSONDecoder()
    text = text[-4_000_000:]  # the result is at the end; a flood of `{` lines stays linear enough
    for m in re.finditer(r"^\{", text, re.MULTILINE):
        try:
            obj, _ = dec.raw_decode(text, m.start())
        except ValueError:
            continue
        if isinstance(obj, dict):
            out.append(obj)
    return out


def _int(v: Any) -> int:
    """A count from hostile output: a non-negative int, else 0."""
    try:
        return max(0, int(v or 0))
    except (TypeError, ValueError, OverflowError):
        return 0


def _usd(v: Any) -> float:
    """Dollars from hostile output: finite and non-negative, else 0."""
    try:
        f = float(v or 0.0)
    except (TypeError, ValueError):
        return 0.0
    return f if math.isfinite(f) and f > 0 else 0.0


CLAUDE_STOPS = {"error_max_budget_usd": "claude stopped at --max-budget-usd (what was left of --max-cost)",
                "error_max_turns": "claude stopped at its turn limit",
                "error_during_execution": "claude failed during execution"}


def parse_claude(text: str, files: dict[str, str]) -> Report:
    """`--output-format stream-json --verbose`: the last `result` event has cost, usage and the answer."""
    r = Report()
    for ev in json_lines(text):
        if ev.get("type") == "system" and ev.get("model"):
            r.model = str(ev["model"])
        if ev.get("type") != "result":
            continue
        r.found = True
        usage = ev.get("modelUsage") or {}
        if usage:  # per model, side calls (a small model for titles) included
            r.tokens_in = sum(_int(u.get("inputTokens")) + _int(u.get("cacheReadInputTokens"))
                              + _int(u.get("cacheCreationInputTokens")) for u in usage.values())
            r.tokens_out = sum(_int(u.get("outputTokens")) for u in usage.values())
        else:
            u = ev.get("usage") or {}
            r.tokens_in = _int(u.get("input_tokens")) + _int(u.get("cache_read_input_tokens")) + \
                _int(u.get("cache_creation_input_tokens"))
            r.tokens_out = _int(u.get("output_tokens"))
        if ev.get("total_cost_usd") is not None:
            r.cost_usd = _usd(ev["total_cost_usd"])
        result = ev.get("result")
        if ev.get("is_error") or ev.get("subtype", "success") != "success":
            subtype = str(ev.get("subtype") or "")
            errors = ev.get("errors") if isinstance(ev.get("errors"), list) else []
            r.error = str(result or "; ".join(map(str, errors)) or CLAUDE_STOPS.get(subtype, subtype)
                          or "claude reported an error")
        else:
            r.text = str(result or "")
    return r


def parse_codex(text: str, files: dict[str, str]) -> Report:
    """`codex exec --json`: usage on each `turn.completed`, answers in `agent_message` items."""
    r = Report()
    for ev in json_lines(text):
        kind = ev.get("type")
        if kind == "turn.completed":
            r.found = True
            u = ev.get("usage") or {}
            r.tokens_in += _int(u.get("input_tokens"))  # cached input is a part of it
            r.tokens_out += _int(u.get("output_tokens"))
        elif kind == "item.completed" and (ev.get("item") or {}).get("type") == "agent_message":
            r.found = True
            r.text = str(ev["item"].get("text") or "")
        elif kind == "turn.failed":
            r.found = True
            r.error = str((ev.get("error") or {}).get("message") or "codex turn failed")
        elif kind == "error" and not str(ev.get("message", "")).startswith("Reconnecting"):
            r.error = str(ev.get("message") or "codex error")
    return r


def parse_gemini(text: str, files: dict[str, str]) -> Report:
    """`gemini -o json`: one object with `response`, `stats.models.*.tokens` and maybe `error`."""
    r = Report()
    for obj in json_objects(text):
        if "response" not in obj and "stats" not in obj and "error" not in obj:
            continue
        r.found = True
        models = ((obj.get("stats") or {}).get("models") or {})
        if models:
            r.model = next(iter(models))
            r.tokens_in = sum(_int((m.get("tokens") or {}).get("prompt")) for m in models.values())
            r.tokens_out = sum(_int((m.get("tokens") or {}).get("candidates")) + _int(
                (m.get("tokens") or {}).get("thoughts")) for m in models.values())
        if obj.get("response") is not None:
            r.text = str(obj["response"])
        if isinstance(obj.get("error"), dict):
            r.error = str(obj["error"].get("message") or obj["error"])
    return r


def parse_opencode(text: str, files: dict[str, str]) -> Report:
    """`opencode run --format json`: tokens and cost on every `step_finish`, text parts, errors."""
    r = Report()
    texts: list[str] = []
    for ev in json_lines(text):
        kind, part = ev.get("type"), ev.get("part") or {}
        if kind == "step_finish":
            r.found = True
            t = part.get("tokens") or {}
            cache = t.get("cache") or {}
            r.tokens_in += _int(t.get("input")) + _int(cache.get("read")) + _int(cache.get("write"))
            r.tokens_out += _int(t.get("output")) + _int(t.get("reasoning"))
            r.cost_usd = (r.cost_usd or 0.0) + _usd(part.get("cost"))
        elif kind == "text" and part.get("text"):
            r.found = True
            texts.append(str(part["text"]))
        elif kind == "error":
            r.found = True
            err = ev.get("error") or {}
            data = err.get("data") or {} if isinstance(err, dict) else {}
            r.error = str(data.get("message") or (err.get("name") if isinstance(err, dict) else err) or "error")
    if texts:
        r.text = texts[-1]
    return r


def parse_aider(text: str, files: dict[str, str]) -> Report:
    """aider's `--analytics-log`: exact tokens and cost per `message_send`; the chat log has the answer."""
    r = Report()
    for ev in json_lines(files.get("analytics", "")):
        if ev.get("event") == "message_send":
            r.found = True
            p = ev.get("properties") or {}
            r.tokens_in += _int(p.get("prompt_tokens"))
            r.tokens_out += _int(p.get("completion_tokens"))
            r.cost_usd = (r.cost_usd or 0.0) + _usd(p.get("cost"))
    history = files.get("history", "")
    if history:  # the assistant's words, unwrapped (the terminal output may wrap or merge lines)
        replies = [b for b in re.split(r"^#### .*$", history, flags=re.MULTILINE) if b.strip()]
        r.text = replies[-1] if replies else None
    return r


def parse_none(text: str, files: dict[str, str]) -> Report:
    return Report()


AIDER_FILES = {"analytics": "aider.analytics.jsonl", "history": "aider.chat.history.md"}

PRESET_LIST = [
    Preset("claude", "claude -p --permission-mode acceptEdits --output-format stream-json --verbose",
           "--model", parse_claude, config=(".claude", ".claude.json", ".config/claude"),
           config_env=("CLAUDE_CONFIG_DIR",), budget_flag="--max-budget-usd"),
    # workspace-write: codex's own sandbox lets it edit the worktree (its default is read-only); inside
    # overnight's bubblewrap its sandbox cannot nest, and the bypass is what codex documents for that.
    Preset("codex", "codex exec --json --color never --sandbox workspace-write --skip-git-repo-check",
           "--model", parse_codex, config=(".codex",), config_env=("CODEX_HOME",),
           sandboxed="codex exec --json --color never --dangerously-bypass-approvals-and-sandbox "
                     "--skip-git-repo-check"),
    Preset("aider", "aider --message-file {prompt_file} --yes-always --no-auto-commits --no-git --no-pretty "
           "--no-stream --no-check-update --no-show-model-warnings --no-show-release-notes --no-suggest-shell-commands --no-analytics "
           "--analytics-log {private}/aider.analytics.jsonl --chat-history-file {private}/aider.chat.history.md "
           "--input-history-file {private}/aider.input.history {model_opt} {editable}",
           "--model", parse_aider, env={"LITELLM_LOCAL_MODEL_COST_MAP": "True"},
           config=(".aider", ".aider.conf.yml", ".aider.model.settings.yml", ".aider.model.metadata.json")),
    Preset("opencode", "opencode run --format json", "--model", parse_opencode,
           config=(".config/opencode", ".local/share/opencode", ".local/state/opencode", ".cache/opencode"),
           config_env=("OPENCODE_CONFIG",)),
    # Every worktree is a new folder: trust it, or gemini exits 55 in headless mode.
    Preset("gemini", "gemini -o json --approval-mode auto_edit", "--model", parse_gemini,
           env={"GEMINI_CLI_TRUST_WORKSPACE": "true"}, config=(".gemini",), config_env=("GEMINI_CLI_HOME",)),
]
PRESETS: dict[str, Preset] = {p.name: p for p in PRESET_LIST}


def describe(report: Report, log: str, changed: list[str]) -> str:
    """The agent's `DESCRIPTION:` line (its final answer first, then its output), else the files."""
    for text in (report.text, log):
        found = [d for d in DESC_RE.findall(strip_ansi(text or "")) if PLACEHOLDER not in d]
        if found:
            return found[-1].strip()[:300]
    return f"agent edit: {', '.join(changed[:5])}" if changed else "agent made no change"


def error_line(log: str) -> str:
    """The line that says what went wrong: an `error:` line, else one naming a failure, else the last."""
    lines = [ln.strip() for ln in strip_ansi(log).splitlines() if ln.strip()]
    lines = [ln for ln in lines if not USAGE_LINE.match(ln)]
    for pattern in (ERROR_START, RAISED, ERROR_WORD):
        hits = [ln for ln in lines if pattern.search(ln)]
        if hits:
            return hits[-1][:500]
    return lines[-1][:500] if lines else "(no output)"
