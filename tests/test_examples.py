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
