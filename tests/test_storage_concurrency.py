"""Several processes opening one ledger at once (a loop, `ideas add`, the dashboard): the schema upgrade
runs once, nobody fails, nothing is lost."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pg import pg_server, pg_url  # noqa: F401 - the throwaway PostgreSQL fixtures
from test_storage import old_track, version_of

from overnight.storage import schema
from overnight.storage.ledger import sqlite_url

OPENER = """
import sys, time
from pathlib import Path
from overnight.storage.ledger import Ledger
url, me, sync = sys.argv[1], sys.argv[2], Path(sys.argv[3])
(sync / f"ready-{me}").touch()
while not (sync / "go").exists():
    time.sleep(0.001)
led = Ledger(url)
led.add_idea(f"from opener {me}", source=me)
led.close()
"""
OPENERS = 4


def open_all_at_once(url: str, sync: Path) -> list[subprocess.CompletedProcess]:
    """OPENERS processes, each imported and waiting, then released together to open `url` and write."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", OPENER, url, str(k), str(sync)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for k in range(OPENERS)]
    try:
        deadline = time.monotonic() + 60
        while len(list(sync.glob("ready-*"))) < OPENERS:
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "an opener died early"
            time.sleep(0.01)
        (sync / "go").touch()
        out = []
        for p in procs:  # racing upgrades without a lock can wait on each other for good: bounded
            stdout, stderr = p.communicate(timeout=max(1.0, deadline + 60 - time.monotonic()))
            out.append(subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr))
        return out
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("which", ["fresh", "from 183a807"])
def test_concurrent_openers_upgrade_once_and_lose_nothing(tmp_path: Path, which: str) -> None:
    if which == "fresh":
        db = tmp_path / "state" / "ledger.db"
        db.parent.mkdir()
        before = 0
    else:
        state = old_track(tmp_path / "old") / ".overnight"
        db = tmp_path / "state" / "ledger.db"
        shutil.copytree(state, db.parent)
        before = 2
    results = open_all_at_once(sqlite_url(db), db.parent)
    assert [r.returncode for r in results] == [0] * OPENERS, [r.stderr[-2000:] for r in results]
    assert version_of(db) == schema.HEAD
    con = sqlite3.connect(db)
    try:
        assert con.execute(f"SELECT count(*) FROM {schema.VERSION_TABLE}").fetchone()[0] == 1
        assert con.execute("SELECT count(*) FROM ideas").fetchone()[0] == before + OPENERS
        sources = sorted(s for (s,) in con.execute("SELECT source FROM ideas WHERE source != 'human'"))
        assert sources == [str(k) for k in range(OPENERS)]
        if before:
            assert con.execute("SELECT count(*) FROM experiments").fetchone()[0] == 4
    finally:
        con.close()


def test_a_new_file_raced_again_and_again(tmp_path: Path) -> None:
    """Switching a new file to WAL can fail at once with "database is locked" (SQLite skips the busy
    handler there); it failed about one round in fifteen on CI's two cores before openers took turns."""
    for k in range(4):
        db = tmp_path / f"round{k}" / "ledger.db"
        db.parent.mkdir()
        results = open_all_at_once(sqlite_url(db), db.parent)
        assert [r.returncode for r in results] == [0] * OPENERS, [r.stderr[-600:] for r in results]


def test_opening_an_upgraded_ledger_takes_no_write_lock(tmp_path: Path) -> None:
    """`overnight status` or the dashboard open the ledger while a loop is writing: they must not queue
    behind its write lock just to read the schema version."""
    import threading

    from overnight.storage.ledger import Ledger

    Ledger.for_track(tmp_path).close()
    writer = sqlite3.connect(tmp_path / "ledger.db", isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a loop in the middle of a write
    seen: list[int] = []

    def open_and_read() -> None:
        led = Ledger.for_track(tmp_path)
        seen.append(len(led.experiments()))
        led.close()

    t = threading.Thread(target=open_and_read, daemon=True)
    t.start()
    t.join(10)  # the busy timeout is 30 s: a reader that waits for the lock is still waiting here
    done_while_locked = not t.is_alive()
    writer.execute("ROLLBACK")
    writer.close()
    t.join(40)
    assert done_while_locked and seen == [0]


def test_concurrent_openers_of_a_postgres_ledger(pg_url: str, tmp_path: Path) -> None:  # noqa: F811
    from overnight.storage.ledger import Ledger

    results = open_all_at_once(pg_url, tmp_path)
    assert [r.returncode for r in results] == [0] * OPENERS, [r.stderr[-2000:] for r in results]
    led = Ledger(pg_url)
    assert sorted(i.source for i in led.ideas()) == [str(k) for k in range(OPENERS)]
    led.close()


def test_threads_opening_different_new_ledgers_at_once(tmp_path: Path) -> None:
    """A hub or a test opening several tracks' ledgers from threads: Alembic's globals are one per process."""
    import threading

    from overnight.storage.ledger import Ledger

    barrier, errors = threading.Barrier(OPENERS), []

    def opener(k: int) -> None:
        barrier.wait()
        try:
            Ledger.for_track(tmp_path / str(k)).close()
        except Exception as e:  # noqa: BLE001 - every opener's fate is asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=opener, args=(k,), daemon=True) for k in range(OPENERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == [] and not any(t.is_alive() for t in threads)
    assert [version_of(tmp_path / str(k) / "ledger.db") for k in range(OPENERS)] == [schema.HEAD] * OPENERS
