"""`overnight init`: write a spec and a program for a repo, detecting a Karpathy-style autoresearch checkout."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
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


def spec_text(plan: InitPlan) -> str:
    lines = [
        "# overnight track spec: see the README's spec reference for every key.",
        "[track]",
        f'name = "{plan.name}"',
        f"editable = {plan.editable!r}".replace("'", '"') + "  # globs a candidate may change; all else is frozen",
    ]
    if plan.prepare:
        lines += ["", "[prepare]", f'command = "{plan.prepare}"  # trusted, once, before the baseline']
    lines += [
        "", "[run]", f'command = "{plan.command}"',
        f"budget_seconds = {plan.budget:g}  # the fixed budget the script honours (OVERNIGHT_BUDGET_SECONDS)",
        f"timeout_seconds = {plan.timeout:g}  # hard kill of the whole process tree",
    ]
    if plan.smoke:
        lines.append(f'smoke_command = "{plan.smoke}"')
    lines += ["", "[metric]", f'name = "{plan.metric}"  # parsed from the last `{plan.metric}: <float>` line',
              f'direction = "{plan.direction}"', ""]
    return "\n".join(lines)


def program_text(plan: InitPlan) -> str:
    template = resources.files("overnight").joinpath("track/templates/program.md").read_text()
    goal = "low" if plan.direction == "minimize" else "high"
    editable = "\n".join(f"- `{g}`" for g in plan.editable)
    return template.format(name=plan.name, metric=plan.metric, goal=goal, direction=plan.direction,
                           budget=f"{plan.budget:g}", editable=editable)


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
