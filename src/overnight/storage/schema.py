"""The ledger's schema version: Alembic revisions in `migrations/`, applied when a ledger is opened.

The version lives in its own table (`overnight_ledger_version`), not `alembic_version`: the Optuna study
shares the file and keeps its own Alembic history there. A ledger from before versioning (no version
table, tables already there) is adopted by the first revision, which only creates what is missing.
"""

from __future__ import annotations

import threading
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

VERSION_TABLE = "overnight_ledger_version"
HEAD = "0002"  # the newest revision in migrations/versions; a test keeps the two in step
MIGRATIONS = Path(__file__).parent / "migrations"
# Alembic keeps the running migration's context in module globals: one upgrade per process at a time,
# taken before the database lock so two threads never wait on each other in opposite order
_ALEMBIC = threading.Lock()


class SchemaError(RuntimeError):
    """The ledger cannot be used by this code (written by a newer overnight, or not a ledger)."""


def current(conn: Connection) -> str | None:
    if not inspect(conn).has_table(VERSION_TABLE):
        return None
    return conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar()


def _check_known(revision: str | None, where: str) -> None:
    if revision is not None and revision != HEAD and revision not in known_revisions():
        raise SchemaError(f"{where}: the ledger is at schema revision {revision!r}, newer than this overnight "
                          f"knows (newest {HEAD!r}); upgrade overnight to open it")


def known_revisions() -> set[str]:
    return {p.stem.split("_", 1)[0] for p in (MIGRATIONS / "versions").glob("[0-9]*.py")}


def upgrade(engine: Engine, reader: Engine, where: str) -> None:
    """Bring the ledger to HEAD. Cheap when it is there already (one read through `reader`, no write
    lock); concurrent openers are safe: the upgrade runs in one write transaction of `engine` (SQLite
    BEGIN IMMEDIATE, a PostgreSQL advisory lock), and whoever gets it second finds the work done."""
    with reader.connect() as conn:
        revision = current(conn)
        conn.rollback()
    if revision == HEAD:
        return
    _check_known(revision, where)
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with _ALEMBIC, engine.begin() as conn:  # a SQLite engine of the ledger begins IMMEDIATE: the write lock
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:k))"), {"k": VERSION_TABLE})
        _check_known(current(conn), where)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
