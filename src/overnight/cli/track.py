"""Commands on one local track: init, run, status, results, plot, dashboard, ideas."""

from __future__ import annotations

import math
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from overnight.cli import app, ideas_app
from overnight.cli.common import PathArg, console, current_tag, err, fail, open_track, stop_on_signals
from overnight.core.status import PENDING


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Folder of the repo (or a subfolder) to research.")] = Path("."),
    from_autoresearch: Annotated[bool, typer.Option(help="Set up a Karpathy-style autoresearch checkout.")] = False,
    editable: Annotated[list[str] | None, typer.Option(help="Glob a candidate may change (repeatable).")] = None,
    command: Annotated[str | None, typer.Option(help="The run command (run through /bin/sh).")] = None,
    metric: Annotated[str | None, typer.Option(help="Metric name; alone, read from `NAME: <float>` lines.")] = None,
    pattern: Annotated[str | None, typer.Option(help="Regex with one group that reads the metric (last match).")] = None,
    direction: Annotated[str | None, typer.Option(help="minimize or maximize (default: guessed, else minimize).")] = None,
    budget: Annotated[float, typer.Option(help="Run budget in seconds (with a step knob: what the steps should take).")] = 300,
    budget_steps: Annotated[int | None, typer.Option(help="Fixed work per run, passed as OVERNIGHT_BUDGET_STEPS.")] = None,
    prepare: Annotated[str | None, typer.Option(help="Trusted command run once before the baseline (\"\" for none).")] = None,
    inputs: Annotated[list[str] | None, typer.Option(help="Glob of a file git ignores that runs need (repeatable).")] = None,
    probe: Annotated[bool | None, typer.Option(help="Run prepare and one run now: find the metric, time the budget.")] = None,
    probe_steps: Annotated[int, typer.Option(help="Steps for the probe run when the script has a step knob.")] = 50,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Ask nothing: take every guess.")] = False,
    force: Annotated[bool, typer.Option(help="Overwrite an existing overnight.toml.")] = False,
) -> None:
    """Write overnight.toml and program.md: files, command, budget, inputs, metric and \\[\\[search]] ranges."""
    from overnight.track import scaffold
    from overnight.track.plan import InitOptions, make_plan

    path = path.resolve()
    plan = None
    asking = sys.stdin.isatty() and not yes
    if not from_autoresearch and scaffold.is_autoresearch(path) and not editable and not command:
        console.print("Looks like an autoresearch checkout: using --from-autoresearch.")
        from_autoresearch = True
    if not from_autoresearch:
        if direction not in (None, "minimize", "maximize"):
            raise fail(f"--direction must be minimize or maximize, not {direction!r}")
        if (path / "overnight.toml").exists() and not force:
            raise fail(f"{path / 'overnight.toml'} exists; pass --force to overwrite it")
        if probe is None:
            probe = asking and typer.confirm("Make one probe run now (prepare + one run) to find the metric and "
                                             "time the budget?", default=True)
        opts = InitOptions(editable=editable or [], command=command, metric=metric, pattern=pattern,
                           direction=direction, budget=budget, budget_steps=budget_steps, prepare=prepare,
                           inputs=inputs or [], probe=probe, probe_steps=probe_steps)
        try:
            plan = make_plan(path, opts, say=lambda m: console.print(m, markup=False, soft_wrap=True))
        except scaffold.InitError as e:
            raise fail(str(e)) from None
        if asking:
            console.print(scaffold.spec_text(plan), markup=False, highlight=False)
            if not typer.confirm("Write this overnight.toml?", default=True):
                raise typer.Exit(1)
    try:
        written = scaffold.init(path, plan, from_autoresearch=from_autoresearch, force=force)
    except scaffold.InitError as e:
        raise fail(str(e)) from None
    for w in written:
        console.print(f"wrote {w}", markup=False)
    if plan is not None:
        for line in plan.budget_note:
            console.print(f"budget: {line}", markup=False, soft_wrap=True)
        if plan.search:
            console.print(f"[[search]]: {len(plan.search)} constant(s) for the optuna proposer: "
                          + ", ".join(n for _, n, _, _ in plan.search), markup=False, soft_wrap=True)
    console.print(f"Next: check {written[0].name}, then [bold]overnight run {escape(str(path))}[/]")


@app.command()
def run(
    path: PathArg = Path("."),
    proposer: Annotated[str, typer.Option(help="optuna, llm or agent.")] = "optuna",
    agent_cmd: Annotated[str | None, typer.Option(help="Agent CLI command or preset name (for --proposer agent).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (for --proposer llm; forwarded to the agent CLI's model flag).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (for --proposer llm).")] = None,
    provider: Annotated[str | None, typer.Option(help="openai or anthropic (default: guessed from the model).")] = None,
    max_experiments: Annotated[int | None, typer.Option(help="Stop after this many experiments (this invocation).")] = None,
    hours: Annotated[float | None, typer.Option(help="Stop starting experiments after this many hours.")] = None,
    budget: Annotated[float | None, typer.Option(help="Override the run budget in seconds.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Stop before LLM or agent-CLI spend exceeds this many dollars.")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent runs (slots).")] = 1,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: start a local one).")] = None,
    lookahead: Annotated[int, typer.Option(help="Candidates prepared ahead of the slots (0: serial).")] = 1,
    tag: Annotated[str | None, typer.Option(help="Branch overnight/<tag> (default: the track name).")] = None,
    sandbox: Annotated[bool, typer.Option(help="Run candidates (and agent CLIs) in the bubblewrap sandbox.")] = False,
    plot_file: Annotated[Path | None, typer.Option("--plot", help="Where to write the plot at the end.")] = None,
    rebase: Annotated[bool, typer.Option(help="Replay the kept changes onto your branch's new commits first.")] = False,
) -> None:
    """Run the research loop: baseline first, then propose, run, evaluate, decide, record."""
    from overnight.execution.host import explain
    from overnight.execution.runner import PrepareError
    from overnight.loop import Limits, Loop, LoopError
    from overnight.proposers import FatalProposerError, make_proposer
    from overnight.ui.view import Budget, LiveView

    track = open_track(path)
    if budget is not None:
        if not math.isfinite(budget) or budget <= 0:
            raise fail(f"--budget must be a positive number of seconds, not {budget:g}")
        track.spec.run.budget_seconds = budget
        track.spec.run.timeout_seconds = max(track.spec.run.timeout_seconds or 0, 2 * budget)
    if sandbox:
        track.spec.run.sandbox = "bubblewrap"
    if track.spec.run.sandbox == "bubblewrap":
        from overnight.execution.sandbox import SandboxError, require

        try:
            require()  # before any run: a missing bwrap stops here, never runs unsandboxed
        except SandboxError as e:
            raise fail(str(e)) from None
    elif proposer != "optuna":  # agent-written code runs with the user's rights: say so once
        err.print("note: candidates run without a sandbox; for code you do not trust, use --sandbox "
                  "(bubblewrap: no network, no home, no held-out data)")
    if workers < 1:
        raise fail("--workers must be at least 1")
    if executor not in ("local", "ray"):
        raise fail(f"--executor must be local or ray, not {executor!r}")
    if ray_address and executor != "ray":
        raise fail("--ray-address needs --executor ray")
    tag = tag or track.name
    from overnight.track.moved import RebaseError, at_start

    try:
        said = at_start(track, tag, path, rebase)
    except RebaseError as e:
        raise fail(str(e)) from None
    if said:
        err.print(said, markup=False, soft_wrap=True)
    options = {k: v for k, v in dict(agent_cmd=agent_cmd, model=model, base_url=base_url, provider=provider,
                                     max_cost=max_cost).items() if v is not None}
    stop = threading.Event()
    try:
        prop = make_proposer(proposer, track, tag, **options)
        loop = Loop(track, prop, tag=tag, limits=Limits(max_experiments, hours), stop=stop, workers=workers,
                    executor=executor, ray_address=ray_address, lookahead=lookahead)
    except (FatalProposerError, ValueError) as e:
        raise fail(str(e)) from None
    except Exception as e:  # a locked ledger or a full disk before the first run
        raise fail(explain(e), 1) from None
    loop.set_deadline()

    stop_on_signals(stop, "after cleanup")
    code = 0
    with LiveView(loop.state, track.spec.metric.name, console, Budget.of(track.spec)):
        try:
            loop.run()
        except (LoopError, PrepareError) as e:
            err.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
            code = 1
        except Exception as e:  # a full disk or a locked ledger: one clear line, the ledger stays intact
            raise fail(explain(e), 1) from None
    write_outputs(track, tag, plot_file)
    print_summary(track, tag)
    raise typer.Exit(code)


def write_outputs(track, tag: str, plot_file: Path | None = None) -> None:
    """results.tsv and progress.png go in .overnight/ (ignored by git), never loose in the user's repo."""
    from overnight.report import results
    from overnight.report.plot import plot

    exps = track.ledger.experiments(tag=tag)
    tsv = track.paths.state / "results.tsv"
    tsv.write_text(results.tsv(track.ledger, track.spec.metric.name, tag))
    wrote = [tsv]
    if exps:
        out = plot_file or track.paths.state / "progress.png"
        plot(exps, track.spec.metric.name, track.spec.minimize, out, title=_title(track, tag),
             noise_sd=results.noise_sd(track.ledger, exps))
        wrote.append(out)
    console.print("wrote " + " and ".join(map(str, wrote)) + " (`overnight report` writes the morning report)",
                  markup=False, soft_wrap=True)


def _title(track, tag: str) -> str:
    return f"overnight: {track.name}" + ("" if tag == track.name else f" ({tag})")


def print_summary(track, tag: str) -> None:
    exps = track.ledger.experiments(tag=tag)
    kept = [e for e in exps if e.status == "keep"]
    if not exps:
        console.print("no experiments yet")
        return
    if not kept:  # something ran: say what became of it rather than "no experiments"
        first = exps[0]
        if first.status in PENDING:
            console.print(f"{len(exps)} experiment(s): #{first.id} {first.description} is {first.status}",
                          markup=False)
            return
        why = (first.reason or first.status).splitlines()[0]
        log = (first.meta or {}).get("log")
        console.print(f"{len(exps)} experiment(s), none kept: #{first.id} {first.description} {first.status}: {why}"
                      + (f" (log: {log})" if log else ""), markup=False, soft_wrap=True)
        return
    base, head = kept[0], kept[-1]
    counts: dict[str, int] = {}
    for e in exps:
        counts[e.status] = counts.get(e.status, 0) + 1
    name = track.spec.metric.name
    console.print(
        f"[bold]{escape(_title(track, tag).removeprefix('overnight: '))}[/]: {len(exps)} experiments ("
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ")\n"
        f"baseline {name} {base.metric:.6g} → head {head.metric:.6g} at {(head.commit or '')[:7]} "
        f"on branch overnight/{tag}"
    )


def _pid_alive(pid) -> bool:
    import psutil

    return isinstance(pid, int) and psutil.pid_exists(pid)


@app.command()
def status(path: PathArg = Path("."), tag: Annotated[str | None, typer.Option()] = None) -> None:
    """What ran, what is running, best so far."""
    track = open_track(path)
    tag = current_tag(track, tag)
    exps = track.ledger.experiments(tag=tag)
    if not exps:
        console.print(f"{track.name}: no experiments yet. Start with [bold]overnight run {escape(str(path))}[/]")
        return
    print_summary(track, tag)
    live = track.ledger.get("slots") or {}
    alive = bool(live.get("slots")) and _pid_alive(live.get("pid"))
    if alive:  # a loop is running now: what each slot is doing
        import time as _time

        for v in live["slots"]:
            what = (f"{v['description'][:60]} (run {v['run']}, {_time.time() - v['run_started']:.0f}s)"
                    if v.get("exp_id") else "idle")
            console.print(f"slot {v['index']} [{v['label']}]: {what}", markup=False)
    running = [e for e in exps if e.status in ("running", "interrupted")]
    for e in running:
        note = f"on slot {e.slot}" if alive else "resumed by the next `overnight run`"
        console.print(f"[yellow]{e.status}[/]: #{e.id} {escape(e.description)} ({note})")
    tokens = sum(e.tokens_in + e.tokens_out for e in exps)
    cost = sum(e.cost_usd for e in exps)
    if tokens:
        console.print(f"LLM usage: {tokens} tokens, ${cost:.4f}")
    ideas = track.ledger.ideas({"open", "claimed"})
    if ideas:
        console.print(f"{len(ideas)} idea(s) queued")
    print_noise(track, exps)
    t = Table(title="last experiments", show_edge=False)
    for col, width in (("#", 3), ("status", 9), (track.spec.metric.name, 9), ("Δ vs head", 9), ("p", 6),
                       ("runs", 4)):
        t.add_column(col, no_wrap=True, min_width=width)
    t.add_column("description", no_wrap=True, overflow="ellipsis", max_width=max(20, console.width - 62))
    for e in exps[-10:]:
        delta = "" if e.metric is None or e.head_metric is None else f"{e.metric - e.head_metric:+.4g}"
        p = (e.stats or {}).get("p_value")
        t.add_row(str(e.id), e.status, "" if e.metric is None else f"{e.metric:.6g}", delta,
                  "" if p is None else f"{p:.3g}", str(len(track.ledger.runs(e.id)) or ""),
                  Text(e.description or e.reason))
    console.print(t)


def print_noise(track, exps) -> None:
    """The noise floor per platform (spread of the kept versions' runs) and what the night's decisions allow."""
    from overnight.execution import fingerprint
    from overnight.judge.noise import expected_false_keeps
    from overnight.judge.stats import pooled_sd

    names: dict[str, str] = {}
    by_key: dict[str, dict[int, list[float]]] = {}
    for e in exps:
        if e.status != "keep":
            continue
        names.setdefault(e.platform.get("key", ""), fingerprint.describe(e.platform) if e.platform else "?")
        for r in track.ledger.runs(e.id):
            if r.status == "ok" and r.metric is not None:
                by_key.setdefault(r.platform_key, {}).setdefault(e.id, []).append(r.metric)
    for key, groups in by_key.items():
        sd, df = pooled_sd(groups.values())
        if df:  # pooled over the kept experiments measured more than once on this platform
            series = [v for v in groups.values() if len(v) >= 2]
            console.print(f"noise floor on {names.get(key, key)}: sd {sd:.4g} "
                          f"({sum(len(v) for v in series)} runs of {len(series)} kept version(s))", markup=False)
    bound, n = expected_false_keeps([e.stats or {} for e in exps if not e.meta.get("baseline")])
    if n:
        kept = sum(1 for e in exps if e.status == "keep" and not e.meta.get("baseline"))
        console.print(f"false keeps these {n} decisions allow: at most {bound:.2g} expected (of {kept} kept); "
                      "[policy] night_alpha makes keeps reproduce on fresh runs", markup=False)


@app.command()
def results(
    path: PathArg = Path("."),
    format: Annotated[str, typer.Option("--format", help="tsv or json.")] = "tsv",
    tag: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Every experiment: tsv starts with autoresearch's results.tsv columns."""
    from overnight.report import results as res

    track = open_track(path)
    tag = current_tag(track, tag)
    if format == "tsv":
        sys.stdout.write(res.tsv(track.ledger, track.spec.metric.name, tag))
    elif format == "json":
        sys.stdout.write(res.to_json(track.ledger, tag) + "\n")
    else:
        raise fail(f"--format must be tsv or json, not {format!r}")


@app.command()
def plot(
    path: PathArg = Path("."),
    output: Annotated[Path, typer.Option("-o", "--output", help="PNG file to write.")] = Path("progress.png"),
    tag: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Every experiment a dot, the kept frontier a step line."""
    from overnight.report.plot import plot as draw

    track = open_track(path)
    tag = current_tag(track, tag)
    exps = track.ledger.experiments(tag=tag)
    if not exps:
        raise fail("no experiments to plot yet", 1)
    from overnight.report.results import noise_sd

    draw(exps, track.spec.metric.name, track.spec.minimize, output, title=_title(track, tag),
         noise_sd=noise_sd(track.ledger, exps))
    console.print(f"wrote {output}", markup=False)


@app.command()
def dashboard(
    path: PathArg = Path("."),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 exposes it to the network).")] = "127.0.0.1",
    tag: Annotated[str | None, typer.Option(help="Show this tag (default: the current one).")] = None,
) -> None:
    """Live web view of the track's ledger: progress chart, experiments, diffs, idea queue."""
    import uvicorn

    from overnight.ui.dashboard import create_app

    track = open_track(path)
    console.print(f"[bold]{escape(track.name)}[/] dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
    uvicorn.run(create_app(track.ledger, track.spec, tag=tag), host=host, port=port, log_level="warning")


@ideas_app.command("add")
def ideas_add(text: Annotated[str, typer.Argument(help="The hypothesis, in a sentence.")],
              path: PathArg = Path(".")) -> None:
    """Queue an idea; the next proposal claims it."""
    track = open_track(path)
    idea = track.ledger.add_idea(text)
    console.print(f"idea #{idea.id} queued")


@ideas_app.command("list")
def ideas_list(path: PathArg = Path("."), all: Annotated[bool, typer.Option("--all")] = False) -> None:
    """Open and claimed ideas (--all for done and dropped too)."""
    track = open_track(path)
    rows = track.ledger.ideas(None if all else {"open", "claimed"})
    t = Table(show_edge=False)
    for col in ("#", "status", "source", "experiment", "idea"):
        t.add_column(col)
    for i in rows:
        t.add_row(str(i.id), i.status, Text(i.source), str(i.experiment_id or ""), Text(i.text[:90]))
    console.print(t if rows else "no ideas queued")


@ideas_app.command("drop")
def ideas_drop(idea_id: int, path: PathArg = Path(".")) -> None:
    """Drop an idea so no proposal claims it."""
    track = open_track(path)
    try:
        track.ledger.finish_idea(idea_id, "dropped")
    except KeyError:
        raise fail(f"no idea #{idea_id}", 1) from None
    console.print(f"idea #{idea_id} dropped")


