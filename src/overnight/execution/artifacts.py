"""A run's artifacts are hostile input: the evaluator reads a fresh copy holding regular files only.

Symlinks, FIFOs, sockets, devices and hard links are refused with a reason naming the path (spelled
safely: a name need not be UTF-8 and may hold terminal escapes)
(a symlink to the held-out labels, a FIFO that hangs the reader, a link to /dev/zero that reads
without bound); so are more files or more bytes than the caps. Files are opened without
following links and copied up to the size they had when checked, so a file that grows while
it is copied cannot exceed the cap either; holes are not written out, so sparse files cost the
copy no more disk than the original.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from overnight.core.measurements import printable
from overnight.git.repo import remove_tree

MAX_FILES = 10_000
MAX_DEPTH = 64  # folders within folders: deeper trees outgrow paths and recursion (see git.repo.remove_tree)
MAX_BYTES = 64 * 2**30  # checkpoints fit; a disk-filling artifact does not
CHUNK = 2**20


class ArtifactError(Exception):
    """The artifacts cannot be evaluated; the message names the path and why."""


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISLNK, "a symlink"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _copy_data(fd: int, out, size: int) -> int:
    """Copy the data extents of the first `size` bytes (skipping holes); returns where the file ends."""
    pos = 0
    while pos < size:
        try:
            start = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: nothing but a hole up to the end
            return size
        if start >= size:
            return size
        stop = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        os.lseek(fd, start, os.SEEK_SET)
        out.seek(start)
        while start < stop:
            chunk = os.read(fd, min(CHUNK, stop - start))
            if not chunk:  # it shrank since it was checked
                return start
            out.write(chunk)
            start += len(chunk)
        pos = stop
    return size


def _copy(src: Path, dst: Path, size: int, rel: str) -> None:
    fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):  # swapped between the check and the open
            raise ArtifactError(f"artifact {printable(rel)} is {_kind(st.st_mode)}; only regular files are evaluated")
        with open(dst, "xb") as out:
            end = _copy_data(fd, out, size)
            out.truncate(end)  # the holes stay holes: 64 GiB of them cost the copy no disk either
    finally:
        os.close(fd)
    os.chmod(dst, 0o444)


def sanitized_copy(src: Path, dst: Path, max_files: int = MAX_FILES, max_bytes: int = MAX_BYTES) -> int:
    """Copy the regular files under `src` to a new folder `dst`; returns the bytes copied.
    Raises ArtifactError (and leaves no `dst`) on anything else or past the caps."""
    if src.is_symlink() or not src.is_dir():
        raise ArtifactError(f"the artifacts folder {src} is {'a symlink' if src.is_symlink() else 'missing'}")
    if dst.exists() or dst.is_symlink():
        remove_tree(dst)
    dst.mkdir(parents=True)
    try:
        return _walk(src, dst, src, max_files, max_bytes)
    except OSError as e:  # a candidate may chmod its files, or nest names past PATH_MAX: refused, not our error
        remove_tree(dst)
        raise ArtifactError(f"artifact {printable(str(e.filename))} is not readable ({e.strerror})") from None
    except BaseException:
        remove_tree(dst)
        raise


def _walk(root: Path, dst_root: Path, src: Path, max_files: int, max_bytes: int) -> int:
    files = total = 0
    stack = [(src, 0)]
    while stack:
        folder, depth = stack.pop()
        with os.scandir(folder) as entries:
            listing = sorted(entries, key=lambda e: e.name)
        for entry in listing:
            path = Path(entry.path)
            rel = path.relative_to(root).as_posix()
            st = entry.stat(follow_symlinks=False)
            if stat.S_ISDIR(st.st_mode):
                files += 1  # folders count too: a million empty ones must not stall the copy
                if files > max_files:
                    raise ArtifactError(f"more than {max_files} artifact files and folders")
                if depth >= MAX_DEPTH:
                    raise ArtifactError(f"artifact folder {printable(rel)[:200]}... is nested deeper than {MAX_DEPTH} "
                                        "folders")
                (dst_root / rel).mkdir()
                stack.append((path, depth + 1))
                continue
            if not stat.S_ISREG(st.st_mode):
                raise ArtifactError(f"artifact {printable(rel)} is {_kind(st.st_mode)}; only regular files are evaluated")
            if st.st_nlink > 1:
                raise ArtifactError(f"artifact {printable(rel)} is a hard link ({st.st_nlink} names); "
                                    "only plain files are evaluated")
            files += 1
            total += st.st_size
            if files > max_files:
                raise ArtifactError(f"more than {max_files} artifact files; write fewer, larger files")
            if total > max_bytes:
                raise ArtifactError(f"artifacts exceed {max_bytes / 2**30:g} GiB (at {printable(rel)})")
            _copy(path, dst_root / rel, st.st_size, rel)
    return total
