"""The built-in agent's tools, written for the model as their user.

Every error says what went wrong and what to do instead, in one or two lines,
because the model reads it as its next instruction. Paths are relative to the
track folder (absolute paths inside it work too).
"""

from __future__ import annotations

import re
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overnight.execution.process import MARKER, run_process
from overnight.execution.runner import caps, sandboxed
from overnight.git.repo import matches_any

if TYPE_CHECKING:
    from overnight.track import Track

VIEW_LINES = 400
RESULT_CHARS = 12_000
SEARCH_HITS = 60
SKIP_DIRS = {".git", ".overnight", "__pycache__", ".venv", "node_modules", ".mypy_cache", ".pytest_cache"}


class ToolError(Exception):
    """A mistake the model can fix; the message is its teaching error."""


def _schema(props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


_S = {"type": "string"}
_I = {"type": "integer"}
TOOLS: list[dict[str, Any]] = [
    {"name": "view", "description": "Show a file with line numbers, or a directory two levels deep. "
     "Paths are relative to the track folder. Example: {\"path\": \"train.py\", \"start_line\": 1, \"end_line\": 80}",
     "parameters": _schema({"path": {**_S, "description": "file or directory, e.g. \"train.py\" or \".\""},
                            "start_line": {**_I, "description": "first line (1-based), optional"},
                            "end_line": {**_I, "description": "last line, optional"}}, ["path"])},
    {"name": "str_replace", "description": "Replace one exact, unique occurrence of old_str with new_str in an "
     "editable file. Copy old_str from `view` output without the line numbers, whitespace included; add "
     "surrounding lines if it is not unique. A Python syntax error is reported and the edit is not applied. "
     "Example: {\"path\": \"train.py\", \"old_str\": \"LR = 0.01\", \"new_str\": \"LR = 0.02\"}",
     "parameters": _schema({"path": _S, "old_str": _S, "new_str": _S}, ["path", "old_str", "new_str"])},
    {"name": "create", "description": "Write a whole file (new or replacing an existing one). Only paths that "
     "match the track's editable globs are allowed. Example: {\"path\": \"model.py\", \"content\": \"...\"}",
     "parameters": _schema({"path": _S, "content": _S}, ["path", "content"])},
    {"name": "search", "description": "Search files for a regular expression (like grep -n). Returns "
     "path:line: text. Example: {\"pattern\": \"def forward\", \"path\": \".\"}",
     "parameters": _schema({"pattern": _S, "path": {**_S, "description": "file or folder, default \".\""}},
                           ["pattern"])},
    {"name": "smoke", "description": "Run the track's quick smoke check on your edited files and return the "
     "exit code and the last lines of output. It does not measure the metric; the harness does that after finish.",
     "parameters": _schema({}, [])},
    {"name": "note", "description": "Save a short lesson to the track's memory notes, which every future "
     "agent reads. Example: {\"text\": \"LR above 0.05 diverges with warmup < 100\"}",
     "parameters": _schema({"text": _S}, ["text"])},
    {"name": "add_idea", "description": "Queue a follow-up idea for a later experiment (one hypothesis, one "
     "sentence). Example: {\"text\": \"try cosine decay to 10% of the peak LR\"}",
     "parameters": _schema({"text": _S}, ["text"])},
    {"name": "finish", "description": "End this proposal. The harness then commits your edits, runs the "
     "experiment and decides. Example: {\"description\": \"raise LR to 0.02 with 200 warmup steps\"}",
     "parameters": _schema({"description": {**_S, "description": "one line saying what you changed"}},
                           ["description"])},
]


def python_error(path: Path, text: str) -> str | None:
    if path.suffix != ".py":
        return None
    try:
        compile(text, str(path.name), "exec", dont_inherit=True)
    except SyntaxError as e:
        where = f"line {e.lineno}" + (f", column {e.offset}" if e.offset else "")
        src = (e.text or "").rstrip()
        return f"{e.msg} at {where}" + (f": {src.strip()}" if src else "")
    except ValueError as e:  # null bytes and the like
        return str(e)
    return None


@dataclass
class Toolbox:
    track: Track
    workdir: Path
    source: str = "llm"
    smoke_timeout: float = 60.0
    stop: threading.Event | None = None
    finished: str | None = None  # the finish description, once called
    edits: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.workdir = self.workdir.resolve()

    # --- dispatch ---------------------------------------------------------------------------------
    def call(self, name: str, args: dict[str, Any]) -> tuple[str, bool]:
        """Run a tool; returns (text for the model, is_error)."""
        fn = getattr(self, f"t_{name}", None)
        if fn is None:
            names = ", ".join(t["name"] for t in TOOLS)
            return f"error: there is no tool {name!r}; the tools are {names}", True
        if not isinstance(args, dict):
            return f"error: {name} takes a JSON object of arguments, got {type(args).__name__}", True
        try:
            return _cap(fn(**args)), False
        except TypeError as e:
            spec = next(t for t in TOOLS if t["name"] == name)["parameters"]
            return (f"error: bad arguments for {name} ({e}); it takes {', '.join(spec['properties']) or 'none'}, "
                    f"required: {', '.join(spec['required']) or 'none'}"), True
        except ToolError as e:
            return f"error: {e}", True

    # --- paths ------------------------------------------------------------------------------------
    def resolve(self, path: str) -> tuple[Path, str]:
        if not isinstance(path, str) or not path.strip():
            raise ToolError("`path` must be a non-empty string such as \"train.py\"")
        p = Path(path.strip())
        full = (p if p.is_absolute() else self.workdir / p).resolve()
        if not full.is_relative_to(self.workdir):
            raise ToolError(f"{path} is outside the track folder; use a path relative to it, e.g. \"train.py\"")
        rel = full.relative_to(self.workdir).as_posix()
        if any(part in SKIP_DIRS for part in Path(rel).parts):
            raise ToolError(f"{path} is harness or git state, not part of the code")
        return full, rel or "."

    def editable(self, rel: str) -> None:
        globs = self.track.spec.track.editable
        if not matches_any(rel, globs):
            raise ToolError(f"{rel} is frozen; you may only change files matching {', '.join(globs)}")

    # --- tools ------------------------------------------------------------------------------------
    def t_view(self, path: str, start_line: int | None = None, end_line: int | None = None) -> str:
        full, rel = self.resolve(path)
        if full.is_dir():
            return self._tree(full, rel)
        if not full.exists():
            raise ToolError(f"{rel} does not exist; view \".\" to list the files")
        text = full.read_text(errors="replace")
        lines = text.splitlines()
        start = max(1, int(start_line or 1))
        end = min(len(lines), int(end_line or start + VIEW_LINES - 1))
        if start > max(len(lines), 1):
            raise ToolError(f"{rel} has only {len(lines)} lines")
        end = min(end, start + VIEW_LINES - 1)
        body = "\n".join(f"{i:6}\t{lines[i - 1]}" for i in range(start, end + 1))
        more = f"\n[lines {end + 1}-{len(lines)} not shown: pass start_line={end + 1}]" if end < len(lines) else ""
        return f"{rel} ({len(lines)} lines)\n{body}{more}"

    def _tree(self, full: Path, rel: str) -> str:
        out = [f"{rel}/"]
        for p in sorted(full.iterdir()):
            if p.name in SKIP_DIRS:
                continue
            out.append(f"  {p.name}{'/' if p.is_dir() else ''}")
            if p.is_dir():
                kids = [c for c in sorted(p.iterdir()) if c.name not in SKIP_DIRS]
                out += [f"    {c.name}{'/' if c.is_dir() else ''}" for c in kids[:50]]
                if len(kids) > 50:
                    out.append(f"    … {len(kids) - 50} more")
        return "\n".join(out)

    def t_str_replace(self, path: str, old_str: str, new_str: str) -> str:
        full, rel = self.resolve(path)
        self.editable(rel)
        if not full.is_file():
            raise ToolError(f"{rel} does not exist; use create to write a new file")
        if old_str == "":
            raise ToolError("old_str is empty; copy the exact text to replace from `view` output")
        text = full.read_text()
        n = text.count(old_str)
        if n == 0:
            hint = ""
            first = old_str.strip().splitlines()[0].strip() if old_str.strip() else ""
            near = [i + 1 for i, line in enumerate(text.splitlines()) if first and first in line]
            if near:
                hint = f" (its first line appears at line {', '.join(map(str, near[:5]))}: check whitespace)"
            raise ToolError(f"old_str not found in {rel}{hint}; view the file and copy the text exactly, "
                            "without line numbers")
        if n > 1:
            at = [text[: m.start()].count("\n") + 1 for m in re.finditer(re.escape(old_str), text)]
            raise ToolError(f"old_str appears {n} times in {rel} (lines {', '.join(map(str, at[:10]))}); "
                            "include more surrounding lines so it is unique")
        new = text.replace(old_str, new_str, 1)
        err = python_error(full, new)
        if err and not python_error(full, text):
            raise ToolError(f"edit not applied: {rel} would not be valid Python: {err}. Fix new_str and retry")
        full.write_text(new)
        self.edits.append(rel)
        line = text[: text.index(old_str)].count("\n") + 1
        return f"edited {rel} at line {line}" + (f" (warning: the file still has a syntax error: {err})" if err else "")

    def t_create(self, path: str, content: str) -> str:
        full, rel = self.resolve(path)
        self.editable(rel)
        if full.is_dir():
            raise ToolError(f"{rel} is a directory")
        err = python_error(full, content)
        if err:
            raise ToolError(f"file not written: {rel} would not be valid Python: {err}")
        existed = full.exists()
        full.parent.mkdir(parents=True, exist_ok=True)
        full.write_text(content)
        self.edits.append(rel)
        return f"{'overwrote' if existed else 'created'} {rel} ({len(content.splitlines())} lines)"

    def t_search(self, pattern: str, path: str = ".") -> str:
        full, rel = self.resolve(path)
        try:
            rx = re.compile(pattern)
        except re.error:
            rx = re.compile(re.escape(pattern))  # a literal search is what the model meant
        files = [full] if full.is_file() else sorted(
            p for p in full.rglob("*") if p.is_file() and not any(s in SKIP_DIRS for s in p.relative_to(full).parts))
        hits: list[str] = []
        for f in files:
            try:
                if f.stat().st_size > 2_000_000:
                    continue
                lines = f.read_text(errors="strict").splitlines()
            except (UnicodeDecodeError, OSError):
                continue
            r = f.relative_to(self.workdir).as_posix()
            hits += [f"{r}:{i}: {line.strip()[:200]}" for i, line in enumerate(lines, 1) if rx.search(line)]
            if len(hits) > SEARCH_HITS:
                break
        if not hits:
            return f"no match for {pattern!r} in {rel}"
        more = f"\n[more than {SEARCH_HITS} matches: narrow the pattern or the path]" if len(hits) > SEARCH_HITS else ""
        return "\n".join(hits[:SEARCH_HITS]) + more

    def t_smoke(self) -> str:
        cmd = self.track.spec.run.smoke_command
        if not cmd:
            return "this track has no smoke_command; call finish and the harness runs the full experiment"
        with tempfile.TemporaryDirectory(prefix="overnight-smoke-") as tmp:
            from overnight.track.inputs import InputsError, link  # the smoke check sees the runs' inputs

            try:
                inputs = self.track.inputs()
                link(self.track.dir, inputs, self.workdir)
            except InputsError as e:
                return f"smoke check cannot run: {e}"
            env = self.track.base_env()
            env.update(OVERNIGHT_BUDGET_SECONDS=f"{min(self.track.spec.run.budget_seconds, self.smoke_timeout):g}",
                       OVERNIGHT_ARTIFACTS=str(Path(tmp) / "artifacts"), OVERNIGHT_SEED="0", OVERNIGHT_SMOKE="1",
                       **{MARKER: f"{self.track.token}:smoke:"})
            artifacts = Path(tmp) / "artifacts"
            artifacts.mkdir()
            # The agent's code runs like a run: in the sandbox when the track asks, env by allow-list.
            command, env = sandboxed(self.track, cmd, self.workdir, artifacts, env, inputs)
            res = run_process(command, self.workdir, env, timeout=self.smoke_timeout,
                              log_path=Path(tmp) / "smoke.log", log_cap_bytes=2**20, stop=self.stop,
                              caps=caps(self.track))
        tail = "\n".join(res.tail.splitlines()[-40:])
        if res.timed_out:
            return f"smoke check timed out after {self.smoke_timeout:g}s; last output:\n{tail}"
        return f"smoke check exited with {res.exit_code} in {res.wall_seconds:.1f}s; last output:\n{tail}"

    def t_note(self, text: str) -> str:
        if not text.strip():
            raise ToolError("the note is empty; write one lesson in a sentence")
        self.track.ledger.add_note(text[:2000], source=self.source)
        return "noted; future agents will read it"

    def t_add_idea(self, text: str) -> str:
        if not text.strip():
            raise ToolError("the idea is empty; write one hypothesis in a sentence")
        idea = self.track.ledger.add_idea(text[:2000], source=self.source)
        return f"queued idea #{idea.id}"

    def t_finish(self, description: str) -> str:
        desc = " ".join(str(description).split())
        if not desc:
            raise ToolError("description is empty; say in one line what you changed")
        self.finished = desc[:300]
        return "finished"


def _cap(text: str) -> str:
    if len(text) <= RESULT_CHARS:
        return text
    return text[:RESULT_CHARS] + f"\n[output truncated: {len(text) - RESULT_CHARS} more characters]"
