"""The hub's database: engine setup (SQLite WAL + synchronous=FULL, or PostgreSQL), migrations under a
lock, the one-process rule for SQLite, and the per-track row lock that serialises chain appends."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

DriverError = DBAPIError  # what a failed database call raises (the app maps "unreachable" ones to 503)
VERSION_TABLE = "overnight_hub_version"  # not alembic_version: the hub may share a database
MIGRATIONS = Path(__file__).parent / "migrations"
STARTUP_LOCK = 0x6F76686E  # pg_advisory_lock key: 'ovhn'; migrations and the admin insert run one process at a time


class DatabaseError(Exception):
    """The database cannot be used (unreachable, locked by another process); the message is for the user."""


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=8, max_overflow=16)

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn, _record) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")  # an acknowledged submission survives kill -9 and power loss
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent; run at every start, under the startup lock)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


class Database:
    """Sessions plus a write lock for SQLite (one writer at a time beats busy-retry storms)."""

    def __init__(self, url: str):
        self.url = url
        self.sqlite = url.startswith("sqlite")
        self.engine = make_engine(url)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._write_lock = threading.Lock() if self.sqlite else None
        self._owner_fd: int | None = None
        self.boards: dict[tuple, tuple[int, bytes]] = {}  # leaderboard copies by (track, tier): (version, JSON)

    @property
    def postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    def claim_sqlite(self) -> None:
        """SQLite serves one hub process: hold an exclusive lock beside the file for this process's life."""
        if not self.sqlite or self._owner_fd is not None:
            return
        path = self.engine.url.database
        if not path or path == ":memory:":
            return
        lock = Path(path + ".lock")
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise DatabaseError(f"another hub process (pid {other}) serves the SQLite database {path}; SQLite "
                                "serves one hub process: use --db postgresql+psycopg://... for more") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._owner_fd = fd

    @contextmanager
    def startup_lock(self) -> Iterator[None]:
        """Held while migrating and creating the admin: N processes may start at once on one database."""
        if not self.postgres:
            self.claim_sqlite()
            yield
            return
        with self.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": STARTUP_LOCK})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": STARTUP_LOCK})
                conn.commit()

    def migrate(self) -> None:
        migrate(self.engine)

    def ping(self) -> str | None:
        """None when a query answers, else the reason (for the readiness endpoint)."""
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1 FROM hub_tracks LIMIT 1"))
        except DBAPIError as e:
            return f"database unavailable: {type(e.orig).__name__ if e.orig else type(e).__name__}"
        except Exception as e:  # noqa: BLE001 - readiness reports any failure as a reason, never raises
            return f"database unavailable: {type(e).__name__}"
        return None

    @staticmethod
    def unavailable(e: BaseException) -> str | None:
        """A one-line reason when `e` means the database cannot be reached, else None."""
        if isinstance(e, DBAPIError) and (e.connection_invalidated or isinstance(e, OperationalError)):
            return f"database unavailable ({type(e.orig).__name__ if e.orig else type(e).__name__}); retry later"
        return None

    def session(self) -> Session:
        return self.sessions()

    def writing(self) -> AbstractContextManager:
        return self._write_lock if self._write_lock is not None else nullcontext()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._owner_fd is not None:
            os.close(self._owner_fd)
            self._owner_fd = None
