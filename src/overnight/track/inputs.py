"""Inputs: files a run needs that git does not carry (datasets, tokenizers, checkpoints).

`[track] inputs` names them by glob, relative to the track folder. Every worktree gets a
symlink at the same relative path to the user's file; the sandbox binds the originals
read-only, so a sandboxed candidate can read them and change nothing.
"""

from __future__ import annotations

import os
from pathlib import Path

from overnight.git.repo import git


class InputsError(Exception):
    """An input is missing or unusable; the message names the key, the glob and what to do."""


def resolve(track_dir: Path, patterns: list[str], repo_root: Path | None = None) -> list[Path]:
    """The inputs' paths relative to `track_dir`, checked: present, and not tracked by git."""
    found: list[Path] = []
    for i, pattern in enumerate(patterns):
        where = f"[track] inputs #{i + 1} {pattern!r}"
        hits = sorted(p for p in track_dir.glob(pattern) if p.exists())
        if not hits:
            raise InputsError(f"{where}: matches nothing in {track_dir} (make it first, e.g. with a "
                              "[prepare] command, or fix the path)")
        for hit in hits:
            rel = hit.relative_to(track_dir)
            if rel.parts and rel.parts[0] == ".overnight":
                raise InputsError(f"{where}: {rel} is inside overnight's own state folder")
            if rel not in found:
                found.append(rel)
    if found and repo_root is not None:
        tracked = git(track_dir, "ls-files", "--", *map(str, found), check=False).split()
        if tracked:  # a tracked file is in every worktree already; linking over it would hide edits
            raise InputsError(f"[track] inputs: {tracked[0]} is tracked by git, so every run has it already: "
                              "drop it from inputs")
        ignored = set(git(track_dir, "check-ignore", "--", *map(str, found), check=False).split())
        loose = [str(r) for r in found if str(r) not in ignored]
        if loose:  # an unignored link would be committed into the next candidate by `git add -A`
            raise InputsError(f"[track] inputs: {loose[0]} is not ignored by git: add it to .gitignore "
                              f"(in {repo_root}) so candidates cannot commit it")
    return found


def link(track_dir: Path, inputs: list[Path], workdir: Path) -> None:
    """Make each input visible at its relative path in `workdir` (a symlink to the user's file)."""
    for rel in inputs:
        src, dst = (track_dir / rel).resolve(), workdir / rel
        if dst.is_symlink() and os.readlink(dst) == str(src):
            continue
        if dst.is_symlink() or dst.is_file():
            dst.unlink()  # whatever a candidate left there is not the user's input
        elif dst.exists():
            raise InputsError(f"[track] inputs: {rel} is a folder in the worktree {workdir}; cannot link it")
        dst.parent.mkdir(parents=True, exist_ok=True)
        dst.symlink_to(src)


def sources(track_dir: Path, inputs: list[Path]) -> list[Path]:
    """The originals, for the sandbox's read-only binds."""
    return [(track_dir / rel).resolve() for rel in inputs]
