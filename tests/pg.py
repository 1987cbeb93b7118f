"""A throwaway PostgreSQL server on loopback, from Debian's binaries; skips when they are missing.

Import the fixtures into a test module: `from pg import pg_server, pg_url  # noqa: F401`.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb refuses root: run as Debian's `postgres` user when we are root."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser") is None:
        pytest.skip("running as root without `runuser`: cannot start PostgreSQL as an unprivileged user")
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """Base URL `postgresql+psycopg://postgres@127.0.0.1:PORT` of a fresh server (trust auth, loopback only)."""
    bindir = _bindir()
    if bindir is None:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): apt-get install postgresql")
    pytest.importorskip("psycopg", reason="psycopg not installed (pip install 'overnight[hub]')")
    root = Path(tempfile.mkdtemp(prefix="overnight-pg-"))
    os.chmod(root, 0o755)
    data = root / "data"
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    port = _free_port()
    try:
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
                                     "-E", "UTF8", "--no-sync"]), check=True, capture_output=True)
        opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=on -c max_connections=200"
        subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l",
                                     str(root / "log"), "-w", "-t", "60", "start"]), check=True, capture_output=True)
    except subprocess.CalledProcessError as e:
        shutil.rmtree(root, ignore_errors=True)
        pytest.fail(f"could not start PostgreSQL: {e.stderr.decode(errors='replace')}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}"
    finally:
        pid_file = data / "postmaster.pid"
        pid = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        stopped = subprocess.run(_as_postgres([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                               "stop"]), capture_output=True, timeout=60).returncode == 0
        if pid is not None and not stopped:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGQUIT)  # pg_ctl failed: never leave a server behind
        shutil.rmtree(root, ignore_errors=True)


def create_database(server: str) -> str:
    """A new empty database on `server`; returns its SQLAlchemy URL."""
    import psycopg

    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    return f"{server}/{name}"


def sql(url: str, statement: str, *params: object) -> list[tuple]:
    """Run one statement on the database at `url` (a test's direct look or change); returns its rows."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        cur = c.execute(statement, params or None)
        return cur.fetchall() if cur.description else []


def drop_database(url: str) -> None:
    """Drop the database at `url` while clients are connected (what an outage looks like to them)."""
    import psycopg

    server, name = url.rsplit("/", 1)
    with psycopg.connect(server.replace("postgresql+psycopg", "postgresql") + "/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def pg_url(pg_server: str) -> str:
    """A new empty database on the session's server, for one test."""
    return create_database(pg_server)
