"""The dashboard: a FastAPI app over a track's ledger (JSON API + pages), reusable by the hub."""

from __future__ import annotations

import threading
from contextlib import asynccontextmanager
from typing import Any

from overnight.storage.ledger import Ledger
from overnight.ui.dashboard.api import TrackContext, VersionCache, make_router, warm

__all__ = ["TrackContext", "create_app", "make_router"]


def create_app(ledger: Ledger, spec: Any, name: str | None = None, tag: str | None = None, warm_up: bool = True) -> Any:
    """One track's dashboard. `spec` is an overnight `Spec` (its track name, metric and direction are used).
    `warm_up` fills the answer cache in a thread at start, so the first page load is as fast as the next."""
    from fastapi import FastAPI

    ctx = TrackContext(ledger=ledger, name=name or spec.track.name, metric=spec.metric.name,
                       minimize=spec.minimize, tag=tag)
    # the built-in /docs pages load from a CDN; the schema itself is served at /openapi.json
    cache = VersionCache()

    @asynccontextmanager
    async def lifespan(_app: Any):  # noqa: ANN202
        # the first page load after a start is then a cache hit instead of a 10,000-row query
        if warm_up:
            threading.Thread(target=warm, args=(cache, ctx), name="dashboard-warm", daemon=True).start()
        yield

    app = FastAPI(title=f"overnight dashboard: {ctx.name}", version="1", docs_url=None, redoc_url=None,
                  lifespan=lifespan,
                  description="Read a track's ledger and manage its idea queue. The pages use this API.")
    app.include_router(make_router(lambda _request: ctx, cache))
    return app
