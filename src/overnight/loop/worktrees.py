"""The worktree pool: one checkout per slot plus spares the proposer edits in, leased and reset here."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from overnight.git.repo import Repo, RepoError, git, remove_tree


def checkout(wt: Path, commit: str) -> None:
    """Make a worktree exactly `commit`: tracked files reset, untracked and ignored files gone."""
    try:
        git(wt, "checkout", "-q", "--detach", "-f", commit)
        git(wt, "clean", "-ffdxq")
    except RepoError:  # unwritable folders or a tree too deep for git's paths (a proposer left it): clear, retry
        for entry in os.listdir(wt):
            if entry != ".git":
                remove_tree(wt / entry)
        git(wt, "checkout", "-q", "--detach", "-f", commit)


class WorktreePool:
    """Owns the worktrees under `folder`; `lock` serialises every worktree and ref change (git is not re-entrant)."""

    def __init__(self, repo: Repo, folder: Path):
        self.repo, self.folder = repo, folder
        self.lock = threading.RLock()
        self.free: list[Path] = []

    def create(self, index: int, commit: str) -> Path:
        return self.repo.add_worktree(self.folder / f"wt-{index}", commit)

    def fill(self, first: int, last: int, commit: str) -> None:
        """Spare worktrees `first`..`last - 1`: candidates are proposed in one and run in the same one."""
        self.free = [self.create(i, commit) for i in range(first, last)]

    def lease(self) -> Path | None:
        return self.free.pop() if self.free else None

    def release(self, wt: Path) -> None:
        self.free.append(wt)

    def reset(self, wt: Path, commit: str) -> None:
        with self.lock:
            checkout(wt, commit)

    def prune(self) -> None:
        """Remove every worktree of the pool (and leftovers of a killed loop)."""
        with self.lock:
            self.repo.prune_worktrees(self.folder)
        self.free = []
