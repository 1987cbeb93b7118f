"""The git side of a track: branch, per-candidate worktrees, commits, refs, diffs.

Git is the code ledger: every candidate is one commit; kept ones advance the
track branch, every one stays reachable under `refs/overnight/<tag>/`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from overnight.core.measurements import printable

GIT_ENV = {
    "GIT_AUTHOR_NAME": "overnight",
    "GIT_AUTHOR_EMAIL": "overnight@localhost",
    "GIT_COMMITTER_NAME": "overnight",
    "GIT_COMMITTER_EMAIL": "overnight@localhost",
    "GIT_TERMINAL_PROMPT": "0",
}


class RepoError(Exception):
    pass


# Config a hostile worktree must not steer: no hooks, no fsmonitor, no signing program, no external diff.
SAFE_CONFIG = ["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false", "-c", "commit.gpgSign=false",
               "-c", "tag.gpgSign=false", "-c", "diff.external=", "-c", "core.untrackedCache=false"]
_WORKTREES: dict[Path, Path] = {}  # worktree folder -> its real git dir (learnt from the main repo, never the worktree)
_registry_lock = threading.Lock()
LOCK_STALE_SECONDS = 10.0  # git holds a ref lock for milliseconds: one this old was left by a killed process


def _owner(cwd: Path) -> tuple[Path, Path] | None:
    """(worktree, git dir) when `cwd` is inside a worktree the harness knows, else None."""
    here = Path(cwd).resolve()
    with _registry_lock:
        for p in (here, *here.parents):
            if p in _WORKTREES:
                return p, _WORKTREES[p]
    return None


def git(cwd: Path, *args: str, check: bool = True, input: str | None = None, errors: str = "surrogateescape") -> str:
    """Run git in `cwd`; in a harness worktree the real git dir is named, so a planted `.git` is never read.
    Output is UTF-8 with `errors`: by default a file name that is not UTF-8 survives (as surrogate escapes)."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}  # no inherited GIT_DIR & co
    env.update(GIT_ENV)
    argv = ["git", *SAFE_CONFIG]
    owner = _owner(cwd)
    if owner is not None:
        argv += [f"--git-dir={owner[1]}", f"--work-tree={owner[0]}"]
    p = subprocess.run([*argv, *args], cwd=cwd, capture_output=True, encoding="utf-8", errors=errors, env=env,
                       input=input)
    if check and p.returncode != 0:
        why = printable(p.stderr.strip() or p.stdout.strip())  # it may name a candidate's file
        raise RepoError(f"git {' '.join(args)} failed in {cwd}: {why}")
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


def remove_tree(path: Path) -> None:
    """Remove a file or a folder a candidate wrote, whatever its shape: no recursion and no long paths (a
    tree 2,000 folders deep defeats shutil.rmtree, os.walk and git clean), modes given back, links not
    followed. Each folder's content is moved up into the top folder, then the emptied folder removed."""
    if not path.is_dir() or path.is_symlink():
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return
    with contextlib.suppress(OSError):
        os.chmod(path, 0o700)
    top = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    tag, moved = os.urandom(4).hex(), 0  # moved names no candidate can have made beforehand
    try:
        while names := os.listdir(top):
            for name in names:
                try:
                    os.unlink(name, dir_fd=top)
                    continue
                except IsADirectoryError:
                    pass
                except FileNotFoundError:
                    continue
                with contextlib.suppress(OSError):
                    os.chmod(name, 0o700, dir_fd=top, follow_symlinks=False)
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=top)
                try:
                    for inner in os.listdir(sub):
                        moved += 1
                        os.rename(inner, f".rm-{tag}-{moved}", src_dir_fd=sub, dst_dir_fd=top)
                finally:
                    os.close(sub)
                os.rmdir(name, dir_fd=top)
    finally:
        os.close(top)
    os.rmdir(path)


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
        common = git(self.root, "rev-parse", "--path-format=absolute", "--git-common-dir").strip()
        self.common = Path(common).resolve()
        self.learn_worktrees()

    def learn_worktrees(self) -> None:
        """Register this repo's worktrees from its own git dir (`worktrees/*/gitdir`), which no candidate writes."""
        found = {}
        for entry in sorted((self.common / "worktrees").glob("*/gitdir")):
            with contextlib.suppress(OSError, ValueError):
                dotgit = Path(entry.read_text().strip())
                found[dotgit.parent.resolve()] = entry.parent.resolve()
        with _registry_lock:
            for wt, gd in list(_WORKTREES.items()):  # forget this repo's worktrees that are gone
                if gd.parent.parent == self.common and wt not in found:
                    del _WORKTREES[wt]
            _WORKTREES.update(found)

    def git_dir_of(self, worktree: Path) -> Path | None:
        owner = _owner(worktree)
        if owner is None:
            self.learn_worktrees()
            owner = _owner(worktree)
        return owner[1] if owner and owner[1].parent.parent == self.common else None

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
        tag = branch.split("/", 1)[-1]
        kept = [lock.relative_to(self.common).as_posix()[:-5] for lock in (self.common / "refs" / "overnight" / tag)
                .glob("*.lock")]
        self.clear_stale_locks(f"refs/heads/{branch}", *kept)  # called at start, under the loop's lock
        existing = self.resolve(f"refs/heads/{branch}")
        if existing:
            return existing
        self.run("update-ref", f"refs/heads/{branch}", start)
        return start

    def advance(self, branch: str, new: str, old: str) -> None:
        """Move the branch only if it still points at `old` (compare-and-swap); a dead process's lock is cleared."""
        try:
            self.run("update-ref", f"refs/heads/{branch}", new, old)
        except RepoError:
            if not self.clear_stale_locks(f"refs/heads/{branch}", older_than=LOCK_STALE_SECONDS):
                raise
            self.run("update-ref", f"refs/heads/{branch}", new, old)

    def clear_stale_locks(self, *refs: str, older_than: float = 0.0) -> list[Path]:
        """Remove `<ref>.lock` files (and packed-refs.lock) left by a killed git; the loop holds its own lock."""
        removed = []
        now = time.time()
        for lock in [self.common / f"{r}.lock" for r in refs] + [self.common / "packed-refs.lock"]:
            with contextlib.suppress(OSError):
                if lock.is_file() and not lock.is_symlink() and now - lock.stat().st_mtime >= older_than:
                    lock.unlink()
                    removed.append(lock)
        return removed

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
        self.learn_worktrees()
        return path

    def reset_worktree(self, inside: Path) -> None:
        """Make the worktree holding `inside` exactly its HEAD commit (as its real git dir says): tracked files
        reset, untracked and ignored files gone, `.git` rewritten."""
        resolved = Path(inside).resolve()
        gd = self.git_dir_of(resolved)
        if gd is None:
            raise RepoError(f"{inside} is not a worktree of {self.root}")
        wt = _owner(resolved)[0]  # type: ignore[index]
        dotgit = wt / ".git"
        want = f"gitdir: {gd}\n"
        if (dotgit.is_symlink() or not dotgit.is_file() or dotgit.stat().st_size != len(want.encode())
                or dotgit.read_text(errors="replace") != want):
            remove_tree(dotgit)
            dotgit.write_text(want)
        now = time.time()
        for lock in (gd / "index.lock", gd / "HEAD.lock"):  # a killed git left it behind
            with contextlib.suppress(OSError):
                if now - lock.stat().st_mtime >= LOCK_STALE_SECONDS:
                    lock.unlink()
        try:
            self._reset(wt)
        except RepoError:  # unwritable folders, a tree too deep for git's paths: all but .git goes, then reset
            for entry in os.listdir(wt):
                if entry != ".git":
                    remove_tree(wt / entry)
            self._reset(wt)

    @staticmethod
    def _reset(wt: Path) -> None:
        git(wt, "reset", "-q", "--hard", "HEAD")
        git(wt, "clean", "-ffdxq")

    def remove_worktree(self, path: Path) -> None:
        self.run("worktree", "remove", "--force", "--force", str(path), check=False)
        if path.exists() or path.is_symlink():
            remove_tree(path)
        self.run("worktree", "prune", check=False)
        self.learn_worktrees()

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
        out = self.run("diff", "--raw", "--no-renames", "-z", "--no-abbrev", "--no-ext-diff", parent, commit)
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
        """The patch as text to store and show (bytes that are not UTF-8 become U+FFFD)."""
        return git(self.root, "diff", "--no-color", "--no-ext-diff", "--no-textconv", parent, commit, errors="replace")

    def frozen_violations(self, parent: str, commit: str, editable: list[str]) -> list[str]:
        """Why a candidate is invalid: edits outside the editable globs, symlinks, submodules."""
        problems = []
        prefix = f"{self.rel}/" if self.rel else ""
        for c in self.changes(parent, commit):
            if not c.path.startswith(prefix):
                problems.append(f"{printable(c.path)}: outside the track folder")
                continue
            rel = c.path[len(prefix):]
            if printable(rel) != rel:  # not UTF-8, or a control character: unstorable, or a terminal escape
                problems.append(f"{printable(rel)}: file names must be printable UTF-8")
            elif c.mode == "120000":
                problems.append(f"{rel}: symlinks are not allowed")
            elif c.mode == "160000":
                problems.append(f"{rel}: submodules are not allowed")
            elif not matches_any(rel, editable):
                verb = {"A": "added", "D": "deleted", "M": "modified", "T": "type changed"}.get(c.status, "changed")
                problems.append(f"{rel}: {verb}, but it is frozen (not in [track] editable)")
        return problems
