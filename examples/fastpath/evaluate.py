"""Frozen evaluator for the fastpath track.

1. Generates hidden inputs deterministically from OVERNIGHT_EVAL_SEED, the
   evaluator's own seed (the run is given OVERNIGHT_SEED and this source, so
   inputs drawn from that could be regenerated and answered in advance), a
   fresh set for every timed repeat so that caching answers on disk between
   repeats cannot help.
2. Computes reference answers with its own implementation.
3. Runs the candidate's count_pairs in a separate Python process, timed from
   this process, so the candidate cannot tamper with the clock. This process
   never imports the candidate: the child gets a private copy of fastpath.py
   alone (a regular file, never a link), runs isolated (`python -I`: no
   current folder or PYTHON* variables on its path, so a `json.py` left
   beside it cannot shadow the standard library) with an empty environment,
   and loads the module from that copy by path.
4. Subtracts the time of a no-op process that does the same I/O but never
   imports the candidate, and reports the median over repeats.

Prints `runtime_ms: <float>`. Exits 1 with a one-line reason on stderr on a
wrong answer, a crash or a timeout.
"""

import json
import os
import random
import shutil
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter

REPEATS = 5
SIZES = [500, 1000, 2000, 3000]  # one hidden input of each size per repeat
VALUE_RANGE = 1000
PROCESS_TIMEOUT_S = 20.0
MAX_SOURCE_BYTES = 2**20

# Runs in the child process. The candidate module is imported only in
# "candidate" mode; "noop" mode does the same reading and writing.
DRIVER = r"""
import importlib.util, json, sys
mode = sys.argv[1]
cases = json.loads(sys.stdin.read())
if mode == "candidate":
    spec = importlib.util.spec_from_file_location("fastpath", sys.argv[2])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    count_pairs = module.count_pairs
    answers = [count_pairs(nums, target) for nums, target in cases]
else:
    answers = [0 for nums, target in cases]
sys.stdout.write("\n@@ANSWERS@@" + json.dumps(answers) + "\n")
"""
MARKER = "@@ANSWERS@@"


class EvalError(Exception):
    pass


def reference(nums, target):
    seen = Counter()
    count = 0
    for x in nums:
        count += seen[target - x]
        seen[x] += 1
    return count


def make_cases(seed, repeat):
    rng = random.Random(f"fastpath-hidden-{seed}-{repeat}")
    cases = []
    for n in SIZES:
        spread = rng.choice([VALUE_RANGE // 10, VALUE_RANGE])
        nums = [rng.randint(-spread, spread) for _ in range(n)]
        target = rng.randint(-spread // 2, spread // 2)
        cases.append((nums, target))
    return cases


def private_copy(workdir, into):
    """fastpath.py alone, copied as a regular file (a symlink or anything else is refused)."""
    src = os.path.join(workdir, "fastpath.py")
    st = os.lstat(src)
    if not stat.S_ISREG(st.st_mode) or st.st_size > MAX_SOURCE_BYTES:
        raise EvalError("fastpath.py must be a regular file under 1 MB")
    dst = os.path.join(into, "fastpath.py")
    shutil.copyfile(src, dst, follow_symlinks=False)
    return dst


def run_child(mode, cases, module_path):
    payload = json.dumps(cases)
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            [sys.executable, "-I", "-c", DRIVER, mode, module_path],
            input=payload,
            capture_output=True,
            text=True,
            cwd=os.path.dirname(module_path),
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            timeout=PROCESS_TIMEOUT_S,
        )
    except subprocess.TimeoutExpired:
        raise EvalError(f"{mode} process timed out after {PROCESS_TIMEOUT_S:.0f} s") from None
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise EvalError(f"{mode} process exited {proc.returncode}: {last}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith(MARKER)]
    if not lines:
        raise EvalError(f"{mode} process printed no answers")
    try:
        answers = json.loads(lines[-1][len(MARKER) :])
    except ValueError:
        raise EvalError(f"{mode} process printed unreadable answers") from None
    if not isinstance(answers, list) or len(answers) != len(cases):
        raise EvalError(f"{mode} process printed the wrong number of answers")
    return elapsed, answers


def main() -> int:
    workdir = os.environ.get("OVERNIGHT_WORKDIR")
    if not workdir or not os.path.isfile(os.path.join(workdir, "fastpath.py")):
        print(f"evaluation failed: no fastpath.py in OVERNIGHT_WORKDIR={workdir!r}", file=sys.stderr)
        return 1
    try:
        seed = int(os.environ.get("OVERNIGHT_EVAL_SEED") or os.environ.get("OVERNIGHT_SEED", "0"))
    except ValueError:
        print("evaluation failed: OVERNIGHT_EVAL_SEED is not an integer", file=sys.stderr)
        return 1

    cand_times, noop_times = [], []
    private = tempfile.mkdtemp(prefix="fastpath-eval-")
    try:
        module_path = private_copy(workdir, private)
        for repeat in range(REPEATS):
            cases = make_cases(seed, repeat)
            expected = [reference(nums, target) for nums, target in cases]
            t_noop, _ = run_child("noop", cases, module_path)
            t_cand, answers = run_child("candidate", cases, module_path)
            for k, (got, want) in enumerate(zip(answers, expected, strict=True)):
                if isinstance(got, bool) or not isinstance(got, int) or got != want:
                    raise EvalError(f"wrong answer on hidden input {repeat * len(SIZES) + k}")
            noop_times.append(t_noop)
            cand_times.append(t_cand)
    except (EvalError, OSError) as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(private, ignore_errors=True)

    overhead_ms = 1000.0 * statistics.median(noop_times)
    total_ms = 1000.0 * statistics.median(cand_times)
    print(f"process_overhead_ms: {overhead_ms:.3f}")
    print(f"total_ms: {total_ms:.3f}")
    print(f"runtime_ms: {max(0.0, total_ms - overhead_ms):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
