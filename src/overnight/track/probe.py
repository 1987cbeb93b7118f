"""`overnight init --probe`: run the prepare step and one run the way the loop would, to read
the metric off the output and time the budget."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from overnight.execution.process import run_process
from overnight.git.repo import RepoError, find_root, git
from overnight.track import inputs as I

STATE = ".overnight"


class ProbeError(Exception):
    """The probe could not run; one line naming the step and its log."""


@dataclass
class Probe:
    output: str
    wall_seconds: float
    exit_code: int | None
    timed_out: bool
    log: Path


def _state(track_dir: Path) -> Path:
    state = track_dir / STATE
    state.mkdir(exist_ok=True)
    if not (state / ".gitignore").exists():
        (state / ".gitignore").write_text("# overnight's state: never committed\n*\n")
    return state


def _env(track_dir: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OVERNIGHT_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
    env.update(OVERNIGHT_DATA=str(_state(track_dir) / "data" / "public"), PYTHONUNBUFFERED="1", **extra)
    return env


def prepare(track_dir: Path, command: str, timeout: float = 1800) -> Path:
    """Run the prepare command in the track folder (the loop does the same before its baseline)."""
    log = _state(track_dir) / "prepare.log"
    res = run_process(command, track_dir, _env(track_dir, {}), timeout=timeout, log_path=log)
    if res.exit_code != 0 or res.timed_out:
        last = res.tail.strip().splitlines()[-1:] or [""]
        why = "timed out" if res.timed_out else f"exit {res.exit_code}"
        raise ProbeError(f"[prepare] `{command}` failed ({why}: {last[0][:200]}); full log: {log}")
    return log


def run(track_dir: Path, command: str, input_globs: list[str], env: dict[str, str], timeout: float) -> Probe:
    """One run of `command` in a fresh worktree of HEAD with the inputs linked (in place without git history)."""
    state = _state(track_dir)
    log = state / "probe.log"
    tmp = Path(tempfile.mkdtemp(prefix="overnight-probe-"))
    worktree = tmp / "wt"
    root = None
    try:
        try:
            root = find_root(track_dir)
            git(root, "-c", "core.hooksPath=/dev/null", "worktree", "add", "-q", "--detach", str(worktree), "HEAD")
            workdir = worktree / track_dir.relative_to(root)
        except (RepoError, ValueError):
            root, workdir = None, track_dir  # no commit yet: run where the files are
        try:
            found = I.resolve(track_dir, input_globs, root)
            if root is not None:
                I.link(track_dir, found, workdir)
        except I.InputsError as e:
            raise ProbeError(str(e)) from None
        artifacts = tmp / "artifacts"
        artifacts.mkdir()
        res = run_process(command, workdir, _env(track_dir, {"OVERNIGHT_ARTIFACTS": str(artifacts),
                                                             "OVERNIGHT_SEED": "0", **env}),
                          timeout=timeout, log_path=log)
        return Probe(log.read_text(errors="replace"), res.wall_seconds, res.exit_code, res.timed_out, log)
    finally:
        if root is not None:
            git(root, "worktree", "remove", "--force", str(worktree), check=False)
            git(root, "worktree", "prune", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
