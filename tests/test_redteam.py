"""Red team, round 2: new attacks of issue 11's kinds, through a real loop (bubblewrap sandbox, sealed
evaluator, the default noise rule) or the CLI. Each failed on main at 1aad274; the comment says how."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_containment import SPEC, TRAIN, build, run_loop, write

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
SEARCH = '[[search]]\nfile = "params.py"\nname = "X"\nlow = 0\nhigh = 4\n'
# The candidate's jitter follows the seed, so the noise rule alone cannot tell the cheat from a real gain.
JITTER = "import random\nx = x + random.Random(int(os.environ['OVERNIGHT_SEED'])).gauss(0, 0.01)\n"


def overnight(*args: str) -> list[str]:
    return [sys.executable, "-c", "from overnight.cli import app; app()", *args]


@needs_bwrap
def test_a_flood_of_blank_lines_cannot_stall_the_harness(tmp_path):
    # Main: the metric regex let `\s*` run across lines, so parsing n blank lines took O(n^2): 16,000
    # took 4 s, the 20 MB a log may hold would take months; `\d+\.?\d*` was quadratic in a run of digits
    # (20,000 took 26 s). The loop hung on the baseline's output.
    flood = TRAIN + ("import sys\nsys.stdout.write('\\n' * 3_000_000 + ' \\n' * 200_000)\n"
                     "print('digits: ' + '1' * 200_000 + 'z')\n")
    track = build(tmp_path, train=flood, spec_extra=SEARCH)
    try:
        res = subprocess.run(overnight("run", str(track.dir), "--max-experiments", "1"), capture_output=True,
                             text=True, timeout=90)
    except subprocess.TimeoutExpired:
        pytest.fail("the harness stalled parsing a run's blank lines")
    assert res.returncode == 0, res.stderr[-3000:]
    from overnight.core import measurements as M

    assert M.parse("loss\n:\n 5\n") == {}, "a metric line is one line"
    assert M.parse("  loss : 5 \r\n") == {"loss": 5.0}


def _system_dir() -> Path | None:
    """A folder inside a system folder the sandbox binds read-only (/opt), where a user may keep a track."""
    try:
        return Path(tempfile.mkdtemp(dir="/opt", prefix="overnight-redteam-"))
    except OSError:
        return None


@needs_bwrap
def test_a_track_under_a_system_folder_keeps_its_state_hidden():
    # Main: the sandbox binds /opt (and /etc, /usr ...) read-only whole, so a track kept under /opt showed
    # its `.overnight` (held-out labels, ledger, trusted copy) and git dir to the run: a cheat read the
    # held-out target and was kept.
    base = _system_dir()
    if base is None:
        pytest.skip("/opt is not writable here")
    peek = ("import pathlib\nstate = pathlib.Path.cwd().parents[1]\n"
            "def seen(p):\n    return int((state / p).exists())\n"
            "print('heldout_seen:', seen('data/heldout/target.txt'))\nprint('ledger_seen:', seen('ledger.db'))\n"
            "print('git_seen:', int((state.parent / '.git' / 'config').exists()))\n"
            "print('trusted_seen:', seen('trusted/evaluate.py'))\n")
    cheat = TRAIN.replace("json.dump(", peek + "try:\n    x = float((state / 'data/heldout/target.txt').read_text())\n"
                          "except OSError:\n    pass\n" + JITTER + "json.dump(")
    try:
        track = build(base)
        exps = run_loop(track, [("read the held-out target", write("train.py", cheat))])
        exp = exps["read the held-out target"]
        runs = track.ledger.runs(exp.id)
        assert exp.status != "keep", exp.reason
        for r in runs:
            assert {k: r.measurements[k] for k in ("heldout_seen", "ledger_seen", "git_seen", "trusted_seen")} == \
                {"heldout_seen": 0, "ledger_seen": 0, "git_seen": 0, "trusted_seen": 0}
            assert r.metric == pytest.approx(4.0, abs=0.2)
    finally:
        shutil.rmtree(base, ignore_errors=True)


@needs_bwrap
def test_an_undecodable_artifact_name_is_a_crash_not_a_dead_loop(tmp_path):
    # Main: a symlink artifact named with a byte that is not UTF-8 made the refusal's reason unstorable:
    # the loop died with UnicodeEncodeError writing the ledger (and again on every resume).
    bad = TRAIN + "os.symlink('/etc/passwd', os.environ['OVERNIGHT_ARTIFACTS'].encode() + b'/pred\\xff\\x1b[2J')\n"
    track = build(tmp_path)
    exps = run_loop(track, [("undecodable artifact", write("train.py", bad)),
                            ("honest", write("params.py", "X = 2.0\n"))])
    exp = exps["undecodable artifact"]
    assert exp.status == "crash" and "artifacts refused" in exp.reason and "symlink" in exp.reason, exp.reason
    assert "pred\\xff\\x1b[2J" in exp.reason and "\x1b" not in exp.reason
    assert exps["honest"].status == "keep", exps["honest"].reason


@needs_bwrap
def test_hostile_file_names_and_bytes_in_a_candidate_are_judged_not_errors(tmp_path):
    # Main: a candidate (an agent CLI writes any name) adding a file whose name is not UTF-8 ended as a
    # harness `error` (UnicodeDecodeError in git's output); a non-UTF-8 byte in an editable file did too;
    # a name carrying a terminal escape was echoed raw into the reason.
    def undecodable(w: Path) -> None:
        (w / "params.py").write_text("X = 2.0\n")
        Path(os.fsdecode(os.fsencode(w) + b"/m\xffodel.py")).write_text("X = 1\n")

    def escape(w: Path) -> None:
        (w / "params.py").write_text("X = 2.0\n")
        (w / "new\x1b[2Jfile.py").write_text("X = 1\n")

    track = build(tmp_path)
    exps = run_loop(track, [("undecodable name", undecodable), ("escape in a name", escape),
                            ("undecodable bytes", lambda w: (w / "params.py").write_bytes(b"X = 2.0  # \xff\xfe\n"))])
    name, esc, data = exps["undecodable name"], exps["escape in a name"], exps["undecodable bytes"]
    assert name.status == "invalid" and "m\\xffodel.py" in name.reason, (name.status, name.reason)
    assert esc.status == "invalid" and "\x1b" not in esc.reason and "new\\x1b[2Jfile.py" in esc.reason, esc.reason
    assert data.status == "keep", (data.status, data.reason)  # python allows the bytes in a comment: a real gain
    assert "\ufffd" in track.ledger.experiment(data.id).diff


@needs_bwrap
def test_nul_and_escape_codes_in_output_never_reach_a_reason(tmp_path):
    # Main: a crashing run's NUL and terminal escapes went verbatim into the reason: shown raw by
    # `overnight status` (an escape can rewrite the screen), and on a hub verifier a reason with a NUL is
    # refused by the hub (422), so the report was lost and the item re-queued forever.
    from overnight.hub.app import Report

    crash = TRAIN + "print('boom \\0 nul \\x1b]0;owned\\x07 \\x1b[31mred', flush=True)\nraise SystemExit(3)\n"
    track = build(tmp_path)
    exp = run_loop(track, [("nul", write("train.py", crash))])["nul"]
    assert exp.status == "crash" and "boom" in exp.reason, exp.reason
    assert not any(c in exp.reason for c in "\0\x1b\x07"), repr(exp.reason)
    Report(outcome="reject", reason=f"re-run failed ({exp.status}): {exp.reason}")  # what a verifier sends


def test_the_door_refuses_a_patch_that_is_not_utf8():
    # Main: a JSON body may carry a lone surrogate (`\udcff`); the door crashed on it (UnicodeEncodeError,
    # a 500) instead of refusing it.
    from overnight.hub.door import DoorError, check_patch

    patch = "diff --git a/params.py b/params.py\n--- a/params.py\n+++ b/params.py\n@@ -1 +1 @@\n-X = 3.0\n+X = \udcff\n"
    with pytest.raises(DoorError, match="UTF-8"):
        check_patch(patch, ["params.py"])
    # and a path that names git's own folder below the top (git refuses it only once applied)
    nested = "diff --git a/src/.GIT/x.py b/src/.GIT/x.py\nnew file mode 100644\n--- /dev/null\n+++ b/src/.GIT/x.py\n"
    with pytest.raises(DoorError, match="git internals"):
        check_patch(nested + "@@ -0,0 +1 @@\n+x\n", ["src/**/*.py"])


@needs_bwrap
@pytest.mark.skipif(os.geteuid() != 0 or not os.access("/etc", os.W_OK), reason="planting a file in /etc needs root")
def test_credentials_under_etc_stay_outside_the_sandbox(tmp_path):
    # Main: /etc was bound whole minus a deny-list (shadow, ssh/, ssl/private): a CI runner's token in
    # /etc/<tool>/config.toml (like pip.conf, npmrc, apt/auth.conf.d, kubernetes/admin.conf) was readable,
    # and a cheat that found its "key" there was kept.
    import uuid

    planted = Path("/etc") / f"overnight-redteam-{uuid.uuid4().hex[:8]}"
    planted.mkdir()
    (planted / "config.toml").write_text('token = "glrt-secret"\n')
    cheat = TRAIN.replace("json.dump(", (
        f"try:\n    found = 'glrt' in open({str(planted / 'config.toml')!r}).read()\nexcept OSError:\n    found = False\n"
        "print('secret_seen:', int(found))\nprint('passwd_seen:', int(os.path.exists('/etc/passwd')))\n"
        "if found:\n    x = 1.0\n" + JITTER + "json.dump("))
    try:
        track = build(tmp_path)
        exp = run_loop(track, [("read /etc", write("train.py", cheat))])["read /etc"]
    finally:
        shutil.rmtree(planted)
    assert exp.status != "keep", exp.reason
    for r in track.ledger.runs(exp.id):
        assert r.measurements["secret_seen"] == 0 and r.measurements["passwd_seen"] == 1


@needs_bwrap
@pytest.mark.parametrize("how", ["silent", "nan"])
def test_a_guard_cannot_be_skipped_by_not_measuring(tmp_path, how):
    # Main: a guard passed when its metric was missing or NaN (`nan > max` is false): a candidate that
    # used 10x the guarded memory and printed no `peak_mb` line, or `peak_mb: nan`, was kept.
    honest = TRAIN + "print('peak_mb: 50')\n"
    greedy = TRAIN.replace("from params import X", "X = 1.0") + {"silent": "", "nan": "print('peak_mb: nan')\n"}[how]
    track = build(tmp_path, train=honest, spec_extra='[[guard]]\nmetric = "peak_mb"\nmax = 100\n')
    exp = run_loop(track, [("skip the guard", write("train.py", greedy))])["skip the guard"]
    assert exp.status == "discard" and "peak_mb" in exp.reason, (exp.status, exp.reason)


PLANT = """\
import pathlib, shutil, subprocess
wt = pathlib.Path.cwd()
shutil.rmtree(wt / '.git') if (wt / '.git').is_dir() else (wt / '.git').unlink()
subprocess.run(['git', 'init', '-q', str(wt)], check=True, env={'PATH': '/usr/bin:/bin', 'HOME': '/tmp'})
(wt / '.git' / 'objects' / 'info' / 'alternates').write_text(str(wt.parents[2] / '.git' / 'objects'))
monitor = wt / '.git' / 'monitor.sh'  # inside the git dir, which `git clean` never touches
monitor.write_text('#!/bin/sh\\necho ran >> MARKER\\n')
monitor.chmod(0o755)
with open(wt / '.git' / 'config', 'a') as f:
    f.write('[core]\\n\\tfsmonitor = ' + str(monitor) + '\\n')
raise SystemExit(1)
"""


@needs_bwrap
@pytest.mark.parametrize("evaluated", [True, False])
def test_a_failed_run_leaves_no_git_dir_for_the_next_agent(tmp_path, evaluated):
    # Main: the worktree was reset after a run only on the way to the evaluator; a run that planted a git
    # dir (core.fsmonitor) and then crashed, or ran on a track without [evaluate], left it there, and the
    # worktree went back to the pool: the next agent CLI's own `git status` in it ran the run's script,
    # outside the run's sandbox (with the agent's network and credentials).
    marker = tmp_path / "ran"

    def agent(w: Path, text: str) -> None:
        w.joinpath("params.py").write_text(text)
        subprocess.run(["git", "status", "--porcelain"], cwd=w, capture_output=True,
                       env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})

    if evaluated:
        track = build(tmp_path)
    else:  # self-graded: the run prints its own metric
        spec = SPEC.replace('[evaluate]\ncommand = "{py} evaluate.py"\ntimeout_seconds = 5\n', "")
        files = {"overnight.toml": spec.format(py=sys.executable, sandbox="bubblewrap", run_extra="",
                                               metric="loss", direction="minimize")}
        track = build(tmp_path, train=TRAIN + "print('loss:', (x - 1.0) ** 2)\n", files=files)
    plant = write("train.py", PLANT.replace("MARKER", str(marker)))
    edits = [("plant 1", plant), ("plant 2", plant)] + [
        (f"agent {i}", lambda w, i=i: agent(w, f"X = {2 + i / 10}\n")) for i in range(3)]
    exps = run_loop(track, edits)
    assert exps["plant 1"].status == "crash", exps["plant 1"].reason
    assert not marker.exists(), "a planted git dir ran outside the sandbox"


@needs_bwrap
def test_sparse_artifacts_cost_the_copy_no_disk(tmp_path):
    # Main: the evaluator's copy wrote holes out as zeros: four 16 GiB sparse files (made in a blink under
    # the 16 GiB file cap) made the harness write 64 GiB, a full disk that ends the night.
    evaluate = (
        "import json, os\nart = os.environ['OVERNIGHT_ARTIFACTS']\n"
        "model = json.load(open(os.path.join(art, 'model.json')))\n"
        "print('alloc_mb:', sum(os.stat(os.path.join(art, n)).st_blocks for n in os.listdir(art)) * 512 / 2**20)\n"
        "print('size_mb:', sum(os.stat(os.path.join(art, n)).st_size for n in os.listdir(art)) / 2**20)\n"
        "print('loss:', (model['x'] - 1.0) ** 2)\n")
    holes = TRAIN + ("with open(os.path.join(os.environ['OVERNIGHT_ARTIFACTS'], 'holes.bin'), 'wb') as f:\n"
                     "    f.write(b'data'); f.truncate(2**30)\n")
    track = build(tmp_path, evaluate=evaluate)
    exp = run_loop(track, [("sparse artifact", write("train.py", holes))])["sparse artifact"]
    runs = track.ledger.runs(exp.id)
    assert runs and all(r.measurements["size_mb"] >= 1024 for r in runs), exp.reason
    assert all(r.measurements["alloc_mb"] < 16 for r in runs), [r.measurements["alloc_mb"] for r in runs]


@needs_bwrap
def test_the_run_cannot_regenerate_the_evaluators_hidden_draw(tmp_path):
    # Main: the evaluator had only the run's OVERNIGHT_SEED, and the run reads the evaluator's source: an
    # evaluator drawing a hidden target from its seed (like examples/fastpath's hidden inputs) was
    # answered in advance, loss 0.02 against 0.99, kept.
    draw = ("import os, random\n"
            "def hidden(seed):\n    return random.Random(seed).uniform(0, 100)\n")
    evaluate = draw + (
        "import json\nseed = int(os.environ.get('OVERNIGHT_EVAL_SEED') or os.environ['OVERNIGHT_SEED'])\n"
        "x = json.load(open(os.path.join(os.environ['OVERNIGHT_ARTIFACTS'], 'model.json')))['x']\n"
        "noise = random.Random(seed + 1).gauss(0, 0.01)\n"
        "print('loss:', min(1.0, 100 * (x - hidden(seed)) ** 2) + noise)\n")
    cheat = TRAIN.replace("json.dump(", "from evaluate_draw import hidden\n"
                          "x = hidden(int(os.environ['OVERNIGHT_SEED'])) + (x - X)\njson.dump(")
    track = build(tmp_path, evaluate=evaluate, files={"evaluate_draw.py": draw})
    exp = run_loop(track, [("answer in advance", write("train.py", cheat))])["answer in advance"]
    assert exp.status != "keep", exp.reason
    assert all(r.metric > 0.5 for r in track.ledger.runs(exp.id))


DEEP = """\
import os
def deep(where, levels=2100):
    os.chdir(where)
    for _ in range(levels):
        os.mkdir('dd')
        os.chdir('dd')
    open('f', 'w').write('x')
    os.chmod('.', 0)
"""


@pytest.fixture
def deep_tmp(tmp_path):
    """tmp_path, emptied afterwards without recursion: pytest's own clean-up (shutil.rmtree) dies with
    RecursionError on a folder 2,100 deep, and then fails every later session that tries again."""
    from overnight.git.repo import remove_tree

    yield tmp_path
    for entry in list(tmp_path.iterdir()):
        remove_tree(entry)


@needs_bwrap
@pytest.mark.parametrize("where", ["worktree", "artifacts"])
def test_a_folder_too_deep_for_paths_does_not_end_the_night(deep_tmp, where):
    tmp_path = deep_tmp
    # Main: 2,100 nested folders (past PATH_MAX, past Python's recursion limit) left by a run: git clean
    # failed on them, the fallback's os.walk and every shutil.rmtree died with RecursionError, and the loop
    # with them; resuming tripped on the same folder.
    spot = {"worktree": "os.getcwd()", "artifacts": "os.environ['OVERNIGHT_ARTIFACTS']"}[where]
    cheat = TRAIN + DEEP + f"deep({spot})\n"
    track = build(tmp_path)
    exps = run_loop(track, [("too deep", write("train.py", cheat)), ("honest", write("params.py", "X = 2.0\n"))])
    assert exps["too deep"].status != "keep", exps["too deep"].reason
    if where == "artifacts":
        assert "artifacts refused" in exps["too deep"].reason and "deep" in exps["too deep"].reason
    assert exps["honest"].status == "keep", exps["honest"].reason


@needs_bwrap
def test_a_harness_measurement_cannot_be_printed_by_the_run(tmp_path):
    # Main: host_memory_gb (and steps_per_second) were measured by the harness only on a GPU machine (or
    # with budget_steps); elsewhere the run's own `host_memory_gb: 0.01` line stood, and a guard on it
    # passed a run holding 400 MB against a 0.2 GB cap.
    hog = TRAIN + "blob = bytearray(400 * 2**20)\nfor i in range(0, len(blob), 4096):\n    blob[i] = 1\n" + \
        "import time\ntime.sleep(1.5)  # held past several of the harness's samples\n" + \
        "print('host_memory_gb: 0.01')\nprint('steps_per_second: 1e6')\n"
    track = build(tmp_path, spec_extra='[[guard]]\nmetric = "host_memory_gb"\nmax = 0.2\n')
    exp = run_loop(track, [("hide the memory", write("train.py", hog.replace("from params import X", "X = 1.0")))])[
        "hide the memory"]
    assert exp.status == "discard" and "host_memory_gb" in exp.reason, (exp.status, exp.reason)
    run = track.ledger.runs(exp.id)[0]
    assert run.measurements["host_memory_gb"] > 0.2 and "steps_per_second" not in run.measurements


@needs_bwrap
def test_a_python_installed_into_home_does_not_show_the_home(tmp_path, monkeypatch):
    # Main: the sandbox bound the Python installation's root whole; with Python installed into the home
    # folder (`./configure --prefix=$HOME`, common where there is no root), that root is the home: the
    # run read ~/.aws/credentials.
    home = tmp_path / "home"
    (home / ".aws").mkdir(parents=True)
    (home / ".aws" / "credentials").write_text("aws_secret_access_key = abc\n")
    (home / "bin").mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setattr(sys, "base_prefix", str(home))  # the venv in use is made from it
    peek = TRAIN.replace("json.dump(", f"print('aws_seen:', int(os.path.exists({str(home / '.aws')!r})))\n"
                         f"print('bin_seen:', int(os.path.isdir({str(home / 'bin')!r})))\njson.dump(")
    track = build(tmp_path)
    exp = run_loop(track, [("read the home", write("train.py", peek))])["read the home"]
    runs = track.ledger.runs(exp.id)
    assert runs and all(r.measurements["aws_seen"] == 0 and r.measurements["bin_seen"] == 1 for r in runs)


def test_a_proposer_worktree_too_deep_for_git_is_still_reset(deep_tmp):
    tmp_path = deep_tmp
    # A proposer (an agent CLI, say) left 2,100 nested folders, the deepest unreadable, in its worktree: the
    # next proposal's checkout failed in `git clean` and ended the loop.
    from overnight.git.repo import Repo
    from overnight.loop.worktrees import WorktreePool, checkout

    track = build(tmp_path)
    repo = Repo(track.dir)
    pool = WorktreePool(repo, tmp_path / "wts")
    head = repo.head_commit()
    wt = pool.create(0, head)
    code = DEEP + f"deep({str(wt)!r})\n"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    (wt / "params.py").write_text("X = 99.0\n")
    checkout(wt, head)
    assert not (wt / "dd").exists()
    assert (wt / "params.py").read_text() == (track.dir / "params.py").read_text()


@needs_bwrap
def test_a_proposers_description_cannot_drive_the_terminal(tmp_path):
    # A description (from an LLM, an agent CLI or a hub submission) went raw into the ledger, and from
    # there into `overnight status`, results.tsv and the live view: a clear-screen escape, a NUL.
    track = build(tmp_path)
    evil = "better X\x1b[2J\x1b]0;owned\x07\x00 done"
    exps = run_loop(track, [(evil, write("params.py", "X = 2.0\n"))])
    desc = next(d for d in exps if d.startswith("better X"))
    assert "\x1b" not in desc and "\x00" not in desc and "\x07" not in desc and desc.endswith(" done"), repr(desc)
