"""Group commit: concurrent submissions share one transaction (one fsync), each acknowledged only
after the commit that holds it; a conflicting row is retried alone so it fails alone."""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from overnight.hub import reputation
from overnight.hub.db import Database
from overnight.hub.models import Account, Submission

MAX_BATCH = 256


class GroupWriter:
    def __init__(self, db: Database):
        self.db = db
        self.q: queue.Queue[tuple[dict[str, Any], Future]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()

    def insert(self, row: dict[str, Any], timeout: float = 60.0) -> int:
        """Insert one submission row; returns its id once committed (raises rows.Conflict on a duplicate)."""
        if self._thread is None:
            with self._start_lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._loop, name="hub-writer", daemon=True)
                    self._thread.start()
        fut: Future = Future()
        self.q.put((row, fut))
        return fut.result(timeout)

    def _loop(self) -> None:
        while True:
            items = [self.q.get()]
            while len(items) < MAX_BATCH:
                try:
                    items.append(self.q.get_nowait())
                except queue.Empty:
                    break
            self._commit(items)

    def _commit(self, items: list[tuple[dict[str, Any], Future]]) -> None:
        try:
            ids = []
            with self.db.writing(), self.db.engine.begin() as conn:
                who = {row["contributor_id"] for row, _ in items}
                streaks = dict(conn.execute(select(Account.id, Account.streak).where(Account.id.in_(who))).all())
                for row, _ in items:
                    values = {**row, "priority": reputation.priority(streaks.get(row["contributor_id"], 0))}
                    ids.append(conn.execute(insert(Submission).values(**values)).inserted_primary_key[0])
        except Exception as e:
            if len(items) == 1:
                from overnight.hub.store.rows import Conflict

                items[0][1].set_exception(Conflict(str(e)) if isinstance(e, IntegrityError) else e)
            else:  # one bad row must not fail its neighbours: retry each alone
                for item in items:
                    self._commit([item])
            return
        for (_, fut), sub_id in zip(items, ids, strict=True):
            fut.set_result(sub_id)
