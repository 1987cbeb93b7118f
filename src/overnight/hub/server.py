"""Running the hub: `overnight hub serve [--workers N]`, an app factory for any ASGI server, and an
in-process server for tests.

Any ASGI server can load `overnight.hub.server:app_from_env` as a factory (`uvicorn --factory
--workers 4 overnight.hub.server:app_from_env`), configured by the OVERNIGHT_HUB_* variables below.
Every process is stateless over one database (PostgreSQL for more than one process; all of them must
share the --data folder, which holds the git chains).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import uvicorn

from overnight.hub.app import create_app
from overnight.hub.db import DatabaseError
from overnight.hub.service import LEASE_SECONDS, Hub

ADMIN_ENV = "OVERNIGHT_HUB_ADMIN_TOKEN"
DATA_ENV, DB_ENV, RATE_ENV, BURST_ENV, SHARE_ENV, LEASE_ENV = (
    "OVERNIGHT_HUB_DATA", "OVERNIGHT_HUB_DB", "OVERNIGHT_HUB_RATE", "OVERNIGHT_HUB_BURST", "OVERNIGHT_HUB_PROCESSES",
    "OVERNIGHT_HUB_LEASE_SECONDS")


def default_db(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'hub.db'}"


def build(data_dir: Path, db: str | None = None, rate: float = 20.0, burst: float = 60.0,
          admin_token: str | None = None, share: int = 1, lease_seconds: float = LEASE_SECONDS,
          generate: bool = True) -> tuple[Hub, object, str | None]:
    """(hub, ASGI app, newly generated admin token or None)."""
    hub = Hub(db or default_db(data_dir), data_dir, lease_seconds=lease_seconds)
    token = hub.start(admin_token or os.environ.get(ADMIN_ENV) or None, generate=generate)
    return hub, create_app(hub, rate=rate, burst=burst, share=share), token


def app_from_env():
    """The app factory for ASGI servers and for `hub serve --workers N` (each worker calls it)."""
    data = Path(os.environ.get(DATA_ENV, "hub-data"))
    _, app, _ = build(data, os.environ.get(DB_ENV) or None, float(os.environ.get(RATE_ENV, 20.0)),
                      float(os.environ.get(BURST_ENV, 60.0)), share=int(os.environ.get(SHARE_ENV, 1)),
                      lease_seconds=float(os.environ.get(LEASE_ENV, LEASE_SECONDS)), generate=False)
    return app


def serve(data_dir: Path, db: str | None, host: str, port: int, rate: float, burst: float, workers: int = 1,
          processes: int | None = None, lease_seconds: float = LEASE_SECONDS) -> None:
    """`processes`: how many hub processes share the rate limits in all (default: `workers`)."""
    url = db or default_db(data_dir)
    if workers > 1 and url.startswith("sqlite"):
        raise DatabaseError(f"--workers {workers} needs PostgreSQL: SQLite serves one hub process "
                            "(use --db postgresql+psycopg://user@host/db)")
    share = processes or workers
    hub, app, token = build(data_dir, db, rate, burst, share=share, lease_seconds=lease_seconds)
    if token:  # plain print: a wrapped token cannot be copied
        print(f"admin token (shown once, also in {Path(data_dir) / 'admin.token'}): {token}", flush=True)
    if workers <= 1:
        uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
        return
    hub.db.dispose()  # the workers open their own connections
    os.environ.update({DATA_ENV: str(Path(data_dir).resolve()), DB_ENV: url, RATE_ENV: str(rate),
                       BURST_ENV: str(burst), SHARE_ENV: str(share), LEASE_ENV: str(lease_seconds)})
    uvicorn.run("overnight.hub.server:app_from_env", factory=True, workers=workers, host=host, port=port,
                log_level="warning", access_log=False)


def free_port() -> int:
    return free_ports(1)[0]


def free_ports(n: int) -> list[int]:
    """n distinct free ports: every socket is held until all are bound (one at a time may repeat a port)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


class ThreadedServer:
    """A real uvicorn server on loopback in a thread (tests, benches)."""

    def __init__(self, app, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> ThreadedServer:
        self.thread.start()
        deadline = time.time() + 20
        while not self.server.started:
            if time.time() > deadline or not self.thread.is_alive():
                raise RuntimeError("the hub did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(10)
