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


