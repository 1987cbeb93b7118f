"""Containment at the edges, through a real loop or the CLI (issue 11, findings 9-13 outside the hub):
the sandbox's environment and caps, strays without a sandbox, huge metrics, stale ref locks, a full disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from test_containment import TRAIN, Scripted, build, run_loop, write

from overnight.loop import Limits, Loop
from overnight.track import Track

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
LEAKY = {"DATABASE_URL": "postgres://u:pw@db/prod", "REDIS_URL": "redis://:pw@cache", "SENTRY_DSN": "https://k@s/1",
         "PIP_INDEX_URL": "https://u:pw@pypi.corp/simple", "GH_PAT": "ghp_x", "CI_JOB_JWT": "eyJx", "DEPLOY_PASS": "pw"}


def overnight(*args: str) -> list[str]:
    return [sys.executable, "-c", "from overnight.cli import app; app()", *args]


@needs_bwrap
@pytest.mark.parametrize("pass_env", [False, True])
def test_env_is_an_allow_list_and_a_track_can_add_names(tmp_path, monkeypatch, pass_env):
    # Finding 11: the environment was a deny-list; DATABASE_URL, GH_PAT, *_PASS and the like reached runs.
    for k, v in LEAKY.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("MY_TRACK_SETTING", "42")
    cheat = TRAIN.replace("json.dump(", f"leaked = [k for k in {sorted(LEAKY)!r} if os.environ.get(k)]\n"
                          "print('leaked:', len(leaked))\nprint('setting:', os.environ.get('MY_TRACK_SETTING', 0))\n"
                          "if leaked:\n    x = 1.0\njson.dump(")
    track = build(tmp_path, run_extra='pass_env = ["MY_TRACK_SETTING"]' if pass_env else "")
    exps = run_loop(track, [("read the environment", write("train.py", cheat))])
    exp = exps["read the environment"]
    assert exp.status != "keep", exp.reason
    runs = track.ledger.runs(exp.id)
    assert runs and all(r.measurements["leaked"] == 0 for r in runs)
    assert all(r.measurements["setting"] == (42 if pass_env else 0) for r in runs)


FORK_AND_GROW = TRAIN.replace("json.dump(", (
    "import subprocess, time\nkids = []\n"
    "for _ in range(120):\n"
    "    try:\n        kids.append(subprocess.Popen(['sleep', '30']))\n    except OSError:\n        break\n"
    "print('held:', len(kids))\n"
    "for k in kids:\n    k.kill()\n"
    "try:\n    blob = b'x' * (600 * 2**20)\n    print('allocated: 1')\nexcept MemoryError:\n    print('allocated: 0')\n"
    "json.dump("))


def _check_capped(track: Track, exps: dict, cap: int) -> None:
    exp = exps["fork and grow"]
    run = track.ledger.runs(exp.id)[0]
    assert exp.status in ("oom", "crash"), (exp.status, exp.reason)
    log = Path(run.log_path).read_text()
    held = [int(line.split()[1]) for line in log.splitlines() if line.startswith("held:")]
    assert held and held[0] < cap, log[-2000:]
    assert "allocated: 1" not in log


@needs_bwrap
def test_the_sandbox_caps_hold_as_root(tmp_path, monkeypatch):
    # Finding 11: as root RLIMIT_NPROC does not bind (4,300 processes held against 4,096), no memory cap.
    from overnight.execution import sandbox

    monkeypatch.setattr(sandbox, "MAX_PROCESSES", 40)  # the documented default, scaled down for the test
    try:
        from overnight.execution import limits

        monkeypatch.setattr(limits, "default_memory_bytes", lambda: 300 * 2**20)
    except ImportError:  # the code before per-run cgroups
        pass
    track = build(tmp_path)
    _check_capped(track, run_loop(track, [("fork and grow", write("train.py", FORK_AND_GROW))]), 40)


@needs_bwrap
def test_a_track_sets_its_own_caps(tmp_path):
    track = build(tmp_path, run_extra="max_processes = 30\nmax_memory_gb = 0.3")
    _check_capped(track, run_loop(track, [("fork and grow", write("train.py", FORK_AND_GROW))]), 30)


@needs_bwrap
def test_host_network_interfaces_and_kernel_symbols_are_hidden(tmp_path):
    probe = TRAIN.replace("json.dump(", (
        "import pathlib\nnet = pathlib.Path('/sys/class/net')\n"
        "print('interfaces:', len(list(net.iterdir())) if net.is_dir() else 0)\n"
        "try:\n    syms = open('/proc/kallsyms').read()\nexcept OSError:\n    syms = ''\n"
        "print('symbols:', len(syms))\njson.dump("))
    track = build(tmp_path)
    exps = run_loop(track, [("look around", write("train.py", probe))])
    run = track.ledger.runs(exps["look around"].id)[0]
    assert run.measurements["interfaces"] == 0 and run.measurements["symbols"] == 0


def test_detached_strays_do_not_survive_a_run_without_the_sandbox(tmp_path):
    # Finding 11: without the sandbox, a setsid stray that clears its env and ignores SIGTERM outlived the run.
    tag = f"{uuid.uuid4().int % 10**6}.{os.getpid()}"
    stray = TRAIN + (
        "import subprocess\n"
        f"subprocess.Popen(['setsid', 'sh', '-c', 'trap \"\" TERM HUP; exec env -i sleep 3{tag}'],\n"
        "                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n")
    track = build(tmp_path, sandbox="none")
    run_loop(track, [("leave a stray", write("train.py", stray))])
    time.sleep(0.3)
    alive = [p for p in psutil.process_iter(["cmdline"]) if f"3{tag}" in " ".join(p.info["cmdline"] or [])]
    for p in alive:
        p.kill()
    assert not alive, "a detached stray outlived its run"


def test_huge_and_infinite_metrics_are_outcomes_not_crashes(tmp_path):
    # Finding 9: a run printing ±1e200 crashed the loop (OverflowError), and resume crashed again.
    track = build(tmp_path, sandbox="none")
    exps = run_loop(track, [("huge", write("params.py", "X = 1e100\n")), ("inf", write("params.py", "X = float('inf')\n"))])
    assert exps["huge"].status == "nan" and "beyond" in exps["huge"].reason
    assert exps["inf"].status == "nan"
    # A ledger written by the old code: an undecided experiment holding a finished run at 1e200.
    huge = exps["huge"]
    left = track.ledger.add_experiment(tag=huge.tag, parent_commit=huge.parent_commit, commit=huge.commit,
                                       proposer="scripted", description="left by a crash", status="running",
                                       meta={}, platform=huge.platform)
    track.ledger.add_run(experiment_id=left.id, seed=1, status="ok", metric=-1e200, finished_at=time.time(),
                         platform_key=huge.platform["key"], log_path=huge.meta.get("log", ""))
    again = Track(track.dir)
    Loop(again, Scripted([("honest", write("params.py", "X = 2.0\n"))]), limits=Limits(max_experiments=2)).run()
    statuses = {e.description: e.status for e in again.ledger.experiments()}
    assert statuses["left by a crash"] == "nan" and statuses["honest"] == "keep", statuses


def test_a_stale_ref_lock_from_a_killed_process_is_recovered(tmp_path):
    # Finding 12: a leftover refs/heads/overnight/<tag>.lock turned a clear win into "another keep moved
    # the branch meanwhile".
    track = build(tmp_path, sandbox="none")
    lock = track.dir / ".git" / "refs" / "heads" / "overnight" / "contain.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("0" * 40 + "\n")
    kept = track.dir / ".git" / "refs" / "overnight" / "contain" / "2.lock"  # the candidate's own ref
    kept.parent.mkdir(parents=True)
    kept.write_text("0" * 40 + "\n")
    exps = run_loop(track, [("honest", write("params.py", "X = 2.0\n"))])
    assert exps["honest"].status == "keep", exps["honest"].reason
    assert track.repo.resolve("refs/heads/overnight/contain") == exps["honest"].commit


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tiny filesystem needs root")
def test_a_full_disk_is_one_clear_line_and_the_ledger_resumes(tmp_path):
    # Finding 12: a full disk gave a raw traceback (the ledger itself stayed intact).
    import sqlite3

    fill = TRAIN + ("if os.environ.get('CONTAIN_FILL'):\n    try:\n"
                    "        with open(os.path.join(os.environ['OVERNIGHT_ARTIFACTS'], 'fill'), 'wb') as f:\n"
                    "            while True:\n                f.write(b'x' * 2**16)\n"
                    "    except OSError:\n        pass\n")
    track = build(tmp_path, sandbox="none", train=fill,
                  spec_extra='[[search]]\nfile = "params.py"\nname = "X"\nlow = 0\nhigh = 4\n')
    state = track.dir / ".overnight"
    state.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(state)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        res = subprocess.run(overnight("run", str(track.dir), "--max-experiments", "1"), capture_output=True,
                             text=True, timeout=120, env={**os.environ, "CONTAIN_FILL": "1"})
        assert res.returncode != 0
        assert "Traceback" not in res.stderr, res.stderr[-3000:]
        errors = [line for line in res.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and ("full" in errors[0] or "space" in errors[0]), res.stderr[-3000:]
        for f in state.rglob("fill"):
            f.unlink()
        with sqlite3.connect(state / "ledger.db") as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        again = subprocess.run(overnight("run", str(track.dir), "--max-experiments", "1"), capture_output=True,
                               text=True, timeout=120)
        assert again.returncode == 0, again.stderr[-3000:]
    finally:
        subprocess.run(["umount", "-l", str(state)])


def test_a_locked_ledger_is_recognised_as_a_host_failure(tmp_path):
    # Finding 12: a ledger locked by another process gave a raw traceback; the CLI now says so in one line.
    import sqlite3

    from overnight.execution.host import host_failure
    from overnight.storage.ledger import Ledger

    track = build(tmp_path, sandbox="none")
    track.ensure_state()
    db = track.paths.state / "ledger.db"
    Ledger.for_track(track.paths.state).close()
    holder = sqlite3.connect(db, timeout=0.1)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        writer = sqlite3.connect(db, timeout=0.1)
        with pytest.raises(sqlite3.OperationalError) as e:
            writer.execute("CREATE TABLE t (x)")
        why = host_failure(RuntimeError("while writing the ledger")) or host_failure(e.value)
        assert why is not None and "locked by another process" in why
        assert host_failure(ValueError("an ordinary bug")) is None
    finally:
        holder.rollback()
        holder.close()
