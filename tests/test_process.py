import os
import sys
import time
from pathlib import Path

import psutil

from overnight.execution.process import MARKER, processes_with_marker, run_process


def _env(token: str) -> dict[str, str]:
    return {**os.environ, MARKER: token}


def test_timeout_kills_children_and_grandchildren(tmp_path: Path):
    # A parent that spawns a sleeping child and a setsid'd grandchild, then loops forever.
    script = tmp_path / "forever.py"
    script.write_text(
        "import subprocess, time, os\n"
        "subprocess.Popen(['sleep', '300'])\n"
        "subprocess.Popen(['setsid', 'sleep', '301'])\n"
        "print('started', flush=True)\n"
        "while True: time.sleep(0.1)\n"
    )
    token = f"test-{os.getpid()}-timeout:"
    t0 = time.monotonic()
    res = run_process(f"{sys.executable} {script}", tmp_path, _env(token), timeout=1.0, log_path=tmp_path / "log")
    assert res.timed_out and not res.interrupted
    assert time.monotonic() - t0 < 8
    time.sleep(0.2)
    assert processes_with_marker(token) == []
    assert "started" in res.tail


def test_log_is_capped_and_keeps_the_tail(tmp_path: Path):
    # 8 MB of noise then the metric line: the file stays near the cap and the last line survives.
    cmd = f"{sys.executable} -c \"import sys; [sys.stdout.write('x' * 1023 + chr(10)) for _ in range(8192)]; print('score: 1.5')\""
    res = run_process(cmd, tmp_path, _env("cap:"), timeout=30, log_path=tmp_path / "log", log_cap_bytes=2**20)
    assert res.exit_code == 0
    size = (tmp_path / "log").stat().st_size
    assert 2**20 <= size < 2**20 + 70 * 1024
    assert res.dropped_bytes > 6 * 2**20
    assert res.tail.rstrip().endswith("score: 1.5")


def test_peak_memory_of_the_tree_is_measured(tmp_path: Path):
    cmd = f"{sys.executable} -c \"b = bytearray(200 * 2**20); import time; time.sleep(1.0)\""
    res = run_process(cmd, tmp_path, _env("mem:"), timeout=30, log_path=tmp_path / "log")
    assert res.exit_code == 0
    assert res.peak_rss_bytes > 150 * 2**20


def test_marker_is_found_by_env(tmp_path: Path):
    token = f"find-{os.getpid()}:"
    p = psutil.Popen(["sleep", "30"], env=_env(token))
    try:
        time.sleep(0.1)
        assert [q.pid for q in processes_with_marker(token)] == [p.pid]
    finally:
        p.kill()
        p.wait()
