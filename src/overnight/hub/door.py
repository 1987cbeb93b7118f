"""The door: what a submitted patch may and may not do, checked before it is stored.

Reads the patch both as text (extended headers: modes, renames, binary) and the way `git apply` will
(`git apply --numstat`, which also honours traditional `---`/`+++` hunks without a `diff --git` header),
and refuses any path outside `editable`, ignored by git or not. No repository, no execution.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from overnight.core.measurements import printable
from overnight.git.repo import matches_any

MAX_PATCH_BYTES = 64 * 1024
_HEADER = re.compile(r"^diff --git (\S+) (\S+)$")
_FORBIDDEN_MODES = {"120000": "symlinks are not allowed", "160000": "submodules are not allowed"}


@dataclass
class DoorError(Exception):
    reason: str

    def __str__(self) -> str:
        return self.reason


def _path(raw: str, prefix: str) -> str:
    if raw.startswith('"'):
        raise DoorError(f"{raw}: quoted (unusual) file names are not allowed")
    if not raw.startswith(prefix):
        raise DoorError(f"{raw}: expected a `{prefix}` path in the diff header")
    return raw[len(prefix):]


def check_path(path: str, editable: list[str]) -> None:
    if printable(path) != path:  # control characters (terminal escapes), or bytes that were not UTF-8
        raise DoorError(f"{printable(path)}: file names must be printable UTF-8")
    p = PurePosixPath(path)
    if p.is_absolute() or ".." in p.parts or path.startswith("~") or "\\" in path:
        raise DoorError(f"{path}: path traversal is not allowed")
    if not path or any(part in ("", ".") for part in path.split("/")):
        raise DoorError(f"{path!r}: malformed path")
    if any(part.lower().rstrip(". ") == ".git" for part in p.parts):  # at any depth, in any spelling git refuses
        raise DoorError(f"{path}: git internals are not editable")
    if not matches_any(path, editable):
        raise DoorError(f"{path}: frozen (not in the track's editable globs)")


def check_patch(patch: str, editable: list[str], max_bytes: int = MAX_PATCH_BYTES) -> list[str]:
    """The files a patch changes; raises DoorError with the reason when it may not enter."""
    try:  # a JSON string may carry lone surrogates: not text git or a database can take
        size = len(patch.encode())
    except UnicodeEncodeError:
        raise DoorError("the patch is not UTF-8 text") from None
    if size > max_bytes:
        raise DoorError(f"patch is {size} bytes, over the {max_bytes}-byte limit")
    if "\0" in patch:
        raise DoorError("binary content is not allowed")
    files: list[str] = []
    in_header = False  # extended headers sit between `diff --git` and the first hunk
    for line in patch.splitlines():
        m = _HEADER.match(line)
        if line.startswith("@@"):
            in_header = False
        elif m:
            in_header = True
            a, b = _path(m.group(1), "a/"), _path(m.group(2), "b/")
            for p in {a, b}:
                check_path(p, editable)
            files.append(b)
        elif not in_header:
            continue
        elif line.startswith(("--- ", "+++ ")):
            raw = line[4:].split("\t")[0]
            if raw != "/dev/null":
                check_path(_path(raw, "a/" if line[0] == "-" else "b/"), editable)
        elif line.startswith(("new file mode ", "new mode ", "old mode ", "deleted file mode ")):
            mode = line.rsplit(" ", 1)[1]
            if mode in _FORBIDDEN_MODES:
                raise DoorError(_FORBIDDEN_MODES[mode])
        elif line.startswith(("GIT binary patch", "Binary files ")):
            raise DoorError("binary files are not allowed")
        elif line.startswith(("rename from ", "rename to ", "copy from ", "copy to ")):
            check_path(line.split(" ", 2)[2], editable)
    if not files:
        raise DoorError("not a git diff (no `diff --git` header): send `git diff` output")
    for p in applied_paths(patch):  # what git apply would touch, whatever header form the patch uses
        check_path(p, editable)
    return files


@functools.cache
def _nowhere() -> str:
    """An empty folder outside any repository: `git apply --numstat` there reads the patch and nothing else."""
    return tempfile.mkdtemp(prefix="overnight-door-")


def applied_paths(patch: str) -> list[str]:
    """Every path `git apply` would create, change, delete or rename for this patch."""
    where = _nowhere()
    env = {**os.environ, "GIT_CEILING_DIRECTORIES": str(Path(where).parent), "GIT_DIR": os.devnull}
    env.pop("GIT_WORK_TREE", None)
    p = subprocess.run(["git", "apply", "--numstat", "-z", "-"], input=patch.encode(), capture_output=True,
                       cwd=where, env=env)
    if p.returncode != 0:
        msg = p.stderr.decode(errors="replace").strip().splitlines()
        raise DoorError(f"git apply cannot read this patch: {msg[0] if msg else 'error'}")
    fields = p.stdout.decode(errors="surrogateescape").split("\0")  # a name that is not UTF-8 stays unprintable
    paths: list[str] = []
    i = 0
    while i < len(fields):
        f = fields[i]
        if not f:
            i += 1
            continue
        stat = f.split("\t", 2)
        if len(stat) == 3 and stat[2]:
            paths.append(stat[2])
            i += 1
        else:  # a rename or copy: `added\tdeleted\t` then the old and the new path
            paths.extend(x for x in fields[i + 1:i + 3] if x)
            i += 3
    return paths
