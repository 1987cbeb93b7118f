"""`overnight tournament`: which program.md, which proposer — decided at equal budget, with the same judge."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated

import typer

from overnight.cli import app
from overnight.cli.common import PathArg, console, fail, open_track, stop_on_signals


@app.command()
def tournament(
    path: PathArg = Path("."),
    contestant: Annotated[list[str], typer.Option(
        "--contestant", "-c",
        help="NAME=PROPOSER[:ARG][,program=FILE][,model=M][,base_url=URL], e.g. lr=agent:claude,program=lr.md; "
             "give two or more.")] = [],  # noqa: B006 - Typer reads the default
    name: Annotated[str, typer.Option(help="The tournament's name: its branches are overnight/NAME-CONTESTANT; "
                                           "the same name resumes.")] = "t1",
    experiments: Annotated[int | None, typer.Option(help="Experiments per contestant.")] = 10,
    slot_hours: Annotated[float | None, typer.Option(help="Accelerator time per contestant, in slot-hours.")] = None,
    max_cost: Annotated[float | None, typer.Option(help="LLM/CLI dollars per contestant.")] = None,
    hours: Annotated[float | None, typer.Option(help="Wall time per contestant, in hours.")] = None,
    remeasure: Annotated[int, typer.Option(help="Rounds of the final side-by-side measurement of every head (20 tells a 1 sd gap apart ~85 % of the time).")] = 8,
    alpha: Annotated[float, typer.Option(help="Family-wise error rate of the verdict (Holm over all pairs).")] = 0.05,
    workers: Annotated[int, typer.Option(help="Concurrent runs (slots), shared by every contestant.")] = 1,
    meta_rounds: Annotated[int, typer.Option(help="Meta-optimise program.md: this many rounds, each a tournament "
                                                  "of the champion (the first contestant) against new variants.")] = 0,
    variants: Annotated[Path | None, typer.Option(help="Folder of program.md variants for --meta-rounds "
                                                       "(taken in name order).")] = None,
    program_model: Annotated[str | None, typer.Option(help="Model that writes variants for --meta-rounds.")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible endpoint for --program-model.")] = None,
) -> None:
    """Contestants take interleaved turns on the same slots, then every final head is re-measured side by side."""
    from overnight.proposers import FatalProposerError, make_proposer
    from overnight.tournament.budget import Caps
    from overnight.tournament.contest import Tournament, TournamentError
    from overnight.tournament.contestants import ContestantError, check_unique, parse

    track = open_track(path)
    try:
        contestants = [parse(c, Path.cwd()) for c in contestant]
        check_unique(contestants)
    except ContestantError as e:
        raise fail(str(e)) from None
    if remeasure < 2:
        raise fail("--remeasure must be at least 2 (a paired test needs two rounds)")
    if not 0 < alpha < 1:
        raise fail("--alpha must be between 0 and 1")
    caps = Caps(experiments=experiments, slot_seconds=slot_hours * 3600 if slot_hours else None,
                dollars=max_cost, wall_seconds=hours * 3600 if hours else None)
    if all(v is None for v in caps.as_dict().values()):
        raise fail("give a budget: --experiments, --slot-hours, --max-cost or --hours")
    stop = threading.Event()

    def build(c, view, tag):
        return make_proposer(c.proposer, view, tag, **c.options)

    stop_on_signals(stop, "after the current run")
    def say(s: str) -> None:
        console.print(s, markup=False, highlight=False)

    def make(tname: str, cs: list) -> Tournament:
        return Tournament(track, tname, cs, caps, build, remeasure=remeasure, alpha=alpha, workers=workers,
                          stop=stop, say=say)

    try:
        if meta_rounds:
            return _meta(track, name, contestants[0], make, meta_rounds, variants, program_model, base_url, say)
        state = make(name, contestants).run()
    except (TournamentError, FatalProposerError, ValueError) as e:
        raise fail(str(e)) from None
    print_verdict(state)
    raise typer.Exit(0 if state.get("verdict") else 1)


def _meta(track, name, champion, make, rounds, variants, program_model, base_url, say) -> None:
    from overnight.tournament.meta import MetaTournament, folder_variants, llm_variants

    if (variants is None) == (program_model is None):
        raise fail("--meta-rounds needs exactly one source of variants: --variants DIR or --program-model M")
    if variants is not None and not variants.is_dir():
        raise fail(f"--variants {variants}: not a folder")
    source = folder_variants(variants) if variants else llm_variants(program_model, base_url)
    meta = MetaTournament(track.paths.state / "programs" / name, champion, make, source, rounds=rounds)
    for h in meta.run(name):
        say(f"round {h['round']}: champion {h['champion']}, winner {h['winner'] or 'none beyond noise'}")
    program = meta.champion.program
    say(f"champion: {meta.champion.name}" + (f" ({program})" if program else " (the track's own program.md)"))


def print_verdict(state: dict) -> None:
    v = state.get("verdict")
    if not v:
        console.print(f"tournament {state['name']!r}: not finished ({state['turns']} turns so far)", markup=False)
        return
    console.print(f"tournament {state['name']!r}: {v['rounds']} re-measurement rounds", markup=False)
    for line in v["lines"]:
        console.print(line, markup=False, highlight=False)
    for c, s in v["spend"].items():
        console.print(f"{c}: {s['experiments']} experiments, {s['slot_seconds']:.1f} slot-s, ${s['dollars']:.4f}, "
                      f"{s['wall_seconds']:.1f} s wall", markup=False, highlight=False)
    console.print(f"re-measurement overhead: {100 * v['overhead']:.1f} % of the contestants' slot time",
                  markup=False)
