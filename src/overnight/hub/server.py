"""Running the hub: `overnight hub serve` and an in-process server for tests."""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import uvicorn

from overnight.hub.app import create_app
from overnight.hub.service import Hub

ADMIN_ENV = "OVERNIGHT_HUB_ADMIN_TOKEN"


def default_db(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'hub.db'}"


def build(data_dir: Path, db: str | None = None, rate: float = 20.0, burst: float = 60.0,
          admin_token: str | None = None) -> tuple[Hub, object, str | None]:
    """(hub, ASGI app, newly generated admin token or None)."""
    hub = Hub(db or default_db(data_dir), data_dir)
    token = hub.start(admin_token or os.environ.get(ADMIN_ENV) or None)
    return hub, create_app(hub, rate=rate, burst=burst), token


def serve(data_dir: Path, db: str | None, host: str, port: int, rate: float, burst: float) -> None:
    _, app, token = build(data_dir, db, rate, burst)
    if token:  # plain print: a wrapped token cannot be copied
        print(f"admin token (shown once, also in {Path(data_dir) / 'admin.token'}): {token}")
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
