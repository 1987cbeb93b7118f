"""Hub commands: serve a hub, host tracks, contribute as an untrusted worker, verify as a trusted one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from overnight.cli import app, hub_app
from overnight.cli.common import PathArg, console, err, fail
from overnight.core.spec import SpecError

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
    workers: Annotated[int, typer.Option(min=1, help="Worker processes (PostgreSQL only; SQLite serves one).")] = 1,
    processes: Annotated[int | None, typer.Option(min=1, help="Hub processes behind this address in all, "
                                                  "this one's workers included (default: --workers); each "
                                                  "enforces 1/N of --rate and --burst.")] = None,
    lease: Annotated[float, typer.Option(min=1, help="Seconds a verifier's lease lasts without a heartbeat.")] = 300.0,
) -> None:
    """Serve the hub (FastAPI; OpenAPI docs at /docs). Admin token: $OVERNIGHT_HUB_ADMIN_TOKEN or printed once."""
    from overnight.hub.db import DatabaseError
    from overnight.hub.server import serve

    console.print(f"hub on http://{host}:{port}/ (docs at /docs, readiness at /readyz), data in {data}",
                  markup=False)
    try:
        serve(data, db, host, port, rate, burst, workers=workers, processes=processes, lease_seconds=lease)
    except DatabaseError as e:
        raise fail(str(e)) from None


@hub_app.command("add-track")
def hub_add_track(path: PathArg, hub: HubUrl, token: HubToken) -> None:
    """Host the track at PATH (its repo's HEAD becomes the chain's base). Needs the admin token."""
    from overnight.hub.client import HubClient, HubClientError
    from overnight.hub.contribute import publish

    try:
        res = publish(HubClient(hub, token), path)
    except (HubClientError, ValueError, SpecError) as e:
        raise fail(str(e)) from None
    console.print(f"track {res['name']} hosted at head {res['head'][:12]}", markup=False)


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


@hub_app.command("revoke")
def hub_revoke(name: str, hub: HubUrl, token: HubToken) -> None:
    """Revoke an account's token on every hub process (within seconds). Needs the admin token."""
    from overnight.hub.client import HubClient, HubClientError

    try:
        res = HubClient(hub, token).revoke(name)
    except HubClientError as e:
        raise fail(str(e)) from None
    typer.echo(f"{name}: revoked ({res['note']})")


@hub_app.command("rotate")
def hub_rotate(name: str, hub: HubUrl, token: HubToken) -> None:
    """Give an account a new token; the old one stops working within seconds. Needs the admin token."""
    from overnight.hub.client import HubClient, HubClientError

    try:
        res = HubClient(hub, token).rotate(name)
    except HubClientError as e:
        raise fail(str(e)) from None
    typer.echo(f"{name}: new token (shown once): {res['token']}")


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
                      say=lambda s: console.print(s, markup=False))
        except (HubClientError, LoopError, SpecError, ValueError, FatalProposerError) as e:
            raise fail(str(e)) from None


@app.command()
def verify(
    hub: HubUrl,
    token_file: Annotated[Path | None, typer.Option(help="File holding the verifier token (else $OVERNIGHT_HUB_TOKEN).")] = None,
    token: Annotated[str | None, typer.Option(hidden=True, help="Refused: argv is readable by every process.")] = None,
    work: Annotated[Path, typer.Option("--dir", help="Work folder for clones and runs.")] = Path("verifier-work"),
    track: Annotated[str | None, typer.Option(help="Only this track.")] = None,
    once: Annotated[bool, typer.Option(help="Stop when the queue is empty.")] = False,
    unsafe_no_sandbox: Annotated[bool, typer.Option("--unsafe-no-sandbox", help="TESTS ONLY: run contributor code without the sandbox.")] = False,
) -> None:
    """Trusted verifier: re-run pending submissions in the sandbox; accepted ones extend the chain.

    The token comes from --token-file or $OVERNIGHT_HUB_TOKEN, never argv, and no child process inherits it."""
    import os

    from overnight.hub.client import HubClient, HubClientError
    from overnight.hub.verifier import Verifier, VerifierError

    if token is not None:
        raise fail("the verifier token may not be passed on the command line (any process can read argv): "
                   "use --token-file PATH or $OVERNIGHT_HUB_TOKEN")
    secret = os.environ.pop("OVERNIGHT_HUB_TOKEN", None)  # popped: runs and evaluators never inherit it
    if token_file is not None:
        try:
            secret = token_file.read_text().strip()
        except OSError as e:
            raise fail(f"--token-file {token_file}: {e.strerror}") from None
    if not secret:
        raise fail("no verifier token: use --token-file PATH or $OVERNIGHT_HUB_TOKEN")
    if unsafe_no_sandbox:
        err.print("[bold yellow]warning:[/] --unsafe-no-sandbox runs untrusted code directly on this machine")
    say = lambda s: console.print(s, markup=False)  # noqa: E731 - user text printed literally
    try:
        n = Verifier(HubClient(hub, secret), work.resolve(), unsafe_no_sandbox, say=say,
                     give_up_after=300.0 if once else None).run(track, once)
    except (HubClientError, VerifierError) as e:
        raise fail(str(e)) from None
    console.print(f"verified {n} submission(s)")


