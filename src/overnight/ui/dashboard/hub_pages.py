"""The hub's pages: an index of its tracks and, per track, the leaderboard and the chain.

Same look as the local dashboard (its CSS, chart and helpers), public reads only: nothing here needs a
token, and nothing shows tokens, patches or log tails of submissions outside the chain, or their
descriptions (an unverified idea stays its contributor's until it is verified).
"""

from __future__ import annotations

import html
import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from overnight.hub import store
from overnight.hub.service import Hub
from overnight.ui.dashboard.pages import PREFETCH_JS, asset_url, static_response


def overview(hub: Hub) -> list[dict[str, Any]]:
    """Every track with its chain length, head metric, gain since the base, contributors and queue size."""
    out = []
    for row in store.overview(hub.db):
        spec = hub.track(row["name"]).spec
        out.append({**row, "metric": spec.metric.name, "direction": spec.metric.direction})
    return out


def pending(hub: Hub, name: str) -> dict[str, Any]:
    """The verification queue in the order verifiers take it; claims only, never patches, logs or descriptions."""
    t = hub.track(name)
    return store.pending(hub.db, t.id, name, t.head)


def page_html(kind: str, base: str, title: str, track: str | None, prefetch: list[str], data: dict[str, Any]) -> str:
    esc = html.escape
    scripts = "".join(f'<script src="{asset_url(s)}" defer></script>' for s in ["app.js", "chart.js", "hub.js"])
    nav = f'<a href="./"{" class=active" if kind == "hub" else ""}>Tracks</a>'
    if track:
        nav += f'<a href="tracks/{esc(track)}/"{" class=active" if kind == "board" else ""}>Leaderboard &amp; chain</a>'
    boot = json.dumps({"page": kind, "name": track or "hub", "track": track, **data}).replace("<", "\\u003c")
    name = f'<span class="track-name">{esc(track)}</span>' if track else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<base href="{esc(base)}">
<title>{esc(title)} · overnight hub</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{asset_url('app.css')}">
<script id="boot" type="application/json">{boot}</script>
<script>{PREFETCH_JS.replace("location.search", "''")}({json.dumps(prefetch)});</script>
{scripts}
</head><body data-page="hub-{kind}">
<header class="top"><a class="brand" href="./"><span class="moon">☾</span> overnight hub</a>
{name}<nav>{nav}<a href="docs" class="dim">API</a></nav>
<span id="live" class="live" title="polling the hub"><i></i><span>connecting…</span></span></header>
<main id="main"><p class="loading">Loading…</p></main>
</body></html>"""


def make_hub_router(hub: Hub) -> APIRouter:
    r = APIRouter()

    def base(request: Request) -> str:
        return request.scope.get("root_path", "").rstrip("/") + "/"

    @r.get("/overview", tags=["pages"], summary="every track: chain length, head metric, contributors, queue size")
    def api_overview() -> Response:
        return Response(json.dumps(overview(hub)), media_type="application/json")

    @r.get("/tracks/{name}/pending", tags=["pages"],
           summary="the verification queue: claimed gains only (no patches, logs or descriptions)")
    def api_pending(name: str) -> Response:
        return Response(json.dumps(pending(hub, name)), media_type="application/json")

    @r.get("/", include_in_schema=False)
    def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page_html("hub", base(request), "tracks", None, ["overview"], {}))

    @r.get("/tracks/{name}/", include_in_schema=False)
    def board(request: Request, name: str) -> HTMLResponse:
        hub.track(name)  # 404 for an unknown track
        api = [f"tracks/{name}", f"tracks/{name}/chain", f"tracks/{name}/leaderboard", f"tracks/{name}/pending"]
        return HTMLResponse(page_html("board", base(request), f"{name} leaderboard", name, api, {}))

    @r.get("/tracks/{name}/entries/{seq}", include_in_schema=False)
    def entry(request: Request, name: str, seq: int) -> HTMLResponse:
        hub.track(name)
        api = [f"tracks/{name}", f"tracks/{name}/chain", f"tracks/{name}/chain/{seq}/diff"]
        return HTMLResponse(page_html("entry", base(request), f"{name} chain #{seq}", name, api, {"seq": seq}))

    @r.get("/static/{name}", include_in_schema=False)
    async def static(name: str, v: str | None = None) -> Response:
        return static_response(name, v)

    return r
