"""The dashboard's router: a JSON API (in OpenAPI) plus the pages that use it, for one track.

`make_router(get_context)` is reusable: the local `overnight dashboard` binds it to one ledger,
the hub binds it per track (e.g. under a `/tracks/{track}` prefix) with a getter reading the request.
"""

from __future__ import annotations

import gzip
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, Response
from pydantic import BaseModel, Field

from overnight.core.status import FINAL, PENDING, Status
from overnight.report.plot import COLORS
from overnight.storage.ledger import IdeaStatus, Ledger
from overnight.ui.dashboard import queries
from overnight.ui.dashboard.pages import page_html, static_response

STATUSES = {"all": [str(s) for s in Status], "final": sorted(FINAL), "pending": sorted(PENDING)}
DEFAULT_COLOR = "#1f77b4"  # matplotlib's default, what plot.py uses for statuses without a colour


@dataclass
class TrackContext:
    """What the pages need to know about one track; the ledger is the only data source."""

    ledger: Ledger
    name: str
    metric: str
    minimize: bool = True
    tag: str | None = None  # a fixed tag, or None for the ledger's current tag
    links: list[tuple[str, str]] = field(default_factory=list)  # extra nav links (label, href), e.g. the hub


ContextGetter = Callable[[Request], TrackContext]


class TrackInfo(BaseModel):
    name: str
    metric: str
    direction: str
    tag: str | None
    tags: list[str]
    colors: dict[str, str]
    default_color: str
    statuses: dict[str, list[str]] = Field(description="the status vocabulary: every status, the final ones, "
                                                       "the pending ones (resumed, never final)")
    version: str
    summary: dict[str, Any]


class ExperimentList(BaseModel):
    columns: list[str] = Field(description="names of the values in each row")
    rows: list[list[Any]] = Field(description="one array per experiment, ordered by id")
    version: str = Field(description="pass back as nothing; compare with /api/version to know when to poll")
    now: float = Field(description="server time; use as `updated_after` on the next poll")


class Version(BaseModel):
    version: str


class IdeaIn(BaseModel):
    text: str = Field(min_length=1, max_length=4000)
    source: str = "human"


class IdeaOut(BaseModel):
    id: int
    text: str
    source: str
    status: str
    claimed_by: str | None = None
    lease_until: float | None = None
    experiment_id: int | None = None
    created_at: float


def _json(data: Any, status_code: int = 200) -> Response:
    # pre-serialised: FastAPI's encoder is far too slow for 10,000 rows
    return Response(json.dumps(data, separators=(",", ":")), status_code=status_code, media_type="application/json")


GZIP_MIN = 4096  # smaller answers are not worth compressing


class VersionCache:
    """Serialised (and gzipped) answers keyed by the ledger's version: a reload of a 10,000-experiment page
    costs two stat() calls. Concurrent misses of one key compute it once."""

    def __init__(self, size: int = 32):
        self.size, self.items = size, {}  # type: ignore[var-annotated]
        self.locks: dict[tuple, threading.Lock] = {}
        self.guard = threading.Lock()

    def bytes(self, key: tuple, version: str, make: Callable[[], Any]) -> tuple[bytes, bytes | None]:
        hit = self.items.get(key)
        if hit is not None and hit[0] == version:
            return hit[1], hit[2]
        with self.guard:
            lock = self.locks.setdefault(key, threading.Lock())
        with lock:
            hit = self.items.get(key)
            if hit is None or hit[0] != version:
                body = json.dumps(make(), separators=(",", ":")).encode()
                # level 1: a fifth of the size for a few ms, once per version
                zipped = gzip.compress(body, compresslevel=1, mtime=0) if len(body) >= GZIP_MIN else None
                if len(self.items) >= self.size and key not in self.items:
                    self.items.pop(next(iter(self.items)))
                hit = self.items[key] = (version, body, zipped)
        return hit[1], hit[2]

    def get(self, request: Request | None, key: tuple, version: str, make: Callable[[], Any]) -> Response:
        body, zipped = self.bytes(key, version, make)
        if zipped is not None and request is not None and "gzip" in request.headers.get("accept-encoding", ""):
            return Response(zipped, media_type="application/json",
                            headers={"Content-Encoding": "gzip", "Vary": "Accept-Encoding"})
        return Response(body, media_type="application/json", headers={"Vary": "Accept-Encoding"})


def track_info(ctx: TrackContext, tag: str | None, version: str) -> dict[str, Any]:
    return {"name": ctx.name, "metric": ctx.metric, "direction": "minimize" if ctx.minimize else "maximize",
            "tag": tag, "tags": ctx.ledger.get("tags") or ([tag] if tag else []),
            "colors": COLORS, "default_color": DEFAULT_COLOR, "version": version, "statuses": STATUSES,
            "summary": queries.summary(ctx.ledger, tag, ctx.minimize)}


def experiment_list(ctx: TrackContext, tag: str | None, version: str,
                    updated_after: float | None = None) -> dict[str, Any]:
    now = time.time()  # taken before the query, so nothing written during it is missed next time
    rows = queries.list_rows(ctx.ledger, tag, updated_after)
    return {"columns": queries.LIST_COLUMNS, "rows": rows, "version": version, "now": now}


def warm(cache: VersionCache, ctx: TrackContext) -> None:
    """Fill the cache for the current tag (run in a thread at start): the first page load is then a cache hit."""
    tag = queries.resolve_tag(ctx.ledger, ctx.tag)
    version = queries.version(ctx.ledger, tag)
    cache.bytes((id(ctx.ledger), "track", tag), version, lambda: track_info(ctx, tag, version))
    cache.bytes((id(ctx.ledger), "list", tag), version, lambda: experiment_list(ctx, tag, version))


def make_router(get_context: ContextGetter, cache: VersionCache | None = None) -> APIRouter:
    r = APIRouter()
    cache = cache or VersionCache()

    def ctx_tag(request: Request, tag: str | None) -> tuple[TrackContext, str | None]:
        ctx = get_context(request)
        return ctx, tag or queries.resolve_tag(ctx.ledger, ctx.tag)

    # --- API --------------------------------------------------------------------------------------
    @r.get("/api/track", response_model=TrackInfo, tags=["dashboard"],
           summary="The track: metric, direction, tags, status colours and a summary of progress")
    def api_track(request: Request, tag: str | None = None) -> Response:
        ctx, tag = ctx_tag(request, tag)
        version = queries.version(ctx.ledger, tag)
        return cache.get(request, (id(ctx.ledger), "track", tag), version, lambda: track_info(ctx, tag, version))

    @r.get("/api/version", response_model=Version, tags=["dashboard"],
           summary="A cheap fingerprint of the ledger; poll it and refetch when it changes")
    def api_version(request: Request, tag: str | None = None) -> Response:
        ctx, tag = ctx_tag(request, tag)
        return _json({"version": queries.version(ctx.ledger, tag)})

    @r.get("/api/experiments", response_model=ExperimentList, tags=["dashboard"],
           summary="Every experiment of a tag as compact rows (no diffs, no transcripts)")
    def api_experiments(
        request: Request, tag: str | None = None,
        updated_after: float | None = Query(None, description="only rows created or finished at or after "
                                                               "this time, plus pending ones"),
    ) -> Response:
        ctx, tag = ctx_tag(request, tag)
        version = queries.version(ctx.ledger, tag)
        if updated_after is None:
            return cache.get(request, (id(ctx.ledger), "list", tag), version, lambda: experiment_list(ctx, tag, version))
        return _json(experiment_list(ctx, tag, version, updated_after))

    @r.get("/api/experiments/{exp_id}", tags=["dashboard"],
           summary="One experiment in full: diff, measurements, stats, runs with log tails, transcript")
    def api_experiment(request: Request, exp_id: int) -> Response:
        d = queries.experiment_detail(get_context(request).ledger, exp_id)
        if d is None:
            raise HTTPException(404, f"no experiment #{exp_id}")
        return _json(d)

    @r.get("/api/tournaments", tags=["dashboard"],
           summary="Tournaments on this track: contestants, turns, spend and the verdict once there is one")
    def api_tournaments(request: Request) -> Response:
        ledger = get_context(request).ledger
        out = []
        for name in ledger.get("tournaments") or []:
            s = ledger.get(f"tournament:{name}") or {}
            v = s.get("verdict") or {}
            out.append({"name": name, "contestants": [c["name"] for c in s.get("contestants", [])],
                        "tags": [f"{name}-{c['name']}" for c in s.get("contestants", [])],
                        "turns": s.get("turns", 0), "out": s.get("out", {}), "finished": bool(v),
                        "winner": v.get("winner"), "lines": v.get("lines", []), "spend": v.get("spend", {})})
        return _json(out)

    @r.get("/api/ideas", response_model=list[IdeaOut], tags=["ideas"], summary="The idea queue")
    def api_ideas(request: Request, status: str = Query(f"{IdeaStatus.OPEN},{IdeaStatus.CLAIMED}", description="comma-separated; "
                                                                                     "'all' for every idea")):
        wanted = None if status == "all" else set(status.split(","))
        return [queries.idea_dict(i) for i in get_context(request).ledger.ideas(wanted)]

    @r.post("/api/ideas", response_model=IdeaOut, status_code=201, tags=["ideas"], summary="Queue an idea")
    def api_add_idea(request: Request, idea: IdeaIn):
        text = idea.text.strip()
        if not text:
            raise HTTPException(422, "an idea needs some text")
        return queries.idea_dict(get_context(request).ledger.add_idea(text, source=idea.source))

    @r.post("/api/ideas/{idea_id}/drop", response_model=IdeaOut, tags=["ideas"],
            summary="Drop an idea so no proposal claims it")
    def api_drop_idea(request: Request, idea_id: int):
        ledger = get_context(request).ledger
        try:
            ledger.finish_idea(idea_id, IdeaStatus.DROPPED)
        except KeyError:
            raise HTTPException(404, f"no idea #{idea_id}") from None
        return queries.idea_dict(ledger.idea(idea_id))

    # --- pages and their static files -------------------------------------------------------------
    def page(request: Request, kind: str, depth: int, **data: Any) -> HTMLResponse:
        ctx = get_context(request)
        # relative to the track's root, wherever the router is mounted
        base = request.url.path.rstrip("/") if depth == 0 else request.url.path.rsplit("/", depth)[0]
        return HTMLResponse(page_html(kind, base + "/", ctx.name, ctx.links, data))

    @r.get("/", include_in_schema=False)
    def track_page(request: Request) -> HTMLResponse:
        return page(request, "track", 0)

    @r.get("/experiments", include_in_schema=False)
    def experiments_page(request: Request) -> HTMLResponse:
        return page(request, "experiments", 1)

    @r.get("/experiments/{exp_id}", include_in_schema=False)
    def experiment_page(request: Request, exp_id: int) -> HTMLResponse:
        return page(request, "experiment", 2, id=exp_id)

    @r.get("/static/{name}", include_in_schema=False)
    async def static(name: str, v: str | None = None) -> Response:
        return static_response(name, v)

    return r
