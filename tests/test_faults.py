"""kill -9 of slot processes and of the loop itself at random moments, across many experiments,
with N slots: after a final clean run, every experiment is in the ledger exactly once."""

import os
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from conftest import git

from overnight.execution.process import processes_with_marker
from overnight.storage.ledger import FINAL
from overnight.track import Track

RUN = """\
import os, random, time
from params import X, Y
time.sleep(random.uniform(0.2, 0.6))
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("score:", (X - 1) ** 2 + (Y - 5) ** 2 + rng.gauss(0, 0.01))
"""


def recorded(d) -> int:
    db = d / ".overnight" / "ledger.db"
    if not db.exists():
        return 0
    con = sqlite3.connect(db, timeout=30)
    try:
        return con.execute("SELECT count(*) FROM experiments").fetchone()[0]
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0
    finally:
        con.close()


def overnight(*args: str) -> list[str]:
    return [sys.executable, "-c", "from overnight.cli import app; app()", *args]


@pytest.mark.slow
def test_kill_9_slots_and_loop_at_random_then_ledger_is_exact(quad_track):
    d = quad_track(spec_extra='[policy]\nrule = "greedy"\n', files={"run.py": RUN})
    token = Track(d).token
    rng = random.Random(5)
    t_end, t_cap = time.monotonic() + 35, time.monotonic() + 240
    loop_kills = slot_kills = 0
    # 35 s of kills, then on until the ledger holds 8 experiments: a loaded machine makes less progress per second
    while time.monotonic() < t_end or (recorded(d) < 8 and time.monotonic() < t_cap):
        p = subprocess.Popen(overnight("run", str(d), "--workers", "3", "--max-experiments", "8"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + rng.uniform(1.5, 4.0)
        while time.monotonic() < deadline and p.poll() is None:
            time.sleep(rng.uniform(0.2, 0.5))
            runs = processes_with_marker(f"{token}:")
            if runs and rng.random() < 0.3:
                victim = rng.choice(runs)
                try:
                    victim.kill()
                    slot_kills += 1
                except Exception:
                    pass
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            loop_kills += 1
        p.wait()
    assert loop_kills >= 3 and slot_kills >= 1, (loop_kills, slot_kills)
    r = subprocess.run(overnight("run", str(d), "--workers", "3", "--max-experiments", "3"), capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr

    track = Track(d)
    exps = track.ledger.experiments()
    assert len(exps) >= 8
    assert all(e.status in FINAL for e in exps), [(e.id, e.status) for e in exps]
    # A killed baseline run is a failed baseline (recorded, the loop stops); the next start measures afresh.
    assert sum(1 for e in exps if e.meta.get("baseline") and e.status == "keep") == 1
    commits = [e.commit for e in exps if e.commit and not e.meta.get("baseline")]
    assert len(commits) == len(set(commits))  # no candidate recorded twice
    refs = git(d, "for-each-ref", "--format=%(refname) %(objectname)", "refs/overnight/quad/").split("\n")
    by_ref = dict(line.split() for line in refs if line)
    for e in exps:
        runs = track.ledger.runs(e.id)
        assert all(r.finished_at is not None for r in runs), e.id  # no half-finished run left behind
        if e.status in ("keep", "discard", "crash", "oom", "timeout", "nan", "no_metric"):
            assert len(runs) == 1, (e.id, e.status, len(runs))  # the greedy policy needs exactly one run
            assert by_ref[f"refs/overnight/quad/{e.id}"] == e.commit
    kept = [e for e in exps if e.status == "keep"]
    assert git(d, "rev-parse", "overnight/quad").strip() == kept[-1].commit
    for a, b in zip(kept, kept[1:], strict=False):
        assert b.parent_commit == a.commit
    assert processes_with_marker(f"{token}:") == []
    assert git(d, "worktree", "list").count("\n") == 2  # the main checkout and the trusted one
    assert os.listdir(d / ".overnight" / "worktrees") == []
