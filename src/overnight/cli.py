"""The `overnight` command line (Typer + Rich)."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from overnight.spec import SpecError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Turn a codebase with a measurable objective into an autonomous, verifiable research loop.")
ideas_app = typer.Typer(no_args_is_help=True, help="The idea queue that proposers draw from.")
bench_app = typer.Typer(no_args_is_help=True, help="overnight's own performance benchmarks.")
app.add_typer(ideas_app, name="ideas")
app.add_typer(bench_app, name="bench")
hub_app = typer.Typer(no_args_is_help=True, help="The multi-contributor hub: serve, host tracks, add verifiers.")
app.add_typer(hub_app, name="hub")

console = Console()
err = Console(stderr=True)

PathArg = Annotated[Path, typer.Argument(help="The track folder (holds overnight.toml).")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False, markup=True)
    return typer.Exit(code)


def open_track(path: Path):
    from overnight.repo import RepoError
    from overnight.track import Track

    try:
        return Track(path)
    except SpecError as e:
        raise fail(str(e)) from None
    except RepoError as e:
        raise fail(str(e)) from None


def current_tag(track, tag: str | None) -> str | None:
    return tag or track.ledger.get("current_tag")


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Folder of the repo (or a subfolder) to research.")] = Path("."),
    from_autoresearch: Annotated[bool, typer.Option(help="Set up a Karpathy-style autoresearch checkout.")] = False,
    editable: Annotated[list[str] | None, typer.Option(help="Glob a candidate may change (repeatable).")] = None,
    command: Annotated[str | None, typer.Option(help="The run command.")] = None,
    metric: Annotated[str, typer.Option(help="Metric name, printed as `NAME: <float>`.")] = "score",
    direction: Annotated[str, typer.Option(help="minimize or maximize.")] = "minimize",
    budget: Annotated[float, typer.Option(help="Run budget in seconds.")] = 300,
    force: Annotated[bool, typer.Option(help="Overwrite an existing overnight.toml.")] = False,
) -> None:
    """Write overnight.toml and program.md (detects a karpathy-style autoresearch repo)."""
    from overnight import scaffold

    path = path.resolve()
    plan = None
    if not from_autoresearch and scaffold.is_autoresearch(path) and not editable and not command:
        console.print("Looks like an autoresearch checkout: using --from-autoresearch.")
        from_autoresearch = True
    if not from_autoresearch:
        if direction not in ("minimize", "maximize"):
            raise fail(f"--direction must be minimize or maximize, not {direction!r}")
        guess = next((f for f in ("train.py", "main.py", "run.py") if (path / f).is_file()), None)
        files = editable or ([guess] if guess else [])
        if not files:
            raise fail(f"{path}: which files may a candidate change? Pass --editable FILE (repeatable).")
        plan = scaffold.InitPlan(name=scaffold._name(path), editable=files,
                                 command=command or f"python {files[0]}", metric=metric, direction=direction,
                                 budget=budget, timeout=max(2 * budget, budget + 60))
    try:
        written = scaffold.init(path, plan, from_autoresearch=from_autoresearch, force=force)
    except scaffold.InitError as e:
        raise fail(str(e)) from None
    for w in written:
        console.print(f"wrote {w}")
    console.print(f"Next: check {written[0].name}, then [bold]overnight run {path}[/]")


@app.command()
def run(
    path: PathArg = Path("."),
    proposer: Annotated[str, typer.Option(help="optuna, llm or agent.")] = "optuna",
    agent_cmd: Annotated[str | None, typer.Option(help="Agent CLI command or preset name (for --proposer agent).")] = None,
    model: Annotated[str | None, typer.Option(help="Model name (for --proposer llm).")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint (for --proposer llm).")] = None,
    provider: Annotated[str | None, typer.Option(help="openai or anthropic (default: guessed from the model).")] = None,
    max_experiments: Annotated[int | None, typer.Option(help="Stop after this many experiments (this invocation).")] = None,
    hours: Annotated[float | None, typer.Option(help="Stop starting experiments after this many hours.")] = None,
    budget: Annotated[float | None, typer.Option(help="Override the run budget in seconds.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="Stop before LLM spend exceeds this many dollars.")] = None,
    workers: Annotated[int, typer.Option(help="Concurrent runs (slots).")] = 1,
    executor: Annotated[str, typer.Option(help="local or ray.")] = "local",
    ray_address: Annotated[str | None, typer.Option(help="Ray cluster to join (default: start a local one).")] = None,
    lookahead: Annotated[int, typer.Option(help="Candidates prepared ahead of the slots (0: serial).")] = 1,
    tag: Annotated[str | None, typer.Option(help="Branch overnight/<tag> (default: the track name).")] = None,
    sandbox: Annotated[bool, typer.Option(help="Run candidates in the bubblewrap sandbox.")] = False,
    plot_file: Annotated[Path | None, typer.Option("--plot", help="Where to write the plot at the end.")] = None,
) -> None:
    """Run the research loop: baseline first, then propose, run, evaluate, decide, record."""
    from overnight.loop import Limits, Loop, LoopError
    from overnight.proposers import FatalProposerError, make_proposer
    from overnight.view import LiveView

    track = open_track(path)
    if budget is not None:
        track.spec.run.budget_seconds = budget
        track.spec.run.timeout_seconds = max(track.spec.run.timeout_seconds or 0, 2 * budget)
    if sandbox:
        track.spec.run.sandbox = "bubblewrap"
    if track.spec.run.sandbox == "bubblewrap":
        from overnight.sandbox import SandboxError, require

        try:
            require()  # before any run: a missing bwrap stops here, never runs unsandboxed
        except SandboxError as e:
            raise fail(str(e)) from None
    if workers < 1:
        raise fail("--workers must be at least 1")
    if executor not in ("local", "ray"):
        raise fail(f"--executor must be local or ray, not {executor!r}")
    if ray_address and executor != "ray":
        raise fail("--ray-address needs --executor ray")
    tag = tag or track.name
    options = {k: v for k, v in dict(agent_cmd=agent_cmd, model=model, base_url=base_url, provider=provider,
                                     max_cost=max_cost).items() if v is not None}
    stop = threading.Event()
    try:
        prop = make_proposer(proposer, track, tag, **options)
        loop = Loop(track, prop, tag=tag, limits=Limits(max_experiments, hours), stop=stop, workers=workers,
                    executor=executor, ray_address=ray_address, lookahead=lookahead)
    except (FatalProposerError, ValueError) as e:
        raise fail(str(e)) from None
    loop.set_deadline()

    def on_signal(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print("\nstopping after cleanup (press Ctrl-C again to abort)…")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    with LiveView(loop.state, track.spec.metric.name, console):
        try:
            loop.run()
        except LoopError as e:
            err.print(f"[bold red]error:[/] {e}")
            code = 1
    write_outputs(track, tag, plot_file)
    print_summary(track, tag)
    raise typer.Exit(code)


def write_outputs(track, tag: str, plot_file: Path | None = None) -> None:
    from overnight import results
    from overnight.plot import plot

    exps = track.ledger.experiments(tag=tag)
    (track.dir / "results.tsv").write_text(results.tsv(track.ledger, track.spec.metric.name, tag))
    if exps:
        out = plot_file or track.dir / "progress.png"
        plot(exps, track.spec.metric.name, track.spec.minimize, out, title=f"overnight: {track.name} ({tag})")
    console.print(f"wrote {track.dir / 'results.tsv'} and {plot_file or track.dir / 'progress.png'}")


def print_summary(track, tag: str) -> None:
    exps = track.ledger.experiments(tag=tag)
    kept = [e for e in exps if e.status == "keep"]
    if not kept:
        console.print("no experiments yet")
        return
    base, head = kept[0], kept[-1]
    counts: dict[str, int] = {}
    for e in exps:
        counts[e.status] = counts.get(e.status, 0) + 1
    name = track.spec.metric.name
    console.print(
        f"[bold]{track.name}[/] ({tag}): {len(exps)} experiments ("
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
        console.print(f"{track.name}: no experiments yet. Start with [bold]overnight run {path}[/]")
        return
    print_summary(track, tag)
    live = track.ledger.get("slots") or {}
    alive = bool(live.get("slots")) and _pid_alive(live.get("pid"))
    if alive:  # a loop is running now: what each slot is doing
        import time as _time

        for v in live["slots"]:
            what = (f"{v['description'][:60]} (run {v['run']}, {_time.time() - v['run_started']:.0f}s)"
                    if v.get("exp_id") else "idle")
            console.print(f"slot {v['index']} [{v['label']}]: {what}")
    running = [e for e in exps if e.status in ("running", "interrupted")]
    for e in running:
        note = f"on slot {e.slot}" if alive else "resumed by the next `overnight run`"
        console.print(f"[yellow]{e.status}[/]: #{e.id} {e.description} ({note})")
    tokens = sum(e.tokens_in + e.tokens_out for e in exps)
    cost = sum(e.cost_usd for e in exps)
    if tokens:
        console.print(f"LLM usage: {tokens} tokens, ${cost:.4f}")
    ideas = track.ledger.ideas({"open", "claimed"})
    if ideas:
        console.print(f"{len(ideas)} idea(s) queued")
    t = Table(title="last experiments", show_edge=False)
    for col in ("#", "status", track.spec.metric.name, "Δ vs head", "description"):
        t.add_column(col)
    for e in exps[-10:]:
        delta = "" if e.metric is None or e.head_metric is None else f"{e.metric - e.head_metric:+.4g}"
        t.add_row(str(e.id), e.status, "" if e.metric is None else f"{e.metric:.6g}", delta,
                  (e.description or e.reason)[:70])
    console.print(t)


@app.command()
def results(
    path: PathArg = Path("."),
    format: Annotated[str, typer.Option("--format", help="tsv or json.")] = "tsv",
    tag: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Every experiment: tsv starts with autoresearch's results.tsv columns."""
    from overnight import results as res

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
    from overnight.plot import plot as draw

    track = open_track(path)
    tag = current_tag(track, tag)
    exps = track.ledger.experiments(tag=tag)
    if not exps:
        raise fail("no experiments to plot yet", 1)
    draw(exps, track.spec.metric.name, track.spec.minimize, output, title=f"overnight: {track.name} ({tag})")
    console.print(f"wrote {output}")


@app.command()
def dashboard(
    path: PathArg = Path("."),
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8765,
    host: Annotated[str, typer.Option(help="Address to bind (0.0.0.0 exposes it to the network).")] = "127.0.0.1",
    tag: Annotated[str | None, typer.Option(help="Show this tag (default: the current one).")] = None,
) -> None:
    """Live web view of the track's ledger: progress chart, experiments, diffs, idea queue."""
    import uvicorn

    from overnight.dashboard import create_app

    track = open_track(path)
    console.print(f"[bold]{track.name}[/] dashboard on http://{host}:{port}/ (Ctrl-C to stop)")
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
        t.add_row(str(i.id), i.status, i.source, str(i.experiment_id or ""), i.text[:90])
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


@bench_app.command("overhead")
def bench_overhead(
    seconds: Annotated[float, typer.Option(help="Sleep of the trivial run.")] = 10.0,
    pairs: Annotated[int, typer.Option(help="Direct/harness pairs, interleaved.")] = 3,
) -> None:
    """Harness overhead per experiment vs running the command directly, and the loop's RSS."""
    from overnight.bench.overhead import main

    main(seconds, pairs, console)


@bench_app.command("dashboard")
def bench_dashboard(
    experiments: Annotated[int, typer.Option(help="Experiments in the synthetic ledger.")] = 10_000,
    repeats: Annotated[int, typer.Option(help="Page loads to time (the median is reported).")] = 5,
) -> None:
    """Time for the track page to render (navigation to chart drawn) in headless Chromium."""
    from overnight.bench.dashboard import main

    main(experiments, repeats, console)


@bench_app.command("noise")
def bench_noise(
    nulls: Annotated[int, typer.Option(help="Null candidates (no-op edits).")] = 1000,
    improvements: Annotated[int, typer.Option(help="Candidates with a true improvement.")] = 1000,
    effect: Annotated[float, typer.Option(help="True improvement, in units of the noise sigma.")] = 2.0,
    seed: Annotated[int, typer.Option(help="Seed of the whole benchmark.")] = 0,
) -> None:
    """False-keep rate, power and confirmation overhead of greedy vs the noise rule on noisy-quadratic."""
    from overnight.bench.noise import main as bench_main

    bench_main(nulls, improvements, effect, seed, console)


# --- hub -------------------------------------------------------------------------------------------
HubUrl = Annotated[str, typer.Option("--hub", help="Hub URL, e.g. http://127.0.0.1:8600")]
HubToken = Annotated[str, typer.Option("--token", envvar="OVERNIGHT_HUB_TOKEN", help="Your hub token.")]


@hub_app.command("serve")
def hub_serve(
    data: Annotated[Path, typer.Option(help="Folder for the hub's git repos (and its SQLite file).")] = Path("hub-data"),
    db: Annotated[str | None, typer.Option(help="SQLAlchemy URL, e.g. postgresql+psycopg://u@h/db (default: SQLite in --data).")] = None,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 8600,
    rate: Annotated[float, typer.Option(help="Requests per second per token (sustained).")] = 20.0,
    burst: Annotated[float, typer.Option(help="Requests per token at once.")] = 60.0,
) -> None:
    """Serve the hub (FastAPI; OpenAPI docs at /docs). Admin token: $OVERNIGHT_HUB_ADMIN_TOKEN or printed once."""
    from overnight.hub.server import serve

    console.print(f"hub on http://{host}:{port}/ (docs at /docs), data in {data}")
    serve(data, db, host, port, rate, burst)


@hub_app.command("add-track")
def hub_add_track(path: PathArg, hub: HubUrl, token: HubToken) -> None:
    """Host the track at PATH (its repo's HEAD becomes the chain's base). Needs the admin token."""
    from overnight.hub.client import HubClient, HubClientError
    from overnight.hub.contribute import publish

    try:
        res = publish(HubClient(hub, token), path)
    except (HubClientError, ValueError, SpecError) as e:
        raise fail(str(e)) from None
    console.print(f"track {res['name']} hosted at head {res['head'][:12]}")


@hub_app.command("add-account")
def hub_add_account(name: str, hub: HubUrl, token: HubToken,
                    role: Annotated[str, typer.Option(help="verifier or contributor.")] = "verifier") -> None:
    """Create a verifier (or contributor) token; it is printed once. Needs the admin token."""
    from overnight.hub.client import HubClient, HubClientError

    try:
        res = HubClient(hub, token).create_account(name, role)
    except HubClientError as e:
        raise fail(str(e)) from None
    typer.echo(f"{role} {name}: token (shown once): {res['token']}")


@hub_app.command("register")
def hub_register(name: str, hub: HubUrl) -> None:
    """Register as a contributor; the token is printed once."""
    from overnight.hub.client import HubClient, HubClientError

    try:
        res = HubClient(hub).register(name)
    except HubClientError as e:
        raise fail(str(e)) from None
    typer.echo(f"contributor {name}: token (shown once): {res['token']}")


@app.command()
def contribute(
    hub: HubUrl, token: HubToken,
    track: Annotated[str, typer.Option(help="The hub track to work on.")],
    work: Annotated[Path | None, typer.Option("--dir", help="Work folder (default: ./<track>).")] = None,
    proposer: Annotated[str, typer.Option(help="optuna, llm or agent.")] = "optuna",
    agent_cmd: Annotated[str | None, typer.Option(help="Agent CLI (for --proposer agent).")] = None,
    model: Annotated[str | None, typer.Option(help="Model (for --proposer llm).")] = None,
    base_url: Annotated[str | None, typer.Option(help="Endpoint (for --proposer llm).")] = None,
    max_experiments: Annotated[int, typer.Option(help="Experiments per round.")] = 10,
    rounds: Annotated[int, typer.Option(help="Rounds (fetch head, loop, submit); 0 = forever.")] = 1,
) -> None:
    """Untrusted worker: fetch the chain head, run the local loop, submit each kept improvement."""
    from overnight.hub.client import HubClient, HubClientError
    from overnight.hub.contribute import contribute as run_round
    from overnight.loop import LoopError
    from overnight.proposers import FatalProposerError, make_proposer

    options = {k: v for k, v in dict(agent_cmd=agent_cmd, model=model, base_url=base_url).items() if v}
    client, n = HubClient(hub, token), 0
    while rounds == 0 or n < rounds:
        n += 1
        try:
            run_round(client, track, (work or Path(track)).resolve(),
                      lambda t, tag: make_proposer(proposer, t, tag, **options), max_experiments,
                      say=console.print)
        except (HubClientError, LoopError, SpecError, ValueError, FatalProposerError) as e:
            raise fail(str(e)) from None


@app.command()
def verify(
    hub: HubUrl, token: HubToken,
    work: Annotated[Path, typer.Option("--dir", help="Work folder for clones and runs.")] = Path("verifier-work"),
    track: Annotated[str | None, typer.Option(help="Only this track.")] = None,
    once: Annotated[bool, typer.Option(help="Stop when the queue is empty.")] = False,
    unsafe_no_sandbox: Annotated[bool, typer.Option("--unsafe-no-sandbox", help="TESTS ONLY: run contributor code without the sandbox.")] = False,
) -> None:
    """Trusted verifier: re-run pending submissions in the sandbox; accepted ones extend the chain."""
    from overnight.hub.client import HubClient, HubClientError
    from overnight.hub.verifier import Verifier, VerifierError

    if unsafe_no_sandbox:
        err.print("[bold yellow]warning:[/] --unsafe-no-sandbox runs untrusted code directly on this machine")
    try:
        n = Verifier(HubClient(hub, token), work.resolve(), unsafe_no_sandbox, say=console.print).run(track, once)
    except (HubClientError, VerifierError) as e:
        raise fail(str(e)) from None
    console.print(f"verified {n} submission(s)")


@bench_app.command("hub")
def bench_hub(
    contributors: Annotated[int, typer.Option(help="Registered contributors.")] = 10_000,
    seconds: Annotated[float, typer.Option(help="Duration of each phase.")] = 5.0,
    concurrency: Annotated[int, typer.Option(help="Concurrent client connections.")] = 8,
    db: Annotated[str | None, typer.Option(help="Database URL (default: SQLite in a temp folder).")] = None,
) -> None:
    """Hub leaderboard reads/s and submissions/s with p50/p99 latency, over loopback, and the hub's RSS."""
    from overnight.bench.hub import main as bench_main

    bench_main(contributors, seconds, concurrency, db, console)


@bench_app.command("duty")
def bench_duty(
    seconds: Annotated[float, typer.Option(help="Run time R of the sleep track; the proposer thinks 0.2 R.")] = 5.0,
    experiments: Annotated[int, typer.Option(help="Experiments per loop.")] = 6,
) -> None:
    """Accelerator duty cycle: the serial loop vs the pipelined loop, side by side."""
    from overnight.bench.duty import main

    main(seconds, experiments, console)


@bench_app.command("scaling")
def bench_scaling(
    seconds: Annotated[float, typer.Option(help="Run time of the sleep track.")] = 4.0,
    rounds: Annotated[int, typer.Option(help="Experiments per slot.")] = 3,
    slots: Annotated[str, typer.Option(help="Comma-separated slot counts.")] = "1,2,4,8",
    executor: Annotated[str, typer.Option(help="local, ray or local,ray.")] = "local,ray",
) -> None:
    """Experiments per minute for N slots, local executor and a single-node Ray cluster."""
    from overnight.bench.scaling import main

    executors = [e.strip() for e in executor.split(",") if e.strip()]
    if "ray" in executors:
        try:
            import ray  # noqa: F401
        except ImportError:
            err.print("ray is not installed (pip install 'overnight[ray]'): local executor only")
            executors.remove("ray")
    main(seconds, rounds, [int(n) for n in slots.split(",")], executors, console)


def main() -> None:  # pragma: no cover
    app()
