"""A run: one execution of a candidate under the budget, then the trusted evaluator.

The run's outcome is decided here from facts (exit code, timeout, output);
whether to keep the candidate is the policy's business.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

from overnight.core import measurements as M
from overnight.core.status import Status
from overnight.execution import limits, sandbox
from overnight.execution.artifacts import ArtifactError
from overnight.execution.evaluation import evaluate, private_paths
from overnight.execution.limits import Caps
from overnight.execution.process import MARKER, ProcessResult, run_process
from overnight.git.repo import remove_tree
from overnight.track import Track
from overnight.track import inputs as I

GIB = 2**30
HARNESS_NAMES = {"wall_seconds", "memory_gb", "host_memory_gb", "steps_per_second"}  # measured, never printed


@dataclass
class RunOutcome:
    status: str  # ok, crash, timeout, no_metric, nan, oom, interrupted
    metric: float | None
    measurements: dict[str, float] = field(default_factory=dict)
    reason: str = ""
    exit_code: int | None = None
    wall_seconds: float = 0.0
    tail: str = ""
    log_path: str = ""


def _failure(res: ProcessResult, what: str) -> tuple[str, str] | None:
    """(status, reason) when a process did not finish cleanly, else None."""
    if res.interrupted:
        return Status.INTERRUPTED, f"{what} interrupted"
    if res.timed_out:
        return Status.TIMEOUT, f"{what} killed after {res.wall_seconds:.0f}s (timeout)"
    if res.exit_code == 0:
        return None
    if res.killed_by_sigkill or M.looks_like_oom(res.tail):
        return Status.OOM, f"{what} ran out of memory (exit {res.exit_code})\n{M.traceback_tail(res.tail, 5)}"
    return Status.CRASH, f"{what} exited with {res.exit_code}\n{M.traceback_tail(res.tail)}"


def caps(track: Track) -> Caps:
    """The run's process and memory caps: the track's own, else the sandbox's defaults (none without one)."""
    run = track.spec.run
    boxed = run.sandbox != "none"
    procs = run.max_processes or (sandbox.MAX_PROCESSES if boxed else None)
    mem = int(run.max_memory_gb * GIB) if run.max_memory_gb else (limits.default_memory_bytes() if boxed else None)
    return Caps(processes=procs, memory_bytes=mem)


class PrepareError(RuntimeError):
    """The trusted prepare step failed or left the inputs missing: one line for the user."""


def sandboxed(track: Track, command: str, workdir: Path, artifacts: Path,
              env: dict[str, str], inputs: list[Path] | None = None) -> tuple[str | list[str], dict[str, str]]:
    """The run's command and env, wrapped in the sandbox (env by allow-list) when the track asks for it."""
    if track.spec.run.sandbox == "none":
        return command, env
    # Inputs are bound read-only at their own paths, which the worktree's links point to.
    readonly = [track.paths.data, *I.sources(track.dir, inputs or [])]
    argv = sandbox.wrap(command, workdir=workdir, writable=[workdir, artifacts], readonly=readonly,
                        max_processes=caps(track).processes or sandbox.MAX_PROCESSES, private=private_paths(track))
    return argv, sandbox.clean_env(env, track.spec.run.pass_env)


def execute(
    track: Track,
    workdir: Path,
    run_dir: Path,
    seed: int,
    token: str,
    stop: threading.Event | None = None,
    on_start=None,
) -> RunOutcome:
    """Run the track's command in `workdir`, then its evaluator; logs and artifacts go to `run_dir`.

    The worktree is reset to its commit (from its real git dir) before the run, before the evaluator
    and after everything, whatever the outcome: no run sees what an earlier one left, no evaluator what
    the run left, and no proposer handed the worktree next (an agent CLI running its own git) a `.git`
    the run planted."""
    try:
        return _execute(track, workdir, run_dir, seed, token, stop, on_start)
    finally:
        track.repo.reset_worktree(workdir)


def _execute(track: Track, workdir: Path, run_dir: Path, seed: int, token: str, stop: threading.Event | None,
             on_start) -> RunOutcome:
    spec = track.spec
    artifacts = run_dir / "artifacts"
    if run_dir.exists():
        remove_tree(run_dir)  # a resumed run starts from nothing (whatever shape its artifacts had)
    artifacts.mkdir(parents=True)
    track.repo.reset_worktree(workdir)
    env = track.base_env()
    env.update(
        OVERNIGHT_BUDGET_SECONDS=f"{spec.run.budget_seconds:g}",
        OVERNIGHT_ARTIFACTS=str(artifacts),
        OVERNIGHT_SEED=str(seed),
        **{MARKER: token},
    )
    if spec.run.budget_steps is not None:
        env["OVERNIGHT_BUDGET_STEPS"] = str(spec.run.budget_steps)
    try:
        inputs = track.inputs()
        I.link(track.dir, inputs, workdir)
    except I.InputsError as e:
        return RunOutcome(status=Status.CRASH, metric=None, reason=f"inputs: {e}")
    cap = int(spec.run.log_cap_mb * 2**20)
    command, env = sandboxed(track, spec.run.command, workdir, artifacts, env, inputs)
    res = run_process(
        command, workdir, env,
        timeout=spec.run.timeout_seconds or 0, log_path=run_dir / "run.log", log_cap_bytes=cap,
        stop=stop, on_start=on_start, caps=caps(track),
    )
    out = RunOutcome(status=Status.OK, metric=None, exit_code=res.exit_code, wall_seconds=res.wall_seconds,
                     tail=res.tail, log_path=str(res.log_path))
    rss = round(res.peak_rss_bytes / GIB, 4)
    harness = {"wall_seconds": round(res.wall_seconds, 3), "memory_gb": rss, "host_memory_gb": rss}
    if res.gpu_peak_bytes:  # autoresearch's memory_gb is GPU memory; keep host RSS alongside
        harness.update(memory_gb=round(res.gpu_peak_bytes / GIB, 4))
    failed = _failure(res, "run")
    if failed:
        out.status, out.reason = failed
        out.measurements = harness
        return out
    if spec.run.budget_steps is not None and res.wall_seconds > 0:  # throughput under a fixed amount of work
        harness["steps_per_second"] = round(spec.run.budget_steps / res.wall_seconds, 3)
    output = res.log_path.read_text(errors="replace")
    run_values = M.parse(output)
    source = "run output"
    values = dict(run_values)
    if spec.evaluate is not None:
        try:
            ev = evaluate(track, workdir, run_dir, artifacts, seed, token, stop, caps(track), inputs)
        except ArtifactError as e:
            remove_tree(artifacts)  # refused, so kept for nobody: a later rmtree of them must not trip
            out.status, out.reason = Status.CRASH, f"artifacts refused: {e}"
            out.measurements = {**values, **harness}
            return out
        failed = _failure(ev, "evaluator")
        if failed:
            out.status, out.reason = failed
            out.measurements = {**values, **harness}
            out.tail = ev.tail
            return out
        # The evaluator is the only trusted source of the metric: the run's own claim is dropped.
        values.pop(spec.metric.name, None)
        output = ev.log_path.read_text(errors="replace")
        values.update(M.parse(output))
        source = "evaluator output"
    if spec.metric.pattern is not None:  # the pattern alone decides the metric when the spec gives one
        values.pop(spec.metric.name, None)
        found = spec.metric.read(output)
        if found is not None:
            values[spec.metric.name] = found
    for name in HARNESS_NAMES - harness.keys():  # a name the harness owns is never the run's to claim
        values.pop(name, None)
    values.update(harness)  # the harness's own measurements cannot be overridden by printed lines
    out.measurements = values
    metric = values.get(spec.metric.name)
    if metric is None:
        wanted = (f"no match for [metric] pattern {spec.metric.pattern!r}" if spec.metric.pattern
                  else f"no `{spec.metric.name}: <number>` line")
        out.status, out.reason = Status.NO_METRIC, f"{wanted} in the {source}"
    elif not math.isfinite(metric):
        out.status, out.reason, out.metric = Status.NAN, f"{spec.metric.name} is {metric}", None
    elif not M.finite(metric):
        out.status, out.metric = Status.NAN, None
        out.reason = f"{spec.metric.name} is {metric:g}, beyond the ±{M.MAX_MAGNITUDE:g} a metric may be"
    else:
        out.metric = metric
    return out


def prepare(track: Track) -> None:
    """Run the trusted prepare command once in the track folder (scripts skip work already done),
    then check the inputs it should have made; failures raise PrepareError in one line."""
    if track.spec.prepare is not None:
        track.ensure_state()
        env = track.base_env()
        env["OVERNIGHT_HELDOUT"] = str(track.paths.heldout)
        res = run_process(track.spec.prepare.command, track.dir, env, timeout=track.spec.prepare.timeout_seconds,
                          log_path=track.paths.state / "prepare.log")
        failed = _failure(res, "prepare")
        if failed:
            last = M.traceback_tail(res.tail, 1).strip()
            why = failed[1].splitlines()[0] + (f": {last}" if last else "")
            raise PrepareError(f"[prepare] `{track.spec.prepare.command}` failed ({why}); full log: {res.log_path}")
    try:
        track.inputs()
    except I.InputsError as e:
        raise PrepareError(str(e)) from None
