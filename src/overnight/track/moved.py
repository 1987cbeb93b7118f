"""The user's branch moved on: say so at start, and `--rebase` the research branch onto it.

The research branch `overnight/<tag>` starts at the commit the user had checked out on the
first run. When the user commits afterwards (a fix, new data code), the kept changes are
replayed onto the new commit and the head is measured afresh there, as a new baseline-like
experiment: numbers taken on the old base are not compared with runs on the new one.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from overnight.core.status import Status
from overnight.git.repo import RepoError
from overnight.track import Track


class RebaseError(Exception):
    """The kept changes do not replay cleanly; nothing was changed."""


@dataclass
class Moved:
    base: str  # where the research branch started
    head: str  # the user's HEAD now
    missing: int  # commits on HEAD the research branch lacks
    branch: str


def moved(track: Track, tag: str) -> Moved | None:
    """None unless the user's HEAD has commits that the research branch lacks."""
    info = (track.ledger.get("tags") or {}).get(tag)
    if not info:
        return None
    repo = track.repo
    try:
        head = repo.head_commit()
    except RepoError:
        return None
    branch = info.get("branch", f"overnight/{tag}")
    tip = repo.resolve(f"refs/heads/{branch}")
    if tip is None or head == info["base"]:
        return None
    missing = int(repo.run("rev-list", "--count", f"{tip}..{head}", check=False).strip() or 0)
    return Moved(info["base"], head, missing, branch) if missing else None


def message(m: Moved, path: Path) -> str:
    return (f"note: your checked-out branch has {m.missing} commit(s) that the research branch {m.branch} lacks "
            f"(it started from {m.base[:7]}, you are at {m.head[:7]}); `overnight run {path} --rebase` replays "
            "the kept changes onto it and re-measures the head there")


def rebase(track: Track, tag: str, platform: dict) -> str:
    """Replay base..tip onto the user's HEAD, move the branch, queue the head's re-measurement."""
    m = moved(track, tag)
    if m is None:
        return "nothing to rebase: the research branch has every commit of your branch"
    repo = track.repo
    tip = repo.resolve(f"refs/heads/{m.branch}")
    assert tip is not None
    picks = repo.run("rev-list", "--reverse", f"{m.base}..{tip}").split()
    tmp = Path(tempfile.mkdtemp(prefix="overnight-rebase-"))
    wt = tmp / "wt"
    try:
        repo.run("worktree", "add", "-q", "--detach", str(wt), m.head)
        for commit in picks:
            try:
                repo.run("-C", str(wt), "cherry-pick", "--allow-empty", "--keep-redundant-commits", commit)
            except RepoError:
                subject = repo.run("log", "-1", "--format=%s", commit).strip()
                raise RebaseError(f"kept change {commit[:7]} ({subject}) conflicts with your commits on "
                                  f"{m.head[:7]}: {m.branch} is unchanged; resolve it by hand or start a new "
                                  "--tag") from None
        new_tip = repo.run("-C", str(wt), "rev-parse", "HEAD").strip()
    finally:
        repo.run("worktree", "remove", "--force", str(wt), check=False)
        repo.run("worktree", "prune", check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    repo.run("update-ref", f"refs/heads/{m.branch}", new_tip, tip)
    tags = track.ledger.get("tags")
    tags[tag] = {**tags[tag], "base": m.head, "rebased_from": m.base}
    track.ledger.put("tags", tags)
    # Measured like a baseline on the new base; it becomes the head the next candidates must beat.
    exp = track.ledger.add_experiment(
        tag=tag, parent_commit=m.head, commit=new_tip, proposer="rebase", status=Status.RUNNING,
        description=f"head rebased onto {m.head[:7]}", meta={"baseline": True, "rebased_from": tip},
        platform=platform)
    repo.keep_ref(tag, exp.id, new_tip)
    return (f"rebased {len(picks)} kept change(s) of {m.branch} onto {m.head[:7]}; "
            f"the head is re-measured there as #{exp.id}")


def at_start(track: Track, tag: str, path: Path, do_rebase: bool) -> str | None:
    """What `overnight run` says about a moved base before it starts (rebasing first when asked)."""
    import fcntl

    if not do_rebase:
        m = moved(track, tag)
        return message(m, path) if m else None
    track.ensure_state()
    with open(track.paths.lock, "a+") as f:  # never rebase under a loop that is running
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RebaseError(f"another `overnight run` is active on {track.dir}; stop it before --rebase") from None
        try:
            from overnight.execution.fingerprint import fingerprint

            return rebase(track, tag, fingerprint())
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
