"""The default keep rule on real loops: drift, lucky seeds with jitter, autoresearch's seed blooper,
fresh head runs after a keep, and replication (`[policy] night_alpha`) reverting a keep that does not
reproduce. Run seeds are exp_id * 1000 + index, so every loop here is deterministic."""

from __future__ import annotations

import random
import subprocess
import sys
import threading
from pathlib import Path

from conftest import git, make_repo

from overnight.loop import Limits, Loop
from overnight.proposers.base import Proposal, ProposalContext
from overnight.track import Track

SIGMA = 0.05
SPEC = """\
[track]
name = "k"
editable = ["train.py"]
[run]
command = "{python} train.py"
budget_seconds = 5
timeout_seconds = 20
[metric]
name = "loss"
"""
# The machine drifts: every run on it is 0.004 lower than the one before (2 sd over 25 runs).
DRIFTING = """\
import os, random
from pathlib import Path
clock = Path({clock!r})
t = int(clock.read_text()) if clock.exists() else 0
clock.write_text(str(t + 1))
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("loss:", 1.0 - 0.004 * t + rng.gauss(0, {sigma}))
"""
HONEST = """\
import os, random
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("loss:", {mean} + rng.gauss(0, {sigma}))
"""
# A lucky draw pinned by a fixed seed, plus seed-following jitter of 0.3 sd (fixed-seed GPU nondeterminism).
PINNED = """\
import os, random
draw = random.Random({seed}).gauss(0, {sigma})
jitter = random.Random(int(os.environ["OVERNIGHT_SEED"])).gauss(0, {jitter})
print("loss:", 1.0 + draw + jitter)
"""
# karpathy/autoresearch's train.py: SEED pinned, OVERNIGHT_SEED ignored, a microscopic clock jitter.
AUTORESEARCH = """\
import random, time
SEED = {seed}
random.seed(SEED)
print("loss:", 1.0 + random.gauss(0, {sigma}) + 1e-12 * (time.perf_counter_ns() % 1000))
"""
# Looks 5 sd better on its first three runs, then is exactly the head: a keep that cannot reproduce.
LUCKY_STREAK = """\
import os, random
from pathlib import Path
count = Path({count!r})
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
print("loss:", 1.0 - (5 * {sigma} if n < 3 else 0.0) + rng.gauss(0, {sigma}))
"""

# Looks like a real 5 sd gain on its first three runs, then pins one draw and follows its seed only at
# half the head's noise: a seed-ignorer that got kept and would "replicate" its own pinned value.
PINS_AFTER_KEEP = """\
import os, random
from pathlib import Path
count = Path({count!r})
n = int(count.read_text()) if count.exists() else 0
count.write_text(str(n + 1))
rng = random.Random(int(os.environ["OVERNIGHT_SEED"]))
if n < 3:
    print("loss:", 1.0 - 5 * {sigma} + rng.gauss(0, {sigma}))
else:
    print("loss:", 1.0 - 5 * {sigma} + random.Random(7).gauss(0, {sigma}) + rng.gauss(0, 0.5 * {sigma}))
"""


class Edits:
    """A proposer that writes train.py from a list of texts, in order."""

    name = "scripted"

    def __init__(self, texts: list[tuple[str, str]]):
        self.texts = list(texts)

    def propose(self, ctx: ProposalContext) -> Proposal:
        desc, text = self.texts.pop(0)
        (ctx.workdir / "train.py").write_text(text)
        return Proposal(description=desc, proposer=self.name)

    def observe(self, exp) -> None:
        pass

    def baseline(self, exp) -> None:
        pass


def track_with(tmp_path: Path, train: str, extra: str = "") -> Path:
    return make_repo(tmp_path / "k", {"train.py": train, "overnight.toml": SPEC.format(python=sys.executable) + extra})


def run(d: Path, texts: list[tuple[str, str]], workers: int = 1, lookahead: int = 1) -> Loop:
    """One loop over `texts` (recycled: a proposal made ahead of a keep conflicts and is asked again)."""
    loop = Loop(Track(d), Edits(texts * 3), limits=Limits(max_experiments=len(texts) + 1), stop=threading.Event(),
                workers=workers, lookahead=lookahead)
    loop.run()
    return loop


def candidates(d: Path) -> list:
    return [e for e in Track(d).ledger.experiments() if not e.meta.get("baseline")]


def test_null_edits_on_a_drifting_machine_are_not_kept(tmp_path):
    clock = tmp_path / "clock"
    base = DRIFTING.format(clock=str(clock), sigma=SIGMA)
    d = track_with(tmp_path, base)
    nulls = [(f"null {i}", base + f"# comment {i}\n") for i in range(10)]
    run(d, nulls)
    exps = candidates(d)
    assert len(exps) == 10 and int(clock.read_text()) > 25  # the night drifted by more than 2 sd
    assert [e.description for e in exps if e.status == "keep"] == []


def _lucky_seeds(n: int) -> list[int]:
    """Seeds whose pinned draw is at least 2 sd lucky (what a proposer finds by trying seeds)."""
    return [s for s in range(10_000) if random.Random(s).gauss(0, 1) < -2.0][:n]


def test_lucky_seeds_pinned_with_jitter_are_not_kept(tmp_path):
    d = track_with(tmp_path, HONEST.format(mean=1.0, sigma=SIGMA))
    pins = [(f"pin seed {s}", PINNED.format(seed=s, sigma=SIGMA, jitter=0.3 * SIGMA)) for s in _lucky_seeds(6)]
    run(d, pins)
    exps = candidates(d)
    assert len(exps) == 6
    assert [e.description for e in exps if e.status == "keep"] == []
    assert any("OVERNIGHT_SEED" in e.reason for e in exps)


def test_autoresearch_seed_change_is_not_kept_and_the_baseline_is_told(tmp_path):
    d = track_with(tmp_path, AUTORESEARCH.format(seed=42, sigma=SIGMA))
    seeds = [s for s in range(100, 400) if random.Random(s).gauss(0, SIGMA) < random.Random(42).gauss(0, SIGMA)]
    loop = run(d, [(f"random seed 42 -> {s}", AUTORESEARCH.format(seed=s, sigma=SIGMA)) for s in seeds[:5]])
    exps = candidates(d)
    assert len(exps) == 5 and all(e.status == "discard" for e in exps), [(e.status, e.reason) for e in exps]
    assert all("random seed" in e.reason and not Track(d).ledger.runs(e.id) for e in exps)  # nothing ran
    assert any("OVERNIGHT_SEED" in m and "baseline" in m for m in loop.state.messages), loop.state.messages


def test_a_kept_head_is_measured_afresh_and_status_bounds_the_night(tmp_path):
    d = track_with(tmp_path, HONEST.format(mean=1.0, sigma=SIGMA))
    texts = [("real gain", HONEST.format(mean=0.7, sigma=SIGMA)),
             ("null", HONEST.format(mean=0.7, sigma=SIGMA) + "# nothing\n")]
    run(d, texts, lookahead=0)  # serial: the null is proposed on the kept head
    ledger = Track(d).ledger
    gain, null = candidates(d)
    assert gain.status == "keep"
    own = int(gain.stats["n"])
    runs = [r.metric for r in ledger.runs(gain.id)]
    assert len(runs) >= own + 3  # its own runs, then fresh runs of it as the head
    fresh = runs[own:]
    # The next candidate is compared with the fresh runs, not with the runs that got the head kept.
    assert null.stats["head_mean"] != gain.metric
    assert min(fresh) <= null.stats["head_mean"] <= max(fresh)
    out = subprocess.run([sys.executable, "-c", "from overnight.cli import app; app()", "status", str(d)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "false keeps these 2 decisions allow: at most 0.1 expected" in out.stdout, out.stdout


def test_replication_reverts_a_keep_that_does_not_reproduce(tmp_path):
    count = tmp_path / "count"
    d = track_with(tmp_path, HONEST.format(mean=1.0, sigma=SIGMA), "[policy]\nnight_alpha = 0.05\n")
    base = git(d, "rev-parse", "HEAD").strip()
    loop = run(d, [("lucky streak", LUCKY_STREAK.format(count=str(count), sigma=SIGMA))])
    (exp,) = candidates(d)
    assert exp.status == "discard" and exp.meta.get("reverted"), (exp.status, exp.reason)
    assert "not reproduced on fresh runs" in exp.reason and "replication_p" in exp.stats
    assert git(d, "rev-parse", "overnight/k").strip() == base  # the branch is back on the old head
    assert any("reverted" in m for m in loop.state.messages)


def test_a_revert_cut_short_between_branch_and_ledger_is_recorded_on_resume(tmp_path):
    count = tmp_path / "count"
    d = track_with(tmp_path, HONEST.format(mean=1.0, sigma=SIGMA), "[policy]\nnight_alpha = 0.05\n")
    base = git(d, "rev-parse", "HEAD").strip()
    run(d, [("lucky streak", LUCKY_STREAK.format(count=str(count), sigma=SIGMA))])
    (exp,) = candidates(d)
    assert exp.meta.get("reverted") and git(d, "rev-parse", "overnight/k").strip() == base
    # What a kill between the revert's branch move and its ledger write leaves: a keep still pending.
    stats = {k: v for k, v in exp.stats.items() if not k.startswith("replication_") or k == "replication_pending"}
    Track(d).ledger.update_experiment(exp.id, status="keep", stats=stats,
                                      meta={k: v for k, v in exp.meta.items() if k != "reverted"})
    run(d, [("null", HONEST.format(mean=1.0, sigma=SIGMA) + "# nothing\n")])
    after = Track(d).ledger.experiment(exp.id)
    assert after.status == "discard" and after.meta.get("reverted"), (after.status, after.reason)
    assert git(d, "rev-parse", "overnight/k").strip() == base
    later = candidates(d)[1:]
    assert later and all(e.status == "discard" for e in later)  # nulls, judged against the old head


def test_replication_reverts_a_keep_whose_fresh_runs_ignore_the_seed(tmp_path):
    count = tmp_path / "count"
    d = track_with(tmp_path, HONEST.format(mean=1.0, sigma=SIGMA), "[policy]\nnight_alpha = 0.05\n")
    base = git(d, "rev-parse", "HEAD").strip()
    run(d, [("pins after its keep", PINS_AFTER_KEEP.format(count=str(count), sigma=SIGMA))])
    (exp,) = candidates(d)
    assert exp.status == "discard" and exp.meta.get("reverted"), (exp.status, exp.reason)
    assert "OVERNIGHT_SEED" in exp.reason and exp.stats["replication_n"] >= 8
    assert git(d, "rev-parse", "overnight/k").strip() == base


def test_replication_keeps_a_real_gain(tmp_path):
    d = track_with(tmp_path, HONEST.format(mean=1.0, sigma=SIGMA), "[policy]\nnight_alpha = 0.05\n")
    run(d, [("real gain", HONEST.format(mean=0.8, sigma=SIGMA))])
    (exp,) = candidates(d)
    assert exp.status == "keep" and exp.stats["replication_p"] < 0.01
    assert git(d, "rev-parse", "overnight/k").strip() == exp.commit


def _two_slot_texts() -> list[tuple[str, str]]:
    return [(f"null {i}", HONEST.format(mean=1.0, sigma=SIGMA) + f"# {i}\n") for i in range(6)]


def test_two_slots_each_measure_the_head_before_their_candidates(tmp_path):
    d = track_with(tmp_path, HONEST.format(mean=1.0, sigma=SIGMA))
    run(d, _two_slot_texts(), workers=2)
    exps = candidates(d)
    assert len(exps) == 6 and all(e.status == "discard" for e in exps)
    assert {e.slot for e in exps} == {0, 1}
    assert all(e.stats["head_n"] >= 3 for e in exps)  # each judged against head runs on its own slot


def test_a_stop_during_replication_leaves_the_keep_and_ends_promptly(tmp_path):
    slow = "import time; time.sleep(0.2)\n"
    d = track_with(tmp_path, slow + HONEST.format(mean=1.0, sigma=SIGMA), "[policy]\nnight_alpha = 0.05\n")
    stop = threading.Event()
    loop = Loop(Track(d), Edits([("real gain", slow + HONEST.format(mean=0.8, sigma=SIGMA))] * 3),
                limits=Limits(max_experiments=2), stop=stop)

    def stop_when_replicating() -> None:
        while not stop.is_set():
            if loop.scheduler and any(j.kind == "replicate" and j.values for j in list(loop.scheduler.jobs)):
                stop.set()
            stop.wait(0.05)

    watcher = threading.Thread(target=stop_when_replicating)
    watcher.start()
    t = threading.Thread(target=loop.run)
    t.start()
    t.join(60)
    stop.set()
    watcher.join()
    assert not t.is_alive()
    (exp,) = candidates(d)
    assert exp.status == "keep" and "replication_p" not in exp.stats  # kept; its replication did not finish
    assert git(d, "rev-parse", "overnight/k").strip() == exp.commit  # (an interrupted run is redone, not recorded)
