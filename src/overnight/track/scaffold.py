"""`overnight init`: write a spec and a program for a repo, detecting a Karpathy-style autoresearch checkout."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from overnight.core.spec import PROGRAM_FILE, SPEC_FILE
from overnight.git.repo import git


class InitError(Exception):
    pass


@dataclass
class InitPlan:
    name: str
    editable: list[str]
    command: str
    metric: str
    direction: str = "minimize"
    budget: float = 300
    timeout: float = 600
    prepare: str | None = None
    smoke: str | None = None
    inputs: list[str] = field(default_factory=list)
    pattern: str | None = None
    budget_steps: int | None = None
    search: list[tuple[str, str, object, dict]] = field(default_factory=list)  # file, name, current value, range
    not_searched: list[str] = field(default_factory=list)
    budget_note: list[str] = field(default_factory=list)  # how this script honours the budget, for the spec


def is_autoresearch(path: Path) -> bool:
    return all((path / f).is_file() for f in ("train.py", "prepare.py", "program.md")) and "val_bpb" in (
        path / "train.py"
    ).read_text(errors="replace")


def autoresearch_plan(path: Path) -> InitPlan:
    py = "uv run" if shutil.which("uv") and (path / "pyproject.toml").exists() else "python"
    return InitPlan(name=_name(path), editable=["train.py"], command=f"{py} train.py", metric="val_bpb",
                    budget=300, timeout=600, prepare=f"{py} prepare.py")


def _name(path: Path) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in path.resolve().name).strip("-.")
    return cleaned or "track"


def _toml(value: object) -> str:
    """A TOML value; regexes as literal strings so their backslashes stay as written."""
    if isinstance(value, str) and "'" not in value and "\n" not in value and "\\" in value:
        return f"'{value}'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.4g}" if "e" not in f"{value:.4g}" else repr(float(f"{value:.4g}"))
    return json.dumps(value)  # JSON strings, numbers and lists are valid TOML


def spec_text(plan: InitPlan) -> str:
    lines = [
        "# overnight track spec: see the README's spec reference for every key.",
        "[track]",
        f"name = {_toml(plan.name)}",
        f"editable = {_toml(plan.editable)}  # globs a candidate may change; all else is frozen",
    ]
    if plan.inputs:
        lines.append(f"inputs = {_toml(plan.inputs)}  # files git ignores that runs read: linked read-only into each run")
    if plan.prepare:
        lines += ["", "[prepare]", f"command = {_toml(plan.prepare)}  # trusted, once, before the baseline"]
    lines += ["", "[run]",
              "# Commands run through /bin/sh in a fresh git worktree: $VARS expand, && and > work.",
              *[f"# {n}" for n in plan.budget_note],
              f"command = {_toml(plan.command)}"]
    if plan.budget_steps is not None:
        lines += [f"budget_steps = {plan.budget_steps}  # fixed work per run (OVERNIGHT_BUDGET_STEPS): load changes "
                  "the time a run takes, not its result",
                  f"budget_seconds = {plan.budget:g}  # about how long a run takes here; sizes the timeout"]
    else:
        lines.append(f"budget_seconds = {plan.budget:g}  # OVERNIGHT_BUDGET_SECONDS: wall time the script stops at")
    lines.append(f"timeout_seconds = {plan.timeout:g}  # hard kill of the whole process tree")
    if plan.smoke:
        lines.append(f"smoke_command = {_toml(plan.smoke)}")
    lines += ["", "[metric]"]
    if plan.pattern:
        lines += [f"name = {_toml(plan.metric)}",
                  f"pattern = {_toml(plan.pattern)}  # one (group); the last match in the output counts"]
    else:
        lines.append(f"name = {_toml(plan.metric)}  # parsed from the last `{plan.metric}: <float>` line")
    lines += [f"direction = {_toml(plan.direction)}", ""]
    if plan.search:
        lines += ["# [[search]]: constants of the editable files the optuna proposer tunes, in ranges around",
                  "# their current values. Edit the ranges, delete what should stay fixed."]
    for file, name, current, rng in plan.search:
        lines += ["[[search]]", f"file = {_toml(file)}", f"name = {_toml(name)}  # now {_toml(current)}"]
        lines += [f"{k} = {_toml(v)}" for k, v in rng.items()]
        lines.append("")
    if plan.not_searched:
        lines.append("# not searched (strings, budget and logging knobs): " + ", ".join(plan.not_searched))
    return "\n".join(lines) + "\n"


def program_text(plan: InitPlan) -> str:
    template = resources.files("overnight").joinpath("track/templates/program.md").read_text()
    goal = "low" if plan.direction == "minimize" else "high"
    editable = "\n".join(f"- `{g}`" for g in plan.editable)
    if plan.budget_steps is not None:
        budget = (f"Each run does the same fixed amount of work ({plan.budget_steps} steps), so a change is\n"
                  "better only if it gets more out of the same steps: better ideas, not more steps.")
    else:
        budget = (f"Each run gets the same fixed time budget ({plan.budget:g} seconds), so a change is better\n"
                  "only if it gets more out of the same time: better ideas, not longer runs.")
    return template.format(name=plan.name, metric=plan.metric, goal=goal, direction=plan.direction,
                           budget=budget, editable=editable)


def init(path: Path, plan: InitPlan | None, from_autoresearch: bool = False, force: bool = False) -> list[Path]:
    """Write overnight.toml (and program.md when missing); returns what was written."""
    path = path.resolve()
    if not path.is_dir():
        raise InitError(f"{path}: no such folder")
    if from_autoresearch:
        if not is_autoresearch(path):
            raise InitError(f"{path}: not an autoresearch checkout (needs train.py printing val_bpb, prepare.py, program.md)")
        plan = autoresearch_plan(path)
    assert plan is not None
    for g in plan.editable:
        if not any(path.glob(g)):
            raise InitError(f"{path}: editable glob {g!r} matches no file; pass --editable with an existing file")
    spec = path / SPEC_FILE
    if spec.exists() and not force:
        raise InitError(f"{spec} exists; pass --force to overwrite it")
    written = [spec]
    spec.write_text(spec_text(plan))
    program = path / PROGRAM_FILE
    if not program.exists():
        program.write_text(program_text(plan))
        written.append(program)
    if not (path / ".git").exists() and git(path, "rev-parse", "--show-toplevel", check=False).strip() == "":
        git(path, "init", "-q")
        git(path, "add", "-A")
        git(path, "commit", "-q", "-m", "overnight init")
    return written
