"""From a repo and `overnight init`'s flags to an InitPlan: files, command, budget contract,
inputs, metric, [[search]] ranges; with `probe`, one real run decides the metric and the timing."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from overnight.track import detect
from overnight.track.scaffold import InitError, InitPlan, _name

GUESSES = ("train.py", "main.py", "run.py")


@dataclass
class InitOptions:
    editable: list[str] = field(default_factory=list)
    command: str | None = None
    metric: str | None = None
    pattern: str | None = None
    direction: str | None = None
    budget: float = 300
    budget_steps: int | None = None
    prepare: str | None = None  # "" means none
    inputs: list[str] = field(default_factory=list)
    probe: bool = False
    probe_steps: int = 50
    probe_timeout: float = 900


def make_plan(path: Path, o: InitOptions, say=print) -> InitPlan:
    files = o.editable or [g for g in GUESSES if (path / g).is_file()][:1]
    if not files:
        raise InitError(f"{path}: which files may a candidate change? Pass --editable FILE (repeatable).")
    consts = detect.constants(path, files)
    text = "\n".join((path / f).read_text(errors="replace") for f in files if (path / f).is_file())
    knob = None if "OVERNIGHT_BUDGET" in text else detect.step_knob(consts)
    style = detect.override_style(path, knob.file, knob.name) if knob else None
    evals = detect.eval_knob(consts) if style else None
    command = o.command or f"python {files[0]}"
    steps: int | None = o.budget_steps
    note: list[str] = []
    # A config file on the command line (nanoGPT: `train.py config/x.py`) sets the dataset and the step count.
    configs = detect.constants(path, [w for w in command.split()
                                      if w.endswith(".py") and w not in files and (path / w).is_file()])
    runs_file = files[0] in command.split() or f"./{files[0]}" in command.split()
    if knob and style and runs_file and f"--{knob.name}" not in command:  # the frozen command fixes the work
        command += " " + style.format(name=knob.name)
        if evals and evals.name != knob.name:  # evaluate at the last step, whatever the budget
            command += " " + style.format(name=evals.name)
        steps = steps or next((c.value for c in configs if c.name == knob.name and type(c.value) is int),
                              knob.value)
    mode = "steps"
    if steps is not None or "OVERNIGHT_BUDGET_STEPS" in text:
        steps = steps or 100
        note += [f"The budget is fixed work: {steps} steps, passed as $OVERNIGHT_BUDGET_STEPS"
                 + (f" to {knob.name}" if knob and style else "") + "; budget_seconds only sizes the timeout."]
    elif "OVERNIGHT_BUDGET_SECONDS" in text:
        mode = "seconds"
        note += ["The budget is wall time: the script stops at $OVERNIGHT_BUDGET_SECONDS (machine load shows up as",
                 "noise; a script with a step knob can use budget_steps instead)."]
    else:
        mode = "own"
        note += [f"{files[0]} reads no OVERNIGHT_BUDGET_* variable: each run does the script's own fixed work,",
                 "and budget_seconds only sizes the timeout."]
    prepare = ((o.prepare or None) if o.prepare is not None
               else detect.prepare_command(path, configs + consts))
    plan = InitPlan(name=_name(path), editable=files, command=command, metric=o.metric or "score",
                    direction=o.direction or "minimize", budget=o.budget, prepare=prepare, pattern=o.pattern,
                    budget_steps=steps, budget_note=note)
    if o.probe:
        _probe(path, plan, o, say, own_work=mode == "own")
    else:
        plan.inputs = o.inputs or detect.ignored_data(path)
        if prepare and not plan.inputs:
            say(f"note: [prepare] `{prepare}` may make files the runs need; `overnight init --probe` runs it and "
                "lists them as [track] inputs (or pass --inputs GLOB)")
        if o.metric is None and o.pattern is None:
            say("note: metric `score` is a guess; `--probe` reads the real one off a run's output "
                "(or pass --metric NAME / --pattern REGEX)")
    plan.timeout = max(2 * plan.budget, plan.budget + 60)
    skip = {k.name for k in (knob, evals) if k is not None}
    for c in consts:
        rng = None if c.name in skip else detect.search_entry(c)
        if rng is None:
            plan.not_searched.append(c.name)
        else:
            plan.search.append((c.file, c.name, c.value, rng))
    return plan


def _probe(path: Path, plan: InitPlan, o: InitOptions, say, own_work: bool) -> None:
    from overnight.track import probe

    try:
        if plan.prepare:
            say(f"probe: preparing with `{plan.prepare}` …")
            probe.prepare(path, plan.prepare)
        plan.inputs = o.inputs or detect.ignored_data(path)
        env = {"OVERNIGHT_BUDGET_SECONDS": f"{plan.budget:g}"}
        probe_steps = min(plan.budget_steps, o.probe_steps) if plan.budget_steps else None
        if probe_steps:
            env["OVERNIGHT_BUDGET_STEPS"] = str(probe_steps)
        say(f"probe: running `{plan.command}`" + (f" for {probe_steps} steps" if probe_steps else "") + " …")
        res = probe.run(path, plan.command, plan.inputs, env, o.probe_timeout)
    except probe.ProbeError as e:
        raise InitError(str(e)) from None
    if res.timed_out or res.exit_code != 0:
        last = (res.output.strip().splitlines() or [""])[-1][:200]
        why = f"timed out after {res.wall_seconds:.0f}s" if res.timed_out else f"exited with {res.exit_code}"
        raise InitError(f"probe run `{plan.command}` {why} ({last}); full log: {res.log}")
    say(f"probe: finished in {res.wall_seconds:.1f}s (log: {res.log})")
    if o.metric is None and o.pattern is None:
        guess = detect.guess_metric(res.output)
        if guess is None:
            raise InitError(f"no metric found in the probe's output ({res.log}): pass --metric NAME (for "
                            "`NAME: value` lines) or --pattern REGEX with one (group)")
        plan.metric, plan.pattern = guess.name, guess.pattern
        plan.direction = o.direction or guess.direction
        how = f"pattern {guess.pattern}" if guess.pattern else f"`{guess.name}: value` lines"
        say(f"probe: metric {guess.name} = {guess.value:g} ({plan.direction}), read with {how}, last of "
            f"{guess.matches} match(es); also printed: {', '.join(guess.others) or 'nothing else'}")
    else:
        from overnight.core.spec import MetricSection

        value = (MetricSection(name=plan.metric, pattern=o.pattern).read(res.output) if o.pattern
                 else _plain(res.output, plan.metric))
        if value is None:
            raise InitError(f"the probe's output has no {plan.metric} "
                            + (f"matching {o.pattern!r}" if o.pattern else f"`{plan.metric}: value` line")
                            + f"; see {res.log}")
        say(f"probe: metric {plan.metric} = {value:g}")
    if plan.budget_steps and probe_steps:  # fit the step budget to about --budget seconds on this machine
        per_step = res.wall_seconds / probe_steps
        if plan.budget_steps * per_step > o.budget:
            plan.budget_steps = max(1, int(o.budget / per_step))
            plan.budget_note[0] = (f"The budget is fixed work: {plan.budget_steps} steps (about {o.budget:g}s here), "
                                   "passed as $OVERNIGHT_BUDGET_STEPS; budget_seconds only sizes the timeout.")
        plan.budget = max(1, math.ceil(plan.budget_steps * per_step * 1.5))
        say(f"probe: {per_step * 1000:.1f} ms per step with startup: {plan.budget_steps} steps take about "
            f"{plan.budget_steps * per_step:.0f}s here")
    elif own_work:  # the script's own work: the timeout follows what the probe took
        plan.budget = max(1, math.ceil(res.wall_seconds * 1.5))


def _plain(output: str, name: str) -> float | None:
    from overnight.core import measurements

    return measurements.parse(output).get(name)
