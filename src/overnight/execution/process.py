"""One supervised process: its own process group, a hard timeout that kills the whole
tree, output captured to a size-capped log, peak memory of the tree sampled.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from overnight.core.measurements import printable
from overnight.execution.fingerprint import nvidia_smi
from overnight.execution.limits import Caps, RunGroup

MARKER = "OVERNIGHT_RUN_TOKEN"  # every process we start carries it, so strays can be found by env
SAMPLE_SECONDS = 0.2
TAIL_BYTES = 64 * 1024


@dataclass
class ProcessResult:
    exit_code: int | None
    timed_out: bool
    interrupted: bool
    wall_seconds: float
    peak_rss_bytes: int
    log_path: Path
    tail: str
    dropped_bytes: int = 0
    gpu_peak_bytes: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def killed_by_sigkill(self) -> bool:
        return self.exit_code == -signal.SIGKILL


def _preexec(group: RunGroup | None = None):
    def setup() -> None:
        os.setsid()
        with contextlib.suppress(Exception):  # die with the loop (Linux); grandchildren are found by MARKER
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if group is not None:
            with contextlib.suppress(OSError):  # the parent checks membership and retries from outside
                group.attach()

    return setup


def processes_with_marker(token: str | None = None) -> list[psutil.Process]:
    """Processes whose environment carries our marker (optionally a specific token)."""
    found = []
    me = os.getpid()
    for p in psutil.process_iter(["pid"]):
        if p.pid == me:
            continue
        try:
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        value = env.get(MARKER)
        if value is not None and (token is None or value == token or value.startswith(token)):
            found.append(p)
    return found


def kill_tree(pgid: int | None, token: str | None) -> None:
    """SIGKILL the process group and anything else that carries the run's token (setsid escapees)."""
    if pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGKILL)
    if token:
        for p in processes_with_marker(token):
            with contextlib.suppress(psutil.Error):
                p.kill()


def _end(pgid: int, token: str, group: RunGroup | None, seen: dict[int, float]) -> None:
    """Kill the whole run: its cgroup, its process group, its marked processes, every process seen in it."""
    if group is not None:
        group.kill()
    kill_tree(pgid, token)
    _kill_seen(seen)


class _LogPump(threading.Thread):
    """Copy a pipe to a file up to `cap` bytes, then keep only a rolling tail."""

    def __init__(self, pipe, path: Path, cap: int):
        super().__init__(daemon=True)
        self.pipe, self.path, self.cap = pipe, path, cap
        self.written = 0
        self.dropped = 0
        self.tail: deque[bytes] = deque()
        self.tail_len = 0

    def run(self) -> None:
        with open(self.path, "wb") as out:
            while chunk := self.pipe.read1(65536):
                if self.written < self.cap:
                    room = self.cap - self.written
                    out.write(chunk[:room])
                    self.written += min(room, len(chunk))
                    chunk = chunk[room:]
                if chunk:
                    self.dropped += len(chunk)
                    self.tail.append(chunk)
                    self.tail_len += len(chunk)
                    while self.tail_len - len(self.tail[0]) >= TAIL_BYTES:
                        self.tail_len -= len(self.tail.popleft())
            if self.dropped:
                kept = b"".join(self.tail)[-TAIL_BYTES:]
                self.dropped -= len(kept)
                out.write(f"\n[overnight: log cap reached, {self.dropped} bytes dropped]\n".encode())
                out.write(kept)


def _tree_rss(proc: psutil.Process, seen: dict[int, float] | None = None) -> int:
    """Resident memory of the tree; every member is also remembered in `seen` (pid -> start time)."""
    total = 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.Error:
        return 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += p.memory_info().rss
            if seen is not None and p.pid not in seen:
                seen[p.pid] = p.create_time()
    return total


def _kill_seen(seen: dict[int, float]) -> None:
    """SIGKILL every process once seen in the tree that still runs (the same process: same start time)."""
    for pid, started in seen.items():
        with contextlib.suppress(psutil.Error):
            p = psutil.Process(pid)
            if p.create_time() == started:
                p.kill()


def _gpu_bytes(proc: psutil.Process) -> int:
    """GPU memory used by the tree, from nvidia-smi (only called when a GPU is present)."""
    try:
        pids = {proc.pid, *(c.pid for c in proc.children(recursive=True))}
    except psutil.Error:
        return 0
    total = 0
    for line in nvidia_smi("--query-compute-apps=pid,used_memory", timeout=5):
        pid, _, mib = line.partition(",")
        if pid.strip().isdigit() and int(pid) in pids and mib.strip().isdigit():
            total += int(mib) * 2**20
    return total


def read_tail(path: Path, nbytes: int = 4000) -> str:
    """The end of a log as safe text: it becomes reasons shown in terminals and stored by a hub (no NUL, no escapes)."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - nbytes))
        return printable(f.read().decode(errors="replace"))


def run_process(
    command: str | list[str],
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    log_path: Path,
    log_cap_bytes: int = 20 * 2**20,
    stop: threading.Event | None = None,
    on_start=None,
    caps: Caps | None = None,
) -> ProcessResult:
    """Run `command` (a shell string or argv) and supervise it until exit, timeout or `stop`.

    The tree runs in its own cgroup where one can be made (with `caps`), and every process of it,
    detached or not, is killed when the command ends."""
    token = env.get(MARKER) or ""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    argv = ["/bin/sh", "-c", command] if isinstance(command, str) else command
    group = RunGroup.create(caps)
    start = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, preexec_fn=_preexec(group), close_fds=True,
        )
    except BaseException:
        if group is not None:
            group.close()
        raise
    try:
        return _supervise(proc, group, token, start, timeout, log_path, log_cap_bytes, stop, on_start)
    finally:
        if group is not None:
            group.close()


def _supervise(proc: subprocess.Popen, group: RunGroup | None, token: str, start: float, timeout: float,
               log_path: Path, log_cap_bytes: int, stop: threading.Event | None, on_start) -> ProcessResult:
    if group is not None and proc.pid not in group.pids():
        with contextlib.suppress(OSError):
            group.attach(proc.pid)
    seen: dict[int, float] = {}
    if on_start:
        on_start(proc.pid)
    pump = _LogPump(proc.stdout, log_path, log_cap_bytes)
    pump.start()
    ps = psutil.Process(proc.pid)
    peak = gpu_peak = 0
    gpu = shutil.which("nvidia-smi") is not None
    next_gpu = start
    timed_out = interrupted = False
    deadline = start + timeout
    while True:
        try:
            code = proc.wait(timeout=SAMPLE_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        peak = max(peak, _tree_rss(ps, seen))
        if gpu and time.monotonic() >= next_gpu:  # nvidia-smi is slow: once a second is plenty
            gpu_peak, next_gpu = max(gpu_peak, _gpu_bytes(ps)), time.monotonic() + 1.0
        if time.monotonic() > deadline:
            timed_out = True
        elif stop is not None and stop.is_set():
            interrupted = True
        if timed_out or interrupted:
            _end(proc.pid, token, group, seen)
            code = proc.wait()
            break
    # The direct child may exit while grandchildren linger holding the pipe: reap them too.
    _end(proc.pid, token, group, seen)
    pump.join(timeout=5)
    wall = time.monotonic() - start
    return ProcessResult(
        exit_code=code, timed_out=timed_out, interrupted=interrupted, wall_seconds=wall,
        peak_rss_bytes=peak, log_path=log_path, tail=read_tail(log_path), dropped_bytes=pump.dropped,
        gpu_peak_bytes=gpu_peak,
    )
