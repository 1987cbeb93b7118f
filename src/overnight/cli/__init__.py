"""The `overnight` command line (Typer + Rich): one module per group of commands."""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode="rich",
                  help="Turn a codebase with a measurable objective into an autonomous, verifiable research loop.")
ideas_app = typer.Typer(no_args_is_help=True, help="The idea queue that proposers draw from.")
bench_app = typer.Typer(no_args_is_help=True, help="overnight's own performance benchmarks.")
hub_app = typer.Typer(no_args_is_help=True, help="The multi-contributor hub: serve, host tracks, add verifiers.")
app.add_typer(ideas_app, name="ideas")
app.add_typer(bench_app, name="bench")
app.add_typer(hub_app, name="hub")

# Importing the command modules registers their commands, in the order `--help` lists them.
for _module in ("track", "report", "tournament", "hub", "bench"):
    importlib.import_module(f"overnight.cli.{_module}")


def main() -> None:  # pragma: no cover
    app()
