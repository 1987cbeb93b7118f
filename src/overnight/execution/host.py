"""Failures of the host rather than of a run or of overnight: a full disk, a ledger locked by
another process. They end `overnight run` with one clear line; SQLite keeps the ledger intact
(every write is a transaction), so the next `overnight run` resumes where this one stopped.
"""

from __future__ import annotations

import errno
import sqlite3

FULL = ("database or disk is full", "no space left on device", "disk quota exceeded")
LOCKED = ("database is locked", "database table is locked")


def _chain(exc: BaseException) -> list[BaseException]:
    out: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is seen for seen in out):
            continue
        out.append(e)
        todo += [e.__cause__, e.__context__, getattr(e, "orig", None)]  # `orig`: the driver's error under SQLAlchemy
    return out


def host_failure(exc: BaseException) -> str | None:
    """A one-line explanation when `exc` (or what caused it) is a full disk or a locked ledger, else None."""
    for e in _chain(exc):
        text = str(e).lower()
        if (isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT)) or any(f in text for f in FULL):
            return ("the disk is full (no space left for the ledger, logs or artifacts); nothing recorded was "
                    "lost: free some space, then `overnight run` again resumes")
        is_sqlite = isinstance(e, sqlite3.OperationalError) or "sqlite3.operationalerror" in text
        if is_sqlite and any(m in text for m in LOCKED):
            return ("the ledger is locked by another process (database is locked); nothing recorded was lost: "
                        "stop that process or wait, then `overnight run` again resumes")
    return None


def explain(exc: BaseException) -> str:
    """`host_failure(exc)`, or `exc` raised again when it is something else (a bug is not hidden)."""
    why = host_failure(exc)
    if why is None:
        raise exc
    return why
