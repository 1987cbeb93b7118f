"""End-to-end checks of the bundled example tracks.

Each track's scripts are run directly with subprocess, the way the harness
runs them (same environment variable names), without importing overnight.
"""

import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def run_script(args, cwd, env_vars, timeout=120):
    env = dict(os.environ)
    env.update({key: str(value) for key, value in env_vars.items()})
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def measurement(stdout, name):
    """The last `name: <float>` line, as the harness reads it."""
    values = re.findall(rf"^{re.escape(name)}:\s*(\S+)\s*$", stdout, flags=re.MULTILINE)
    assert values, f"no '{name}:' line in output:\n{stdout}"
    return float(values[-1])


def folders(tmp_path, *names):
    paths = [tmp_path / name for name in names]
    for path in paths:
        path.mkdir()
    return paths


def test_noisy_quadratic_is_deterministic_per_seed(tmp_path):
    track = EXAMPLES / "noisy-quadratic"
    artifacts, data, heldout = folders(tmp_path, "artifacts", "data", "heldout")
    common = {"OVERNIGHT_DATA": data, "OVERNIGHT_SEED": 7, "OVERNIGHT_ARTIFACTS": artifacts}

    run = run_script(["run.py"], track, {**common, "OVERNIGHT_BUDGET_SECONDS": 5})
    assert run.returncode == 0, run.stderr
    assert (artifacts / "params.json").is_file()

    eval_env = {**common, "OVERNIGHT_HELDOUT": heldout, "OVERNIGHT_WORKDIR": track}
    first = run_script(["evaluate.py"], track, eval_env)
    second = run_script(["evaluate.py"], track, eval_env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    loss = measurement(first.stdout, "loss")
    assert math.isfinite(loss)
    assert loss == measurement(second.stdout, "loss")
    assert loss > 0.5  # the baseline is deliberately far from the optimum

    other_seed = run_script(["evaluate.py"], track, {**eval_env, "OVERNIGHT_SEED": 8})
    assert measurement(other_seed.stdout, "loss") != loss

    missing = run_script(["evaluate.py"], track, {**eval_env, "OVERNIGHT_ARTIFACTS": data})
    assert missing.returncode == 1
    assert "params.json" in missing.stderr


def test_fastpath_times_candidate_and_rejects_wrong_answers(tmp_path):
    track = EXAMPLES / "fastpath"
    artifacts, data, heldout = folders(tmp_path, "artifacts", "data", "heldout")
    common = {"OVERNIGHT_DATA": data, "OVERNIGHT_SEED": 3, "OVERNIGHT_ARTIFACTS": artifacts}

    run = run_script(["run.py"], track, {**common, "OVERNIGHT_BUDGET_SECONDS": 10})
    assert run.returncode == 0, run.stderr
    assert measurement(run.stdout, "public_ok") == 1

    eval_env = {**common, "OVERNIGHT_HELDOUT": heldout, "OVERNIGHT_WORKDIR": track}
    good = run_script(["evaluate.py"], track, eval_env)
    assert good.returncode == 0, good.stderr
    runtime_ms = measurement(good.stdout, "runtime_ms")
    assert math.isfinite(runtime_ms) and runtime_ms > 0

    # A candidate copy with a fast but off-by-one implementation: the evaluator
    # (run from the pristine track folder) must time the copy and reject it.
    candidate = tmp_path / "candidate"
    shutil.copytree(track, candidate, ignore=shutil.ignore_patterns("__pycache__"))
    (candidate / "fastpath.py").write_text(
        "from collections import Counter\n\n\n"
        "def count_pairs(nums, target):\n"
        "    seen, count = Counter(), 0\n"
        "    for x in nums:\n"
        "        count += seen[target - x]\n"
        "        seen[x] += 1\n"
        "    return count + 1\n"
    )
    bad = run_script(["evaluate.py"], track, {**eval_env, "OVERNIGHT_WORKDIR": candidate})
    assert bad.returncode == 1
    assert "wrong answer on hidden input" in bad.stderr
    assert "runtime_ms" not in bad.stdout


def test_tinylm_trains_exports_and_evaluates_without_train_py(tmp_path):
    pytest.importorskip("torch")
    track = EXAMPLES / "tinylm"
    artifacts, data, heldout = folders(tmp_path, "artifacts", "data", "heldout")
    dirs = {"OVERNIGHT_DATA": data, "OVERNIGHT_HELDOUT": heldout}

    prepare = run_script(["prepare.py"], track, dirs)
    assert prepare.returncode == 0, prepare.stderr
    assert (data / "train.bin").stat().st_size > 1_000_000
    assert (heldout / "val.bin").stat().st_size > 65_536
    assert not (data / "val.bin").exists()

    train = run_script(
        ["train.py"],
        track,
        {
            "OVERNIGHT_DATA": data,
            "OVERNIGHT_ARTIFACTS": artifacts,
            "OVERNIGHT_SEED": 0,
            "OVERNIGHT_BUDGET_SECONDS": 2,
        },
    )
    assert train.returncode == 0, train.stderr
    assert measurement(train.stdout, "steps") >= 1
    assert math.isfinite(measurement(train.stdout, "train_loss"))
    assert measurement(train.stdout, "tokens_per_second") > 0
    # A step budget fixes the work: exactly that many steps, whatever the wall-clock budget says.
    steps = run_script(["train.py"], track, {"OVERNIGHT_DATA": data, "OVERNIGHT_ARTIFACTS": tmp_path / "a2",
                                             "OVERNIGHT_SEED": 0, "OVERNIGHT_BUDGET_SECONDS": 0.001,
                                             "OVERNIGHT_BUDGET_STEPS": 3})
    assert steps.returncode == 0, steps.stderr
    assert measurement(steps.stdout, "steps") == 3
    for phase in ("startup_seconds", "train_seconds", "export_seconds"):  # what `bench quickstart` breaks down
        assert measurement(steps.stdout, phase) >= 0
    # Load is not noise: beside a CPU hog, with the environment asking for more threads, the same seed
    # trains to the same loss (one thread, fixed steps).
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        loaded = run_script(["train.py"], track, {"OVERNIGHT_DATA": data, "OVERNIGHT_ARTIFACTS": tmp_path / "a3",
                                                  "OVERNIGHT_SEED": 0, "OVERNIGHT_BUDGET_STEPS": 3,
                                                  "OMP_NUM_THREADS": 2})
    finally:
        hog.kill()
        hog.wait()
    assert loaded.returncode == 0, loaded.stderr
    assert measurement(loaded.stdout, "train_loss") == measurement(steps.stdout, "train_loss")

    # The evaluator runs in a trusted copy of the track that has no train.py.
    trusted = tmp_path / "trusted"
    shutil.copytree(track, trusted, ignore=shutil.ignore_patterns("__pycache__", "artifacts"))
    (trusted / "train.py").unlink()
    evaluate = run_script(
        ["evaluate.py"],
        trusted,
        {**dirs, "OVERNIGHT_ARTIFACTS": artifacts, "OVERNIGHT_SEED": 0, "OVERNIGHT_WORKDIR": track},
    )
    assert evaluate.returncode == 0, evaluate.stderr
    val_bpb = measurement(evaluate.stdout, "val_bpb")
    assert math.isfinite(val_bpb) and 0 < val_bpb < 9


def _clone(tmp_path, name):
    """The example as a user's fresh clone: its own git repo, no data, no overnight files."""
    from conftest import git

    d = tmp_path / name
    shutil.copytree(EXAMPLES / name, d, ignore=shutil.ignore_patterns("__pycache__", "*.bin", "*.pkl", "input.txt",
                                                                      ".overnight"))
    git(d, "init", "-q", "-b", "master")
    git(d, "add", "-A")
    git(d, "commit", "-q", "-m", "clone")
    return d


def test_minigpt_from_clone_to_a_running_loop_with_init_alone(tmp_path):
    """nanoGPT-shaped: gitignored data made by data/*/prepare.py, its own log lines, no budget variable."""
    import tomllib

    from typer.testing import CliRunner

    from overnight.cli import app
    from overnight.track import Track

    d = _clone(tmp_path, "minigpt")
    runner = CliRunner()
    r = runner.invoke(app, ["init", str(d), "--probe", "--yes", "--budget", "20"])
    assert r.exit_code == 0, r.output
    spec = tomllib.loads((d / "overnight.toml").read_text())
    assert spec["prepare"]["command"] == "python data/shakespeare_char/prepare.py"
    assert "data/shakespeare_char/*.bin" in spec["track"]["inputs"]
    assert spec["metric"]["name"] == "val_loss" and spec["metric"]["direction"] == "minimize"
    assert "$OVERNIGHT_BUDGET_STEPS" in spec["run"]["command"] and spec["run"]["budget_steps"] >= 1
    assert {s["name"] for s in spec["search"]} >= {"learning_rate", "n_embd"}
    assert not {"max_iters", "eval_interval"} & {s["name"] for s in spec["search"]}  # budget knobs stay fixed
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "4"])
    assert r.exit_code == 0, r.output
    track = Track(d)
    exps = track.ledger.experiments()
    assert exps[0].status == "keep" and exps[0].metric is not None, exps[0].reason
    assert all(e.status in ("keep", "discard") for e in exps), [(e.status, e.reason) for e in exps]
    # The loop read nanoGPT's own log format: the metric is the last `val loss` of the run's output.
    run0 = track.ledger.runs(exps[0].id)[0]
    log = Path(run0.log_path).read_text()
    assert run0.metric == float(re.findall(r"val loss (\d+\.\d+)", log)[-1])
    assert f"step {spec['run']['budget_steps']}:" in log  # the fixed step budget reached the script
    assert git_status(d) == ["?? overnight.toml", "?? program.md"]  # nothing else left in the user's repo


def git_status(d):
    from conftest import git

    return sorted(git(d, "status", "--porcelain").splitlines())
