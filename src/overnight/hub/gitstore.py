"""The hub's bare git repositories: one per track, branch `chain` = the verified head."""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from overnight.git.repo import GIT_ENV

CHAIN = "refs/heads/chain"


class GitStoreError(Exception):
    pass


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, input: bytes | None = None) -> bytes:
    p = subprocess.run(["git", *args], cwd=repo, capture_output=True, input=input,
                       env={**os.environ, **GIT_ENV, **(env or {})})
    if p.returncode != 0:
        raise GitStoreError(f"git {args[0]}: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout


def init_from_bundle(repo: Path, bundle: bytes) -> str:
    """Create the bare repo from a bundle whose HEAD is the track's base; returns that commit."""
    repo.mkdir(parents=True, exist_ok=False)
    _git(repo, "init", "-q", "--bare")
    with tempfile.NamedTemporaryFile(suffix=".bundle") as f:
        f.write(bundle)
        f.flush()
        _git(repo, "fetch", "-q", f.name, f"HEAD:{CHAIN}")
    _git(repo, "symbolic-ref", "HEAD", CHAIN)
    return head(repo)


def head(repo: Path) -> str:
    return _git(repo, "rev-parse", f"{CHAIN}^{{commit}}").decode().strip()


def bundle_path(repo: Path, commit: str) -> Path:
    """A bundle of the chain at `commit`, made once and reused (contributors all fetch the same head)."""
    out = repo / "bundles" / f"{commit}.bundle"
    if not out.exists():
        out.parent.mkdir(exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        ref = f"refs/bundles/{commit}"  # one ref per commit, always pointing at it
        try:
            _git(repo, "update-ref", ref, commit)
        except GitStoreError:  # another request (or hub process) holds the ref's lock right now
            if _git(repo, "rev-parse", "--verify", "-q", ref).decode().strip() != commit:
                raise
        _git(repo, "bundle", "create", "-q", str(tmp), ref)
        os.replace(tmp, out)  # atomic: a reader never sees half a bundle
    return out


def make_commit(repo: Path, parent: str, patch: str, message: str, check_path: Callable[[str], None]) -> str:
    """The commit of `patch` on `parent`, built without a worktree; no ref moves. Every path of the resulting
    tree that differs from the parent passes `check_path` (what git did, not what the patch text said)."""
    with tempfile.TemporaryDirectory() as tmp:
        env = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(repo, "read-tree", parent, env=env)
        _git(repo, "apply", "--cached", "--whitespace=nowarn", "-", env=env, input=patch.encode())
        tree = _git(repo, "write-tree", env=env).decode().strip()
    out = _git(repo, "diff-tree", "-r", "-z", "--no-renames", parent, tree).decode(errors="replace")
    fields = out.split("\0")
    for meta, path in zip(fields[0::2], fields[1::2], strict=False):
        new_mode = meta.lstrip(":").split(" ")[1] if meta else ""
        if new_mode in ("120000", "160000"):
            raise GitStoreError(f"{path}: symlinks and submodules are not allowed")
        check_path(path)
    if not out.strip("\0"):
        raise GitStoreError("the patch changes nothing")
    return _git(repo, "commit-tree", tree, "-p", parent, "-m", message).decode().strip()


def set_chain(repo: Path, commit: str) -> None:
    """Point the chain at `commit` (the database decided it, under the track's row lock)."""
    _git(repo, "update-ref", CHAIN, commit)


def has_commit(repo: Path, commit: str) -> bool:
    try:
        _git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
    except GitStoreError:
        return False
    return True
