"""Executors: where runs happen. Local slots (one per GPU, or a core set each) or a Ray cluster.

An executor only runs things and reports outcomes; the ledger and git stay with the loop
(the driver), so every executor produces results of the same shape.
"""

from __future__ import annotations

import contextlib
import os
import threading
from typing import Any

import psutil

from overnight.execution.fingerprint import nvidia_smi
from overnight.execution.runner import RunOutcome, execute
from overnight.execution.slots import Done, Executor, RunJob, Slot
from overnight.track import Track

__all__ = ["Done", "Executor", "LocalExecutor", "RunJob", "Slot", "make_executor", "plan_slots"]

def visible_gpus() -> list[str]:
    """GPU ids this process may use: CUDA_VISIBLE_DEVICES when set, else what nvidia-smi lists."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
    return nvidia_smi("--query-gpu=index")


def allowed_cores() -> list[int]:
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS has no affinity API: slots share all cores
        return list(range(os.cpu_count() or 1))


def plan_slots(workers: int, gpus: list[str] | None = None, cores: list[int] | None = None) -> list[Slot]:
    """GPU slots get one GPU each (round-robin past the count); CPU slots split the cores evenly."""
    gpus = visible_gpus() if gpus is None else gpus
    cores = allowed_cores() if cores is None else cores
    slots = []
    for i in range(workers):
        if gpus:
            g = gpus[i % len(gpus)]
            slots.append(Slot(i, f"gpu {g}", env={"CUDA_VISIBLE_DEVICES": g}))
        elif workers == 1 or len(cores) < workers:
            # one slot, or more slots than cores: pinning would only add contention
            slots.append(Slot(i, "cpu", cores=None))
        else:
            per = len(cores) // workers
            mine = cores[i * per:(i + 1) * per]
            slots.append(Slot(i, f"cpus {mine[0]}-{mine[-1]}" if len(mine) > 1 else f"cpu {mine[0]}", cores=mine))
    return slots


class SlotTrack:
    """The track as a slot sees it: the same everything, plus the slot's environment."""

    def __init__(self, track: Track, env: dict[str, str]):
        self._track, self._env = track, env

    def __getattr__(self, name: str) -> Any:
        return getattr(self._track, name)

    def base_env(self) -> dict[str, str]:
        return {**self._track.base_env(), **self._env}


def pin(pid: int, cores: list[int] | None) -> None:
    """Pin a freshly started run (and anything it already forked) to the slot's cores."""
    if not cores:
        return
    with contextlib.suppress(psutil.Error, OSError, AttributeError):
        proc = psutil.Process(pid)
        for p in [proc, *proc.children(recursive=True)]:
            with contextlib.suppress(psutil.Error, OSError):
                os.sched_setaffinity(p.pid, cores)


class LocalExecutor:
    """Runs on this machine: one thread per running slot, each supervising its process tree."""

    name = "local"

    def __init__(self, track: Track, workers: int, stop: threading.Event, slots: list[Slot] | None = None):
        self.track, self.stop = track, stop
        self.slots = slots or plan_slots(workers)
        self.requeued = 0
        self.pids: dict[int, int] = {}  # slot index -> pid of its running process

    def submit(self, slot: Slot, job: RunJob, done: Done) -> None:
        def work() -> None:
            if slot.cores:  # pins this thread only (Linux); the run forked from it inherits the core set
                with contextlib.suppress(AttributeError, OSError):
                    os.sched_setaffinity(0, slot.cores)

            def started(pid: int) -> None:
                self.pids[slot.index] = pid
                pin(pid, slot.cores)  # where a thread's affinity is not inherited, pin the tree now

            try:
                out = execute(SlotTrack(self.track, slot.env), job.workdir, job.run_dir, job.seed, job.token,
                              stop=self.stop, on_start=started)
            except Exception as e:  # a harness bug is a crashed run, never a silent hang
                out = RunOutcome(status="crash", metric=None, reason=f"harness error: {type(e).__name__}: {e}")
            self.pids.pop(slot.index, None)
            done(out)

        threading.Thread(target=work, name=f"slot-{slot.index}", daemon=True).start()

    def platform(self) -> dict | None:
        return None

    def close(self) -> None:
        pass


def make_executor(kind: str, track: Track, workers: int, stop: threading.Event,
                  address: str | None = None) -> Executor:
    if workers < 1:
        raise ValueError("--workers must be at least 1")
    if kind == "local":
        if address:
            raise ValueError("--ray-address needs --executor ray")
        return LocalExecutor(track, workers, stop)
    if kind == "ray":
        from overnight.execution.ray_executor import RayExecutor

        return RayExecutor(track, workers, stop, address=address)
    raise ValueError(f"unknown executor {kind!r}: choose local or ray")
