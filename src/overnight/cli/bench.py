"""`overnight bench …`: the project's own benchmarks, each printing what it measured."""

from __future__ import annotations

from typing import Annotated

import typer

from overnight.cli import bench_app
from overnight.cli.common import console, err


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
    nights: Annotated[int, typer.Option(help="Simulated nights (100 candidates each) per regime and rule.")] = 200,
    seed: Annotated[int, typer.Option(help="Seed of the whole benchmark.")] = 0,
) -> None:
    """Whole simulated nights through the real judge: greedy, the 2-sd floor and overnight's rule in every
    regime (drift, slot offsets, heavy tails, noisier candidates, seed pinning, true gains)."""
    from overnight.bench.noise import main as bench_main

    bench_main(nights, seed, console)


@bench_app.command("quickstart")
def bench_quickstart(
    max_experiments: Annotated[int, typer.Option(help="Experiments, as in the README's command.")] = 3,
    hogs: Annotated[int, typer.Option(help="Busy-loop processes beside the loop (machine load).")] = 0,
) -> None:
    """The README's quick start on a fresh copy of examples/tinylm: time to the first kept change."""
    from overnight.bench.quickstart import main

    main(max_experiments, hogs, console)


@bench_app.command("hub")
def bench_hub(
    contributors: Annotated[int, typer.Option(help="Registered contributors.")] = 10_000,
    seconds: Annotated[float, typer.Option(help="Duration of each phase.")] = 5.0,
    concurrency: Annotated[int, typer.Option(help="Concurrent client connections.")] = 8,
    db: Annotated[str | None, typer.Option(help="Database URL (default: SQLite in a temp folder).")] = None,
    processes: Annotated[int, typer.Option(min=1, help="Also measure N hub processes on one PostgreSQL database "
                                           "(a throwaway server unless --db), beside the 1-process row.")] = 1,
) -> None:
    """Hub leaderboard reads/s and submissions/s with p50/p99 latency, over loopback, and the hub's RSS."""
    from overnight.bench.hub import main as bench_main

    bench_main(contributors, seconds, concurrency, db, console, processes=processes)


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




@bench_app.command("swarm")
def bench_swarm(
    contributors: Annotated[int, typer.Option(help="Contributors in the swarm.")] = 200,
    liars: Annotated[float, typer.Option(help="Fraction of contributors that lie.")] = 0.10,
    verifiers: Annotated[int, typer.Option(help="Verifier slots (one run per tick each).")] = 4,
    ticks: Annotated[int, typer.Option(help="Simulated time, in runs.")] = 300,
    lie_every: Annotated[float, typer.Option(help="Ticks between a liar's fabricated claims, on average.")] = 20.0,
    seed: Annotated[int, typer.Option(help="Seed of the whole simulation.")] = 0,
    nulls: Annotated[int, typer.Option(help="First, this many null claims each from a trusted and a new "
                                       "contributor: the false-accept rate per class.")] = 0,
) -> None:
    """Verifier compute vs contributed compute in a simulated swarm with liars, over the real hub logic."""
    from overnight.bench.swarm import SwarmConfig, main

    main(SwarmConfig(contributors, liars, verifiers, ticks, lie_every, seed=seed), console, nulls=nulls)


@bench_app.command("search")
def bench_search(
    seeds: Annotated[int, typer.Option(help="Simulated nights per track and method.")] = 30,
    experiments: Annotated[int, typer.Option(help="Experiments overnight runs after its baseline.")] = 30,
    sampler: Annotated[str, typer.Option(help="The optuna proposer's sampler: gp, tpe, tpe-independent, cmaes, "
                                               "random.")] = "gp",
    track: Annotated[list[str] | None, typer.Option(help="Only these tracks (repeatable).")] = None,
    walk: Annotated[bool, typer.Option(help="The optuna proposer's walk around each head (off: the sampler only).")]
    = True,
    first_seed: Annotated[int, typer.Option(help="The first night's seed (another set of nights: e.g. 100).")] = 0,
    held_out: Annotated[bool, typer.Option(help="The held-out tuning tracks instead (written after the walk was "
                                                "tuned: does it generalise?).")] = False,
) -> None:
    """Simulated nights with a known truth: overnight vs greedy chain, random, best-of-N, plain TPE."""
    from overnight.bench.search import main as bench_main
    from overnight.bench.search_heldout import HELD_OUT
    from overnight.bench.search_tracks import AGENT, TUNING
    from overnight.proposers.sampling import make_sampler

    names = {t.name for t in ([*HELD_OUT] if held_out else [*TUNING, *AGENT])}
    unknown = [t for t in track or [] if t not in names]
    if unknown:
        err.print(f"--track {unknown[0]!r}: no such track; the tracks are {', '.join(sorted(names))}", markup=False)
        raise typer.Exit(2)
    try:
        make_sampler(sampler, strict=True)
    except ValueError as e:
        err.print(f"--sampler: {e}", markup=False)
        raise typer.Exit(2) from None
    bench_main(seeds, experiments, sampler, track or None, console, walk, first_seed, held_out)


@bench_app.command("tournament")
def bench_tournament(
    trials: Annotated[int, typer.Option(help="Simulated tournaments per row.")] = 1000,
    budget: Annotated[int, typer.Option(help="Proposals per contestant.")] = 80,
    rounds: Annotated[int, typer.Option(help="Re-measurement rounds of the verdict.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the whole benchmark.")] = 0,
) -> None:
    """How often the truly better contestant wins, and how often equal ones are declared different."""
    from overnight.bench.tournament import main

    main(trials, budget, rounds, seed, console)
