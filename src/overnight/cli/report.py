"""`overnight report`: the morning report, one Markdown and one HTML page."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from overnight.cli import app
from overnight.cli.common import PathArg, console, current_tag, open_track


@app.command()
def report(
    path: PathArg = Path("."),
    output: Annotated[Path | None, typer.Option("-o", "--output",
                                                help="Folder for report.md, report.html and progress.png "
                                                     "(default: the track's .overnight/).")] = None,
    tag: Annotated[str | None, typer.Option()] = None,
) -> None:
    """What ran, what was kept (diffs, p-values), near-misses, crashes by cause, noise, cost, the plot."""
    from overnight.report.morning import markdown, to_html
    from overnight.report.plot import plot
    from overnight.report.results import noise_sd

    track = open_track(path)
    tag = current_tag(track, tag)
    folder = (output or track.paths.state).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    exps = track.ledger.experiments(tag=tag)
    title = f"{track.name}" + ("" if tag in (None, track.name) else f" ({tag})")
    png = None
    if exps:
        png = plot(exps, track.spec.metric.name, track.spec.minimize, folder / "progress.png",
                   title=f"overnight: {title}", noise_sd=noise_sd(track.ledger, exps))
    md = markdown(track.ledger, tag, track.spec.metric.name, track.spec.minimize, title,
                  "progress.png" if png else None)
    (folder / "report.md").write_text(md)
    (folder / "report.html").write_text(to_html(md, f"{title}: the morning report",
                                                {"progress.png": png} if png else {}))
    console.print(f"wrote {folder / 'report.md'} and {folder / 'report.html'}", markup=False, soft_wrap=True)
