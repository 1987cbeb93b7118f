"""Per-run cgroups: process and memory caps that hold for root too (RLIMIT_NPROC does not bind
uid 0), and the set of every process a run started, however it detached (setsid, a cleared
environment, SIGTERM ignored), so that none outlives its run.

A cgroup is made under the harness's own cgroup in each hierarchy it may write (cgroup v1 `pids`
and `memory`, or the v2 unified tree). Where none is writable (an unprivileged user without a
delegated cgroup), `RunGroup.create` returns None and the caller falls back to tracking the process
tree by snapshots and the run marker; the sandbox's prlimit still caps processes for non-root users.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

CGROUP_FS = Path("/sys/fs/cgroup")
_counter = itertools.count()


def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


_PIDNS = _pid_namespace()  # group names carry it: a sweep only judges owners it can see


@dataclass(frozen=True)
class Caps:
    """Limits for one run's whole process tree; None: no limit of that kind."""

    processes: int | None = None  # tasks (threads count too), like the kernel's pids.max
    memory_bytes: int | None = None


def default_memory_bytes() -> int:
    """90% of this machine's memory: a runaway run is killed before it takes the harness down with it."""
    return int(psutil.virtual_memory().total * 0.9)


def _own_paths() -> dict[str, str]:
    """controller -> this process's cgroup path ('' is the v2 unified tree)."""
    out: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                out[c] = path
    return out


def _parents() -> list[tuple[str, Path]]:
    """(kind, folder) where a run's cgroup can be made: v1 pids and memory, else the v2 tree."""
    own = _own_paths()
    found = []
    for kind in ("pids", "memory"):
        root = CGROUP_FS / kind
        if kind in own and (root / "cgroup.procs").exists():
            mine = root / own[kind].lstrip("/")
            found.append((kind, mine if mine.is_dir() else root))  # a cgroup namespace shows its root only
    if not found and "" in own and (CGROUP_FS / "cgroup.controllers").exists():
        mine = CGROUP_FS / own[""].lstrip("/")
        found.append(("v2", mine if mine.is_dir() else CGROUP_FS))
    return found


def _write(path: Path, value: str) -> bool:
    try:
        path.write_text(value)
        return True
    except OSError:
        return False


def _sweep(parent: Path) -> None:
    """Groups of a harness that died (kill -9): their processes are killed and the groups removed."""
    with contextlib.suppress(OSError):
        for d in parent.glob(f"overnight-{_PIDNS}-*-*"):
            owner = d.name.split("-")[2]
            if owner.isdigit() and not psutil.pid_exists(int(owner)):
                RunGroup([("", d)], Caps()).close()


class RunGroup:
    """One run's cgroup(s). `attach()` runs in the child before exec; `kill()` ends every member."""

    def __init__(self, dirs: list[tuple[str, Path]], caps: Caps):
        self.dirs, self.caps = dirs, caps
        self._procs = [d / "cgroup.procs" for _, d in dirs]

    @classmethod
    def create(cls, caps: Caps | None = None) -> RunGroup | None:
        caps = caps or Caps()
        name = f"overnight-{_PIDNS}-{os.getpid()}-{next(_counter)}"
        made: list[tuple[str, Path]] = []
        for kind, parent in _parents():
            _sweep(parent)
            d = parent / name
            try:
                d.mkdir()
            except OSError:
                continue
            made.append((kind, d))
            if kind == "v2":  # controllers must be enabled by the parent (may fail: no internal processes)
                _write(parent / "cgroup.subtree_control", "+pids +memory")
        if not made:
            return None
        group = cls(made, caps)
        if not group._apply():
            group.close()
            return None
        return group

    def _apply(self) -> bool:
        """Write the caps; False when a cap was asked for and no hierarchy could hold it."""
        c = self.caps
        held_p = held_m = False
        for kind, d in self.dirs:
            if c.processes is not None and kind in ("pids", "v2"):
                held_p |= _write(d / "pids.max", str(c.processes))
            if c.memory_bytes is not None and kind == "memory":
                held_m |= _write(d / "memory.limit_in_bytes", str(c.memory_bytes))
                _write(d / "memory.memsw.limit_in_bytes", str(c.memory_bytes))  # no escape into swap
            if c.memory_bytes is not None and kind == "v2":
                held_m |= _write(d / "memory.max", str(c.memory_bytes))
                _write(d / "memory.swap.max", "0")
        return (c.processes is None or held_p) and (c.memory_bytes is None or held_m)

    def attach(self, pid: int = 0) -> None:
        """Move `pid` (0: the calling process) into every hierarchy of the group."""
        for procs in self._procs:
            procs.write_text(str(pid or os.getpid()))

    def pids(self) -> set[int]:
        out: set[int] = set()
        for procs in self._procs[:1]:  # every member is in every hierarchy: one list is enough
            with contextlib.suppress(OSError):
                out |= {int(x) for x in procs.read_text().split()}
        return out

    def kill(self, rounds: int = 50) -> None:
        """SIGKILL every member until none is left (a forking member is caught on a later round)."""
        for kind, d in self.dirs:
            if kind == "v2":
                _write(d / "cgroup.kill", "1")
        for _ in range(rounds):
            members = self.pids()
            if not members:
                return
            for pid in members:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01)

    def close(self) -> None:
        self.kill()
        for _, d in reversed(self.dirs):
            for _ in range(50):  # a killed member leaves the group once reaped
                try:
                    d.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.02)
