"""kill -9 and Ctrl-C of `overnight run`: the next run resumes, nothing lost or counted twice."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import git

from overnight.execution.process import processes_with_marker
from overnight.storage.ledger import Ledger
from overnight.track import Track

SLOW_RUN = """\
import os, random, subprocess, time
from params import X, Y
subprocess.Popen(["sleep", "120"])  # a child that would outlive a careless harness
time.sleep(float(os.environ["OVERNIGHT_BUDGET_SECONDS"]))
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("score:", (X - 1) ** 2 + (Y - 5) ** 2 + rng.gauss(0, 0.01))
"""


def overnight(*args: str) -> list[str]:
    return [sys.executable, "-c", "from overnight.cli import app; app()", *args]


def wait_for(pred, timeout: float = 30.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached")


def running_candidate(d: Path):
    db = d / ".overnight" / "ledger.db"
    if not db.exists():
        return None
    led = Ledger(f"sqlite:///{db}")
    try:
        exps = [e for e in led.experiments() if e.status == "running" and not e.meta.get("baseline")]
        return exps[0] if exps and led.runs(exps[0].id) else None
    finally:
        led.close()


def _slow_track(quad_track) -> Path:
    d = quad_track(spec_extra='[policy]\nrule = "greedy"\n', files={"run.py": SLOW_RUN})
    spec = d / "overnight.toml"
    spec.write_text(spec.read_text().replace("budget_seconds = 5", "budget_seconds = 1.5"))
    git(d, "commit", "-qam", "slow")
    return d


def _check_consistent(d: Path, expected: int) -> None:
    track = Track(d)
    exps = track.ledger.experiments()
    assert len(exps) == expected, [(e.id, e.status) for e in exps]
    assert all(e.status in ("keep", "discard") for e in exps), [e.status for e in exps]
    for e in exps:  # exactly the runs the policy needed, no half-finished leftovers
        runs = track.ledger.runs(e.id)
        assert len(runs) == 1 and runs[0].finished_at is not None
    assert processes_with_marker(f"{track.token}:") == []
    assert git(d, "worktree", "list").count("\n") == 2  # the main checkout and the trusted one
    assert len(os.listdir(d / ".overnight" / "worktrees")) == 0


def test_kill_9_mid_experiment_then_resume(quad_track):
    d = _slow_track(quad_track)
    p = subprocess.Popen(overnight("run", str(d), "--max-experiments", "3"), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    wait_for(lambda: running_candidate(d) is not None)
    victim = running_candidate(d)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    r = subprocess.run(overnight("run", str(d), "--max-experiments", "2"), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"resuming experiment #{victim.id}" in r.stdout or "resum" in r.stdout
    _check_consistent(d, expected=3)
    exps = Track(d).ledger.experiments()
    assert exps[victim.id - 1].commit == victim.commit  # the same candidate, run again in place


def test_ctrl_c_marks_interrupted_and_resumes(quad_track):
    d = _slow_track(quad_track)
    p = subprocess.Popen(overnight("run", str(d), "--max-experiments", "5"), stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    wait_for(lambda: running_candidate(d) is not None)
    p.send_signal(signal.SIGINT)
    out, _ = p.communicate(timeout=30)
    assert p.returncode == 0, out
    track = Track(d)
    assert [e.status for e in track.ledger.experiments()] == ["keep", "interrupted"]
    assert processes_with_marker(f"{track.token}:") == []
    r = subprocess.run(overnight("run", str(d), "--max-experiments", "1"), capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    _check_consistent(d, expected=2)


def test_a_keep_cut_short_between_branch_and_ledger_is_decided_once(quad_track):
    """kill -9 after the branch moved but before the keep was recorded: the ledger decides, nothing twice."""
    from overnight.loop import Limits, Loop
    from overnight.proposers import make_proposer

    d = quad_track(sigma=0.01, spec_extra='[policy]\nrule = "greedy"\n')
    track = Track(d)
    Loop(track, make_proposer("optuna", track, "quad"), limits=Limits(max_experiments=4), lookahead=0).run()
    kept = [e for e in track.ledger.experiments(status={"keep"}) if not e.meta.get("baseline")]
    assert kept, "the quad track's first moves improve it"
    last = kept[-1]
    assert git(d, "rev-parse", "overnight/quad").strip() == last.commit
    track.ledger.update_experiment(last.id, status="running")  # what a kill between the two writes leaves
    track = Track(d)
    Loop(track, make_proposer("optuna", track, "quad"), limits=Limits(max_experiments=1), lookahead=0).run()
    exps = track.ledger.experiments()
    commits = [e.commit for e in exps if e.commit and not e.meta.get("baseline")]
    assert len(commits) == len(set(commits)), [(e.id, e.status, e.reason) for e in exps]
    assert track.ledger.experiment(last.id).status == "keep"
    now_kept = [e for e in track.ledger.experiments(status={"keep"})]
    assert git(d, "rev-parse", "overnight/quad").strip() == now_kept[-1].commit


REPLICATING_LOOP = """\
import sys, threading
from pathlib import Path
from overnight.loop import Limits, Loop
from overnight.proposers.base import Proposal
from overnight.track import Track

class Gain:
    name = "scripted"
    def propose(self, ctx):
        (ctx.workdir / "train.py").write_text(Path(sys.argv[2]).read_text())
        return Proposal(description="real gain", proposer=self.name)
    def observe(self, exp): pass
    def baseline(self, exp): pass

Loop(Track(Path(sys.argv[1])), Gain(), limits=Limits(max_experiments=int(sys.argv[3])), stop=threading.Event()).run()
"""
SLOW_HONEST = """\
import os, random, time
time.sleep(0.3)
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("loss:", {mean} + rng.gauss(0, 0.05))
"""


def test_kill_9_during_replication_redoes_it_on_resume(tmp_path):
    """kill -9 between a keep and the end of its replication: the next loop replicates it again."""
    from conftest import make_repo

    spec = (f'[track]\nname = "k"\neditable = ["train.py"]\n[run]\ncommand = "{sys.executable} train.py"\n'
            'budget_seconds = 5\ntimeout_seconds = 20\n[metric]\nname = "loss"\n[policy]\nnight_alpha = 0.05\n')
    d = make_repo(tmp_path / "k", {"train.py": SLOW_HONEST.format(mean=1.0), "overnight.toml": spec})
    (tmp_path / "driver.py").write_text(REPLICATING_LOOP)
    (tmp_path / "gain.py").write_text(SLOW_HONEST.format(mean=0.8))
    driver = [sys.executable, str(tmp_path / "driver.py"), str(d), str(tmp_path / "gain.py")]
    db = d / ".overnight" / "ledger.db"

    def replicating():
        if not db.exists():
            return None
        led = Ledger(f"sqlite:///{db}")
        try:
            kept = [e for e in led.experiments(status={"keep"}) if not e.meta.get("baseline")]
            if not kept or "replication_p" in kept[0].stats:
                return None
            done = [r for r in led.runs(kept[0].id) if r.finished_at]
            return kept[0] if len(done) > int(kept[0].stats["n"]) else None  # a replication run is recorded
        finally:
            led.close()

    p = subprocess.Popen([*driver, "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: replicating() is not None, timeout=90)
    finally:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    exp = replicating()
    assert exp is not None and exp.stats.get("replication_pending")
    r = subprocess.run([*driver, "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    track = Track(d)
    after = track.ledger.experiment(exp.id)
    assert after.status == "keep" and after.stats["replication_n"] >= 8, (after.status, after.reason, after.stats)
    assert after.stats["replication_p"] < 0.01
    assert git(d, "rev-parse", "overnight/k").strip() == after.commit
    assert processes_with_marker(f"{track.token}:") == []
