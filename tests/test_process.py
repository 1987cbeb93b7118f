import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from overnight.execution import limits
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


STRAY = ("import subprocess, sys, time\n"
         "time.sleep(float(sys.argv[1]))\n"
         "subprocess.Popen(['setsid', 'sh', '-c', 'trap \"\" TERM HUP; exec env -i sleep ' + sys.argv[2]],\n"
         "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
         "time.sleep(float(sys.argv[1]))\n")


def _cgroups(caps: limits.Caps | None = None) -> bool:
    group = limits.RunGroup.create(caps)
    if group is not None:
        group.close()
    return group is not None


def _alive(arg: str) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if p.info["cmdline"] and arg in p.info["cmdline"]]


@pytest.mark.parametrize("cgroup", [True, False])
def test_a_detached_stray_with_a_cleared_env_dies_with_its_run(tmp_path: Path, monkeypatch, cgroup):
    # Without cgroups the tree is tracked by snapshots: the stray is seen while the run still lives.
    if not cgroup:
        monkeypatch.setattr(limits.RunGroup, "create", classmethod(lambda cls, caps=None: None))
    elif not _cgroups():
        pytest.skip("no writable cgroup here")
    arg = f"3{os.getpid() % 1000}.{int(cgroup)}{time.time_ns() % 10**6}"
    (tmp_path / "stray.py").write_text(STRAY)
    res = run_process(f"{sys.executable} stray.py {0 if cgroup else 0.5} {arg}", tmp_path, _env("stray:"),
                      timeout=30, log_path=tmp_path / "log")
    assert res.exit_code == 0
    time.sleep(0.2)
    left = _alive(arg)
    for p in left:
        p.kill()
    assert not left


def test_process_and_memory_caps_bind_root(tmp_path: Path):
    if not _cgroups(limits.Caps(processes=10, memory_bytes=2**30)):
        pytest.skip("no writable cgroup with pids and memory here")
    forks = ("import subprocess\nkids = []\nfor _ in range(60):\n    try:\n"
             "        kids.append(subprocess.Popen(['sleep', '20']))\n    except OSError:\n        break\n"
             "print('held:', len(kids))\nfor k in kids:\n    k.kill()\n")
    (tmp_path / "forks.py").write_text(forks)
    res = run_process(f"{sys.executable} forks.py", tmp_path, _env("caps:"), timeout=30, log_path=tmp_path / "log",
                      caps=limits.Caps(processes=10))
    held = int(res.tail.split("held:")[1].split()[0])
    assert held < 10, res.tail
    grow = f"{sys.executable} -c \"b = b'x' * (400 * 2**20); print('grew')\""
    res = run_process(grow, tmp_path, _env("caps:"), timeout=30, log_path=tmp_path / "log2",
                      caps=limits.Caps(memory_bytes=100 * 2**20))
    assert res.exit_code != 0 and "grew" not in res.tail


def test_the_groups_of_a_killed_harness_are_swept(tmp_path: Path):
    if not _cgroups():
        pytest.skip("no writable cgroup here")
    arg = f"3{time.time_ns() % 10**7}"
    dead = ("import os, subprocess, sys\nfrom overnight.execution.limits import RunGroup\n"
            "g = RunGroup.create()\n"
            f"p = subprocess.Popen(['setsid', 'sleep', '{arg}'], preexec_fn=g.attach, stdout=-3, stderr=-3)\n"
            "print(g.dirs[0][1], flush=True)\nos._exit(0)  # like kill -9: the group is never closed\n")
    out = subprocess.run([sys.executable, "-c", dead], capture_output=True, text=True, timeout=30, check=True)
    folder = Path(out.stdout.strip())
    assert folder.is_dir() and _alive(arg)
    assert _cgroups()  # the next harness's first group sweeps the dead one's
    time.sleep(0.1)
    assert not folder.exists() and not _alive(arg)
