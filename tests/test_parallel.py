"""Pipelining and parallel slots: each slot its own worktree and resources, stale candidates rebased."""

import os
import subprocess
import sys
import threading
import time

from conftest import QUAD_RUN, git

from overnight.execution.executor import plan_slots
from overnight.loop import Limits, Loop
from overnight.loop.pipeline import rebase
from overnight.proposers import make_proposer
from overnight.proposers.base import Proposal, ProposalContext
from overnight.track import Track

RULE = ""  # the default keep rule (greedy keeps tests of its own in test_loop.py)
SLOW = 'import time; time.sleep(0.4)\n'
AFFINITY = "import os\nprint('cores:', len(os.sched_getaffinity(0)))\nprint('gpu:', os.environ.get('CUDA_VISIBLE_DEVICES', '-1'))\n"


def test_plan_slots_gives_each_slot_its_gpu_or_cores():
    gpu = plan_slots(3, gpus=["0", "1"], cores=list(range(8)))
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in gpu] == ["0", "1", "0"]
    cpu = plan_slots(4, gpus=[], cores=list(range(8)))
    assert [s.cores for s in cpu] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    assert plan_slots(4, gpus=[], cores=[0, 1])[0].cores is None  # more slots than cores: no pinning


def test_parallel_optuna_loop_uses_every_slot_and_records_each_experiment_once(quad_track):
    d = quad_track(spec_extra=RULE, files={"run.py": "SIGMA = 0.01\n" + SLOW + QUAD_RUN})
    track = Track(d)
    loop = Loop(track, make_proposer("optuna", track, "quad"), limits=Limits(max_experiments=10), workers=3)
    loop.run()
    exps = track.ledger.experiments()
    assert len(exps) == 10
    assert all(e.status not in ("running", "interrupted") for e in exps)
    ran = [e for e in exps if e.commit and not e.meta.get("baseline") and e.status != "invalid"]
    assert len({e.slot for e in ran}) >= 2, [e.slot for e in ran]
    assert len({e.commit for e in exps if not e.meta.get("baseline")}) == len(exps) - 1  # no commit twice
    for e in exps:
        runs = track.ledger.runs(e.id)
        assert all(r.finished_at for r in runs)
    kept = [e for e in exps if e.status == "keep"]
    assert git(d, "rev-parse", "overnight/quad").strip() == kept[-1].commit
    for a, b in zip(kept, kept[1:], strict=False):  # the kept chain: each keep built on the previous one
        assert b.parent_commit == a.commit
    assert git(d, "worktree", "list").count("\n") == 2  # the main checkout and the trusted one
    assert os.listdir(d / ".overnight" / "worktrees") == []


def test_cpu_slots_are_pinned_to_their_own_cores(quad_track):
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        return
    d = quad_track(spec_extra=RULE, files={"params.py": "X = 3.0\nY = 2\n" + AFFINITY})
    track = Track(d)
    Loop(track, Scripted(4), limits=Limits(max_experiments=5), workers=2).run()
    per_slot = {}
    for e in track.ledger.experiments():
        for r in track.ledger.runs(e.id):
            per_slot.setdefault(e.slot, set()).add(r.measurements["cores"])
    assert per_slot and all(v == {len(cores) // 2} for v in per_slot.values()), per_slot


class Scripted:
    """Moves X toward the optimum by a step each time, with a think time."""

    name = "scripted"
    uses_ideas = True  # like an agent: the loop hands it an idea from the queue

    def __init__(self, n: int, latency: float = 0.0):
        self.n, self.i, self.latency = n, 0, latency

    def propose(self, ctx: ProposalContext) -> Proposal:
        time.sleep(self.latency)
        self.i += 1
        p = ctx.workdir / "params.py"
        p.write_text(p.read_text().replace("Y = 2", f"Y = 2\nZ = {self.i}", 1))
        return Proposal(description=f"step {self.i}", proposer=self.name)

    def observe(self, exp) -> None:
        pass

    def baseline(self, exp) -> None:
        pass


def test_rebase_replays_on_a_moved_head_and_reports_conflicts(tmp_path):
    from conftest import make_repo

    from overnight.git.repo import Repo

    d = make_repo(tmp_path / "r", {"a.py": "A = 1\n\n\n\n\nB = 1\n"})
    repo = Repo(d)
    base = repo.head_commit()
    wt = repo.add_worktree(tmp_path / "wt", base)

    def commit_on(parent: str, text: str) -> str:
        git(wt, "checkout", "-q", "--detach", "-f", parent)
        (wt / "a.py").write_text(text)
        return repo.commit_all(wt, "c")

    head = commit_on(base, "A = 2\n\n\n\n\nB = 1\n")
    cand = commit_on(base, "A = 1\n\n\n\n\nB = 2\n")
    status, new = rebase(repo, wt, cand, head, "rebased")
    assert status == "ok" and (wt / "a.py").read_text() == "A = 2\n\n\n\n\nB = 2\n"
    assert git(wt, "rev-parse", "HEAD^").strip() == head and new == git(wt, "rev-parse", "HEAD").strip()
    clash = commit_on(base, "A = 3\n\n\n\n\nB = 1\n")
    assert rebase(repo, wt, clash, head, "rebased") == ("conflict", None)
    assert git(wt, "status", "--porcelain").strip() == ""  # the worktree is left clean
    same = commit_on(base, "A = 2\n\n\n\n\nB = 1\n")
    assert rebase(repo, wt, same, head, "rebased") == ("empty", None)


def test_live_ideas_add_from_another_process_is_claimed(quad_track):
    d = quad_track(spec_extra=RULE, files={"run.py": SLOW + "print('score:', 1.0)\n"})
    track = Track(d)
    stop = threading.Event()
    loop = Loop(track, Scripted(50), limits=Limits(max_experiments=12), workers=2, stop=stop)
    t = threading.Thread(target=loop.run)
    t.start()
    cli = [sys.executable, "-c", "from overnight.cli import app; app()"]
    deadline = time.time() + 30
    while not track.ledger.experiments() and time.time() < deadline:
        time.sleep(0.1)
    for i in range(3):
        r = subprocess.run([*cli, "ideas", "add", f"idea {i}", str(d)], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    t.join(120)
    assert not t.is_alive()
    ideas = track.ledger.ideas()
    assert len(ideas) == 3
    used = {e.idea_id: e for e in track.ledger.experiments() if e.idea_id}
    for idea in ideas:  # taken up exactly once, or still waiting: never stuck as claimed
        assert idea.status in ("done", "open"), idea.status
        if idea.status == "done":
            assert used[idea.id].id == idea.experiment_id
    assert any(i.status == "done" for i in ideas)
