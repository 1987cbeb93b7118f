"""The HTML shell of every page; the page's script fills it from the JSON API."""

from __future__ import annotations

import hashlib
import html
import json
from functools import cache
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from fastapi.responses import Response

STATIC = Path(__file__).resolve().parent.parent / "static"
TYPES = {".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml", ".png": "image/png"}


@cache
def assets() -> dict[str, tuple[bytes, str, str]]:
    """Static files in memory with a content hash: URLs carry the hash, so browsers may cache them forever."""
    out = {}
    for f in STATIC.iterdir():
        if f.is_file() and f.suffix in TYPES:
            data = f.read_bytes()
            out[f.name] = (data, hashlib.sha256(data).hexdigest()[:12], TYPES[f.suffix])
    return out


def asset_url(name: str) -> str:
    return f"static/{name}?v={assets()[name][1]}"


def static_response(name: str, v: str | None) -> Response:
    """A static file; a URL with the current hash never changes content, anything else is revalidated."""
    if name not in assets():
        raise HTTPException(404)
    data, digest, media_type = assets()[name]
    cache_control = "public, max-age=31536000, immutable" if v == digest else "no-cache"
    return Response(data, media_type=media_type, headers={"Cache-Control": cache_control})

# API answers a page needs first: fetched by an inline script while the page's scripts still load
PREFETCH = {"track": ["api/track", "api/experiments"], "experiments": ["api/track", "api/experiments"],
            "experiment": ["api/track"]}
# Store.q() puts only `tag` in the query, so the prefetched URLs match the ones the scripts ask for
PREFETCH_JS = ("window.__pre={};(function(u){var t=new URLSearchParams(location.search).get('tag'),"
               "q=t?'?tag='+encodeURIComponent(t):'';u.forEach(function(p){window.__pre[p+q]=fetch(p+q);});})")

SCRIPTS = {"track": ["chart.js", "tree.js", "track.js"], "experiments": ["experiments.js"], "experiment": ["experiment.js"]}
TITLES = {"track": "track", "experiments": "experiments", "experiment": "experiment"}


def page_html(kind: str, base: str, name: str, links: list[tuple[str, str]], data: dict[str, Any]) -> str:
    esc = html.escape
    extra = "".join(f'<a href="{esc(href)}">{esc(label)}</a>' for label, href in links)
    scripts = "".join(f'<script src="{asset_url(s)}" defer></script>' for s in ["app.js", *SCRIPTS[kind]])
    nav = "".join(
        f'<a href="{href}"{" class=active" if k == kind or (k == "experiments" and kind == "experiment") else ""}>'
        f"{label}</a>"
        for k, href, label in (("track", "./", "Track"), ("experiments", "experiments", "Experiments"))
    )
    # data goes in as JSON inside a script tag: escape "<" so no text can close the tag
    boot = json.dumps({"page": kind, "name": name, **data}).replace("<", "\\u003c")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<base href="{esc(base)}">
<title>{esc(name)} · {TITLES[kind]} · overnight</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="{asset_url('app.css')}">
<script id="boot" type="application/json">{boot}</script>
<script>{PREFETCH_JS}({json.dumps(PREFETCH[kind])});</script>
{scripts}
</head><body data-page="{kind}">
<header class="top"><a class="brand" href="./"><span class="moon">☾</span> overnight</a>
<span class="track-name">{esc(name)}</span><nav>{nav}{extra}<a href="openapi.json" class="dim">API</a></nav>
<span id="live" class="live" title="polling the ledger"><i></i><span>connecting…</span></span></header>
<main id="main"><p class="loading">Loading…</p></main>
</body></html>"""
