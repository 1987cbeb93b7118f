"""What every command shares: the consoles, the error exit, opening a track."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from overnight.core.spec import SpecError

console = Console()
err = Console(stderr=True)

PathArg = Annotated[Path, typer.Argument(help="The track folder (holds overnight.toml).")]


def fail(message: str, code: int = 2) -> typer.Exit:
    err.print(f"[bold red]error:[/] {escape(message)}", highlight=False, markup=True, soft_wrap=True)  # user text stays literal
    return typer.Exit(code)


def open_track(path: Path):
    from overnight.git.repo import RepoError
    from overnight.storage.ledger import SchemaError
    from overnight.track import Track

    try:
        track = Track(path)
        track.ledger  # noqa: B018 - opened (and its schema upgraded) here, so a bad ledger is one clear line
        return track
    except (SpecError, RepoError, SchemaError) as e:
        raise fail(str(e)) from None


def current_tag(track, tag: str | None) -> str | None:
    return tag or track.ledger.get("current_tag")


def stop_on_signals(stop, what: str) -> None:
    """First Ctrl-C (or SIGTERM) sets `stop` and says what happens next; a second one aborts."""
    import signal

    def on_signal(_signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        err.print(f"\nstopping {what} (press Ctrl-C again to abort)…")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
