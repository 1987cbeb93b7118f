"""The Ray executor: one Ray task per run, the ledger and git stay on the driver.

A task whose worker or node dies is submitted again (the same run row, its folder
reset), so a run is never lost and never counted twice. Workers read the track
folder by path: a multi-node cluster needs the track at the same path on every
node (a shared filesystem); see docs/throughput.md.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError

from overnight.core.spec import Spec
from overnight.execution.runner import RunOutcome, execute
from overnight.execution.slots import Done, RunJob, Slot
from overnight.track import Track

MAX_REQUEUES = 3  # a run whose worker dies this often is a crash, not bad luck


def _run(track_dir: str, spec: Spec, job: RunJob) -> RunOutcome:
    """Runs inside a Ray worker: the driver's spec (with its CLI overrides) on the worker's checkout."""
    track = Track(track_dir)
    track.spec = spec
    return execute(track, job.workdir, job.run_dir, job.seed, job.token)


def _fingerprint() -> dict:
    from overnight.execution import fingerprint

    return fingerprint.fingerprint()


def _noop() -> int:
    return os.getpid()


class RayExecutor:
    name = "ray"

    def __init__(self, track: Track, workers: int, stop: threading.Event, address: str | None = None,
                 num_gpus: float | None = None):
        self.track, self.stop = track, stop
        self.requeued = 0
        self._owns_cluster = not ray.is_initialized() and not address
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False, configure_logging=False)
            else:
                # A private local cluster: no dashboard, ports bound to localhost only by default.
                ray.init(num_cpus=max(workers, os.cpu_count() or 1), include_dashboard=False,
                         log_to_driver=False, configure_logging=False)
        if num_gpus is None:
            num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) > 0 else 0.0
        self.num_gpus = num_gpus
        opts: dict[str, Any] = {"num_cpus": 0 if num_gpus else 1, "num_gpus": num_gpus, "max_retries": 0}
        self._task = ray.remote(**opts)(_run)
        self.slots = [Slot(i, f"ray {i}" + (" (1 gpu)" if num_gpus else "")) for i in range(workers)]
        # Start the workers now, so the first runs do not pay for process start-up.
        warm = ray.remote(num_cpus=0 if num_gpus else 1, num_gpus=num_gpus)(_noop)
        ray.get([warm.remote() for _ in range(workers)])
        self._platform = ray.get(ray.remote(num_cpus=0, num_gpus=num_gpus)(_fingerprint).remote())

    def platform(self) -> dict | None:
        return self._platform

    def submit(self, slot: Slot, job: RunJob, done: Done) -> None:
        threading.Thread(target=self._supervise, args=(slot, job, done), name=f"ray-slot-{slot.index}",
                         daemon=True).start()

    def _supervise(self, slot: Slot, job: RunJob, done: Done) -> None:
        attempts = 0
        while True:
            ref = self._task.remote(str(self.track.dir), self.track.spec, job)
            try:
                out = self._wait(ref)
            except TaskCancelledError:
                out = RunOutcome(status="interrupted", metric=None, reason="run interrupted")
            except RayTaskError as e:  # our own code raised inside the task: a crash, not a lost worker
                out = RunOutcome(status="crash", metric=None, reason=f"harness error in the Ray task: {e}")
            except RayError as e:  # the worker or its node died: the run goes back in the queue
                attempts += 1
                if self.stop.is_set():
                    out = RunOutcome(status="interrupted", metric=None, reason="run interrupted")
                elif attempts <= MAX_REQUEUES:
                    self.requeued += 1
                    continue
                else:
                    out = RunOutcome(status="crash", metric=None,
                                     reason=f"the Ray worker died {attempts} times: {type(e).__name__}")
            done(out)
            return

    def _wait(self, ref: Any) -> RunOutcome:
        while True:
            if self.stop.is_set():
                ray.cancel(ref, force=True)  # kills the worker; the run's processes die with it
                raise TaskCancelledError()
            try:
                return ray.get(ref, timeout=0.5)
            except GetTimeoutError:
                time.sleep(0)

    def close(self) -> None:
        if self._owns_cluster and ray.is_initialized():
            ray.shutdown()
