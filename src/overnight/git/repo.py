"""The git side of a track: branch, per-candidate worktrees, commits, refs, diffs.

Git is the code ledger: every candidate is one commit; kept ones advance the
track branch, every one stays reachable under `refs/overnight/<tag>/`.
"""

from __future__ import annotations

import fnmatch
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

GIT_ENV = {
    "GIT_AUTHOR_NAME": "overnight",
    "GIT_AUTHOR_EMAIL": "overnight@localhost",
    "GIT_COMMITTER_NAME": "overnight",
    "GIT_COMMITTER_EMAIL": "overnight@localhost",
    "GIT_TERMINAL_PROMPT": "0",
}


class RepoError(Exception):
    pass


def git(cwd: Path, *args: str, check: bool = True, input: str | None = None) -> str:
    import os

    env = {**os.environ, **GIT_ENV}
    p = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, env=env, input=input)
    if check and p.returncode != 0:
        raise RepoError(f"git {' '.join(args)} failed in {cwd}: {p.stderr.strip() or p.stdout.strip()}")
    return p.stdout


def matches_any(path: str, globs: list[str]) -> bool:
    """Glob match with `**` spanning folders; `*` stays inside one folder like a shell glob."""
    return any(_full_match(PurePosixPath(path).as_posix(), g) for g in globs)


def _full_match(path: str, pattern: str) -> bool:
    # PurePath.full_match is 3.13+: `**` spans folders, `*` stays inside one part.
    parts, pats = path.split("/"), pattern.split("/")

    def rec(i: int, j: int) -> bool:
        if j == len(pats):
            return i == len(parts)
        if pats[j] == "**":
            return any(rec(k, j + 1) for k in range(i, len(parts) + 1))
        return i < len(parts) and fnmatch.fnmatchcase(parts[i], pats[j]) and rec(i + 1, j + 1)

    return rec(0, 0)


@dataclass(frozen=True)
class Change:
    status: str  # git's letter: A, M, D, T
    path: str  # relative to the repo root
    mode: str  # new mode ("000000" when deleted)


def find_root(track_dir: Path) -> Path:
    out = git(track_dir, "rev-parse", "--show-toplevel", check=False).strip()
    if not out:
        raise RepoError(f"{track_dir} is not inside a git repository. Run `overnight init {track_dir}` (it runs git init).")
    return Path(out).resolve()


class Repo:
    """A track inside a git repository (the track may be a subfolder of a larger repo)."""

    def __init__(self, track_dir: Path):
        self.track_dir = track_dir.resolve()
        self.root = find_root(self.track_dir)
        rel = self.track_dir.relative_to(self.root).as_posix()
        self.rel = "" if rel == "." else rel

    def run(self, *args: str, check: bool = True) -> str:
        return git(self.root, *args, check=check)

    # --- refs -------------------------------------------------------------------------------------
    def head_commit(self) -> str:
        out = self.run("rev-parse", "--verify", "--quiet", "HEAD^{commit}", check=False).strip()
        if not out:
            raise RepoError(f"{self.root} has no commits yet; commit the track's files first.")
        return out

    def resolve(self, ref: str) -> str | None:
        return self.run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False).strip() or None

    def ensure_branch(self, branch: str, start: str) -> str:
        existing = self.resolve(f"refs/heads/{branch}")
        if existing:
            return existing
        self.run("update-ref", f"refs/heads/{branch}", start)
        return start

    def advance(self, branch: str, new: str, old: str) -> None:
        """Move the branch only if it still points at `old` (compare-and-swap)."""
        self.run("update-ref", f"refs/heads/{branch}", new, old)

    def keep_ref(self, tag: str, exp_id: int, commit: str) -> None:
        self.run("update-ref", f"refs/overnight/{tag}/{exp_id}", commit)

    def tracked_dirty(self) -> list[str]:
        """Uncommitted changes to tracked files in the track folder (they are not part of the baseline)."""
        out = self.run("status", "--porcelain", "--untracked-files=no", "--", self.rel or ".")
        return [line[3:] for line in out.splitlines() if line.strip()]

    # --- worktrees --------------------------------------------------------------------------------
    def add_worktree(self, path: Path, commit: str) -> Path:
        if path.exists():
            self.remove_worktree(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.run("worktree", "add", "--detach", "--force", str(path), commit)
        return path

    def remove_worktree(self, path: Path) -> None:
        self.run("worktree", "remove", "--force", "--force", str(path), check=False)
        if path.exists():
            shutil.rmtree(path, ignore_errors=True)
        self.run("worktree", "prune", check=False)

    def prune_worktrees(self, under: Path, keep: set[Path] = frozenset()) -> list[Path]:
        """Remove leftover worktrees below `under` (from a killed loop), except `keep`."""
        removed = []
        if under.is_dir():
            for p in sorted(under.iterdir()):
                if p.resolve() not in keep:
                    self.remove_worktree(p)
                    removed.append(p)
        self.run("worktree", "prune", check=False)
        return removed

    def workdir(self, worktree: Path) -> Path:
        """The track folder inside a worktree."""
        return worktree / self.rel if self.rel else worktree

    # --- candidates -------------------------------------------------------------------------------
    def commit_all(self, worktree: Path, message: str) -> str | None:
        """Commit everything changed in the worktree; None when nothing changed."""
        git(worktree, "add", "-A")
        if not git(worktree, "status", "--porcelain").strip():
            return None
        git(worktree, "commit", "-q", "--no-verify", "-m", message)
        return git(worktree, "rev-parse", "HEAD").strip()

    def clean(self, worktree: Path) -> None:
        """Make the worktree exactly its commit (the proposer may have left ignored files)."""
        git(worktree, "clean", "-ffdxq")

    def changes(self, parent: str, commit: str) -> list[Change]:
        # --no-renames: a rename is a delete plus an add, so both paths are checked.
        out = self.run("diff", "--raw", "--no-renames", "-z", "--no-abbrev", parent, commit)
        fields = out.split("\0")
        changes = []
        for i in range(0, len(fields) - 1, 2):
            meta, path = fields[i], fields[i + 1]
            if not meta.startswith(":"):
                continue
            _, new_mode, _, _, status = meta[1:].split(" ")
            changes.append(Change(status=status[0], path=path, mode=new_mode))
        return changes

    def diff(self, parent: str, commit: str) -> str:
        return self.run("diff", "--no-color", parent, commit)

    def frozen_violations(self, parent: str, commit: str, editable: list[str]) -> list[str]:
        """Why a candidate is invalid: edits outside the editable globs, symlinks, submodules."""
        problems = []
        prefix = f"{self.rel}/" if self.rel else ""
        for c in self.changes(parent, commit):
            if not c.path.startswith(prefix):
                problems.append(f"{c.path}: outside the track folder")
                continue
            rel = c.path[len(prefix):]
            if c.mode == "120000":
                problems.append(f"{rel}: symlinks are not allowed")
            elif c.mode == "160000":
                problems.append(f"{rel}: submodules are not allowed")
            elif not matches_any(rel, editable):
                verb = {"A": "added", "D": "deleted", "M": "modified", "T": "type changed"}.get(c.status, "changed")
                problems.append(f"{rel}: {verb}, but it is frozen (not in [track] editable)")
        return problems
