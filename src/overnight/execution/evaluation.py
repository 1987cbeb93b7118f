"""The trusted evaluator's own sandbox profile, and what it is given to read.

The evaluator runs from the pristine trusted checkout (reset before every evaluation, under a
lock shared by every process of the track), on a sanitised copy of the run's artifacts (regular
files only, see artifacts.py), after the candidate's worktree was reset to its commit. With a
sandbox it sees, read-only: its own checkout, the held-out and public data, the artifact copy
and the candidate's worktree; it writes only a scratch folder and its private /tmp; it has no
network and an allow-listed environment, so whatever candidate code it starts (an evaluator
that imports the candidate's module) can neither write the trusted copy nor reach anything.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from overnight.execution.artifacts import sanitized_copy
from overnight.execution.limits import Caps
from overnight.execution.process import MARKER, ProcessResult, run_process
from overnight.git.repo import remove_tree
from overnight.track import inputs as I

if TYPE_CHECKING:
    from overnight.track import Track

_thread_lock = threading.Lock()  # flock is per open file: threads of one process also take this


@contextlib.contextmanager
def trusted_lock(track: Track) -> Iterator[None]:
    """Held while the trusted checkout is checked and reset (slots and Ray workers share it)."""
    track.paths.state.mkdir(parents=True, exist_ok=True)
    with _thread_lock, open(track.paths.state / "trusted.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def eval_seed(track: Track, seed: int) -> int:
    """The evaluator's own seed: fixed per run seed (paired comparisons stay paired), unknown to the run,
    which is given `seed` and can read the evaluator's source, so could regenerate what it draws from it."""
    key_file = track.paths.state / "eval.key"  # under .overnight: no sandbox shows it
    try:
        key = key_file.read_bytes()
    except FileNotFoundError:
        with contextlib.suppress(FileExistsError):
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(os.urandom(32).hex().encode())
        key = key_file.read_bytes()
    return int.from_bytes(hashlib.sha256(key + b":" + str(seed).encode()).digest()[:4], "big") % 2**31


def private_paths(track: Track) -> list[Path]:
    """What no sandbox may show whole: the track's repository (its `.overnight` state) and its git dir."""
    return [track.repo.root, track.paths.state, track.repo.common]


def pristine_trusted(track: Track, inputs: list[Path]) -> Path:
    """The trusted checkout's track folder, reset to its commit when anything in it changed, with the
    track's input links (the only thing allowed there besides the commit's files)."""
    trusted = track.paths.trusted
    repo = track.repo
    workdir = repo.workdir(trusted)
    links = {(Path(repo.rel) / rel).as_posix() if repo.rel else rel.as_posix() for rel in inputs}
    with trusted_lock(track):
        dirty = repo.git_dir_of(trusted) is None or (trusted / ".git").is_symlink() or not (trusted / ".git").is_file()
        if not dirty:
            from overnight.git.repo import git

            out = git(trusted, "status", "--porcelain", "--ignored", "--untracked-files=all", "-z")
            dirty = any(entry[3:] not in links for entry in out.split("\0") if entry.strip())
        if dirty:
            repo.reset_worktree(trusted)
        I.link(track.dir, inputs, workdir)
    return workdir


def evaluate(track: Track, workdir: Path, run_dir: Path, artifacts: Path, seed: int, token: str,
             stop: threading.Event | None, caps: Caps, inputs: list[Path] | None = None) -> ProcessResult:
    """Run the trusted evaluator on a sanitised copy of `artifacts` (ArtifactError when they are refused)."""
    spec = track.spec
    inputs = inputs or []
    track.repo.reset_worktree(workdir)  # what the run left in its worktree is gone before anything reads it
    I.link(track.dir, inputs, workdir)
    trusted = pristine_trusted(track, inputs)
    seen = run_dir / "evaluated"
    sanitized_copy(artifacts, seen)
    scratch = run_dir / "eval-scratch"
    scratch.mkdir(parents=True, exist_ok=True)
    env = track.base_env()
    env.update(OVERNIGHT_ARTIFACTS=str(seen), OVERNIGHT_HELDOUT=str(track.paths.heldout), OVERNIGHT_SEED=str(seed),
               OVERNIGHT_EVAL_SEED=str(eval_seed(track, seed)), OVERNIGHT_WORKDIR=str(workdir),
               OVERNIGHT_SCRATCH=str(scratch), PYTHONDONTWRITEBYTECODE="1", TORCH_FORCE_WEIGHTS_ONLY_LOAD="1",
               **{MARKER: token})
    command: str | list[str] = spec.evaluate.command  # type: ignore[union-attr]
    if spec.run.sandbox != "none":
        from overnight.execution import sandbox

        command = sandbox.wrap(command, workdir=trusted, writable=[scratch],
                              readonly=[track.paths.trusted, track.paths.heldout, track.paths.data, seen, workdir,
                                        *I.sources(track.dir, inputs)],
                              max_processes=caps.processes or sandbox.MAX_PROCESSES, private=private_paths(track))
        env = sandbox.clean_env(env, spec.run.pass_env)
    try:
        return run_process(command, trusted, env, timeout=spec.evaluate.timeout_seconds,  # type: ignore[union-attr]
                           log_path=run_dir / "evaluate.log", stop=stop, caps=caps)
    finally:
        remove_tree(seen)
        remove_tree(scratch)  # candidate code the evaluator started may have written any tree there
