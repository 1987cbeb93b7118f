"""The dashboard: a FastAPI app over a track's ledger (JSON API + pages), reusable by the hub."""

from __future__ import annotations

from typing import Any

from overnight.dashboard.api import TrackContext, make_router
from overnight.ledger import Ledger

__all__ = ["TrackContext", "create_app", "make_router"]


def create_app(ledger: Ledger, spec: Any, name: str | None = None, tag: str | None = None) -> Any:
    """One track's dashboard. `spec` is an overnight `Spec` (its track name, metric and direction are used)."""
    from fastapi import FastAPI

    ctx = TrackContext(ledger=ledger, name=name or spec.track.name, metric=spec.metric.name,
                       minimize=spec.minimize, tag=tag)
    # the built-in /docs pages load from a CDN; the schema itself is served at /openapi.json
    app = FastAPI(title=f"overnight dashboard: {ctx.name}", version="1", docs_url=None, redoc_url=None,
                  description="Read a track's ledger and manage its idea queue. The pages use this API.")
    app.include_router(make_router(lambda _request: ctx))
    return app
