"""The hub's HTTP API (FastAPI; OpenAPI at /docs and /openapi.json)."""

import base64
import binascii
import math
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from pydantic import AfterValidator, BaseModel, Field

from overnight.hub.auth import RateLimiter
from overnight.hub.db import DriverError
from overnight.hub.judging import MAX_ABS_METRIC
from overnight.hub.service import Caller, Hub, HubError

MAX_BODY = 256 * 1024  # submissions, reports, registrations
MAX_ADMIN_BODY = 64 * 2**20  # track creation carries a git bundle


class BodyLimit:
    """Refuse oversized requests before they are read into memory (pure ASGI: no per-request task)."""

    def __init__(self, app, limit: int, admin_limit: int):
        self.app, self.limit, self.admin_limit = app, limit, admin_limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.admin_limit if scope["path"].startswith("/admin/") else self.limit
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and int(length) > limit:
            return await _too_large(send, limit)
        seen = 0

        async def counted():
            nonlocal seen
            msg = await receive()
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise HubError(413, f"request body over {limit} bytes")
            return msg

        return await self.app(scope, counted, send)


async def _too_large(send, limit: int) -> None:
    body = f'{{"detail":"request body over {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _no_nul(v: str) -> str:
    if "\0" in v:
        raise ValueError("contains a NUL character")
    return v


def _json_safe(v: Any, depth: int = 0) -> Any:
    """Plain JSON any database stores: finite numbers, strings without NUL, bounded nesting."""
    if depth > 4:
        raise ValueError("nested too deep")
    if isinstance(v, float) and not (math.isfinite(v) and abs(v) <= MAX_ABS_METRIC):
        raise ValueError(f"{v!r} is not a finite number of sane magnitude")
    if isinstance(v, str):
        _no_nul(v)
    if isinstance(v, dict):
        for k, x in v.items():
            _no_nul(k)
            _json_safe(x, depth + 1)
    if isinstance(v, list):
        for x in v:
            _json_safe(x, depth + 1)
    return v


Text = Annotated[str, AfterValidator(_no_nul)]
Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_ABS_METRIC, le=MAX_ABS_METRIC)]
Json = Annotated[dict[str, Any], AfterValidator(_json_safe)]


class Register(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", description="public contributor name")


class NewAccount(Register):
    role: Literal["verifier", "contributor", "admin"] = "verifier"


class NewTrack(BaseModel):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    spec: Text = Field(description="overnight.toml text", max_length=100_000)
    program: Text = Field(default="", description="program.md text", max_length=1_000_000)
    bundle: str = Field(description="base64 git bundle whose HEAD is the track's base commit")


class NewSubmission(BaseModel):
    parent: str = Field(pattern=r"^[0-9a-f]{40,64}$", description="the chain commit the patch applies to")
    patch: Text = Field(description="`git diff` output against the parent")
    description: Text = Field(default="", max_length=500)
    claimed_metric: Number = Field(description="the contributor's mean metric for the patch")
    claimed_head: Number | None = Field(default=None, description="the contributor's measurement of the parent")
    claimed_runs: list[Number] = Field(default_factory=list, max_length=100)
    platform: Json = Field(default_factory=dict, description="overnight.execution.fingerprint.fingerprint()")
    log_tail: Text = Field(default="", max_length=20_000)
    idempotency_key: Text = Field(min_length=8, max_length=100, description="same key = same submission")


class Claim(BaseModel):
    track: str | None = None


class Report(BaseModel):
    outcome: Literal["accept", "reject", "release"]
    reason: Text = ""
    false_claim: bool = Field(default=True, description="a reject that resets the contributor's trust")
    metric: Number | None = None
    head_metric: Number | None = None
    gain: Number | None = Field(default=None, description="verified improvement, positive = better")
    runs: list[Number] = Field(default_factory=list, max_length=1000)
    head_runs: list[Number] = Field(default_factory=list, max_length=1000)
    stats: dict[str, Number] = Field(default_factory=dict)
    platform: Json = Field(default_factory=dict)
    verifier_seconds: Number | None = None


def _one_line(e: RequestValidationError) -> str:
    """`body.claimed_metric: Input should be a finite number; ...`: the field named, on one line."""
    parts = []
    for err in e.errors()[:5]:
        where = ".".join(str(x) for x in err.get("loc", ()))
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def create_app(hub: Hub, rate: float = 20.0, burst: float = 60.0, register_rate: float = 5.0,
               share: int = 1) -> FastAPI:
    """The ASGI app over `hub`. Rate limits are per process: with `share` processes behind one address
    each enforces 1/share of `rate` and `burst`, so all of them together allow at most `rate`."""
    share = max(1, share)
    app = FastAPI(title="overnight hub", version="1",
                  description="Untrusted contributors submit patches with claimed gains; trusted verifiers re-run "
                              "them in a sandbox; verified ones form the chain. Tokens: `Authorization: Bearer`.")
    writes = RateLimiter(rate / share, max(1.0, burst / share))
    registrations = RateLimiter(register_rate / share, max(1.0, register_rate * 4 / share))

    @app.exception_handler(HubError)
    async def _hub_error(_req: Request, e: HubError) -> JSONResponse:
        return JSONResponse({"detail": str(e)}, status_code=e.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, e: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _one_line(e)}, status_code=422)

    @app.exception_handler(DriverError)
    async def _database(_req: Request, e: Exception) -> JSONResponse:
        why = hub.db.unavailable(e)
        if why is None:
            raise e  # a real bug: a 500 with its traceback in the log
        return JSONResponse({"detail": why}, status_code=503)  # the database is down: clients retry

    def caller(authorization: Annotated[str | None, Header(description="Bearer <token>")] = None) -> Caller:
        token = authorization[7:].strip() if authorization and authorization[:7].lower() == "bearer " else None
        c = hub.caller(token)
        if not writes.allow(str(c.id)):
            raise HubError(429, "rate limit: slow down")
        return c

    def admin(c: Annotated[Caller, Depends(caller)]) -> Caller:
        if c.role != "admin":
            raise HubError(403, "this needs the admin token")
        return c

    Auth = Annotated[Caller, Depends(caller)]
    Admin = Annotated[Caller, Depends(admin)]

    @app.get("/healthz", summary="liveness: the process answers (no database query)")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", summary="readiness: the database answers a query (503 when it does not)")
    def readyz() -> JSONResponse:
        why = hub.ready()
        return JSONResponse({"status": "ready"} if why is None else {"status": "unavailable", "detail": why},
                            status_code=200 if why is None else 503)

    @app.post("/register", status_code=201, summary="register a contributor; the token is shown once")
    def register(body: Register, request: Request) -> dict[str, Any]:
        if not registrations.allow(request.client.host if request.client else "?"):
            raise HubError(429, "too many registrations from this address")
        return hub.create_account(body.name, "contributor")

    @app.post("/admin/accounts", status_code=201, summary="create a verifier (or other) token")
    def new_account(body: NewAccount, _: Admin) -> dict[str, Any]:
        return hub.create_account(body.name, body.role)

    @app.post("/admin/accounts/{name}/rotate", summary="a new token for an account; the old one stops within seconds")
    def rotate(name: str, _: Admin) -> dict[str, Any]:
        return hub.accounts.rotate(name)

    @app.post("/admin/accounts/{name}/revoke", summary="revoke an account's token on every hub process")
    def revoke(name: str, _: Admin) -> dict[str, Any]:
        return hub.accounts.revoke(name)

    @app.post("/admin/tracks", status_code=201, summary="host a track: spec, program and a git bundle")
    def new_track(body: NewTrack, _: Admin) -> dict[str, Any]:
        try:
            bundle = base64.b64decode(body.bundle, validate=True)
        except (binascii.Error, ValueError):
            raise HubError(422, "bundle is not base64") from None
        return hub.create_track(body.name, body.spec, body.program, bundle)

    @app.get("/me", summary="your account: role, streak, trust")
    def me(c: Auth) -> dict[str, Any]:
        return hub.account(c)

    @app.get("/tracks", summary="hosted tracks")
    def tracks() -> list[dict[str, Any]]:
        return hub.tracks()

    @app.get("/tracks/{name}", summary="a track's spec, program and chain head")
    def track(name: str) -> dict[str, Any]:
        return hub.track_info(name)

    @app.get("/tracks/{name}/bundle", summary="the chain head as a git bundle (any token)",
             response_class=FileResponse)
    def bundle(name: str, _: Auth) -> FileResponse:
        return FileResponse(hub.bundle(name), media_type="application/octet-stream")

    @app.post("/tracks/{name}/submissions", status_code=201,
              summary="submit a patch with its claimed metric (same idempotency key = same submission)")
    def submit(name: str, body: NewSubmission, c: Auth) -> JSONResponse:
        status, out = hub.submit(c, name, body.model_dump())
        return JSONResponse(out, status_code=status)

    @app.get("/submissions", summary="your submissions with their status and reasons")
    def mine(c: Auth) -> list[dict[str, Any]]:
        return hub.my_submissions(c)

    @app.get("/submissions/{sub_id}", summary="one submission (yours, or any for verifiers)")
    def submission(sub_id: int, c: Auth) -> dict[str, Any]:
        return hub.submission(c, sub_id)

    @app.post("/verify/claim", summary="lease the next pending submission: trust first, then oldest (verifiers)",
              responses={204: {"description": "nothing to verify"}})
    def claim(body: Claim, c: Auth) -> Response:
        out = hub.claim(c, body.track)
        return Response(status_code=204) if out is None else JSONResponse(out)

    @app.post("/verify/{sub_id}/heartbeat", summary="extend your lease on a submission (verifiers)")
    def heartbeat(sub_id: int, c: Auth) -> dict[str, Any]:
        return hub.heartbeat(c, sub_id)

    @app.post("/verify/{sub_id}/report", summary="report a verification outcome (verifiers)")
    def report(sub_id: int, body: Report, c: Auth) -> dict[str, Any]:
        return hub.report(c, sub_id, body.model_dump())

    @app.get("/tracks/{name}/chain", summary="verified commits, oldest first, with runs and verifier")
    def chain(name: str) -> list[dict[str, Any]]:
        return hub.chain(name)

    @app.get("/tracks/{name}/chain/{seq}/diff", summary="the patch of a chain entry",
             response_class=PlainTextResponse)
    def chain_diff(name: str, seq: int) -> PlainTextResponse:
        return PlainTextResponse(hub.chain_diff(name, seq), media_type="text/x-diff")

    @app.get("/tracks/{name}/leaderboard", summary="contributors ranked by verified improvement")
    def leaderboard(name: str, tier: Annotated[str | None, Query(description="platform tier")] = None
                          ) -> Response:
        return Response(hub.leaderboard(name, tier), media_type="application/json")

    from overnight.ui.dashboard.hub_pages import make_hub_router  # the pages: index, leaderboard and chain

    app.include_router(make_hub_router(hub))
    app.add_middleware(BodyLimit, limit=MAX_BODY, admin_limit=MAX_ADMIN_BODY)
    return app
