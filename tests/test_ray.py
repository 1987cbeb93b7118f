"""The Ray executor on a private local cluster: same ledger shape as local, a dead worker re-queues its run."""

import threading
import time

import psutil
import pytest

from overnight.bench.duty import SleepProposer, sleep_track
from overnight.execution.process import processes_with_marker
from overnight.loop import Limits, Loop
from overnight.track import Track

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_loop_requeues_a_run_whose_worker_dies(tmp_path):
    d = sleep_track(tmp_path, "rayt", 1.5)
    track = Track(d)
    loop = Loop(track, SleepProposer(0.0), limits=Limits(max_experiments=6), workers=2, executor="ray")
    killed: list[int] = []

    def kill_a_worker() -> None:
        deadline = time.time() + 90
        while time.time() < deadline and not killed:
            exps = [e for e in track.ledger.experiments() if not e.meta.get("baseline") and e.status == "running"]
            procs = processes_with_marker(f"{track.token}:") if exps else []
            if procs:
                try:
                    worker = psutil.Process(procs[0].pid).parent()  # the Ray worker running the task
                    if worker is not None and "ray" in " ".join(worker.cmdline()).lower():
                        worker.kill()
                        killed.append(worker.pid)
                except psutil.Error:
                    pass
            time.sleep(0.2)

    t = threading.Thread(target=kill_a_worker, daemon=True)
    t.start()
    try:
        loop.run()
    finally:
        ray.shutdown()
    t.join(5)
    assert killed, "no Ray worker was found to kill"
    assert loop.executor is not None and loop.executor.requeued >= 1
    exps = track.ledger.experiments()
    assert len(exps) == 6 and {e.status for e in exps} <= {"keep", "discard"}
    for e in exps:  # re-queued, not lost and not counted twice
        runs = track.ledger.runs(e.id)
        assert len(runs) == 1 and runs[0].finished_at and runs[0].status == "ok"
    assert {e.slot for e in exps if not e.meta.get("baseline")} <= {0, 1}
    assert processes_with_marker(f"{track.token}:") == []
