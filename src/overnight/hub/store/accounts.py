"""Accounts and tokens: who is calling, with a per-process cache that revocation and rotation on any
process invalidate within `ttl` seconds (one cheap query per `ttl` per process)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from overnight.hub import reputation
from overnight.hub.auth import hash_token, new_token
from overnight.hub.db import Database
from overnight.hub.errors import HubError
from overnight.hub.models import Account

CALLER_TTL = 2.0  # seconds a revoked or rotated token may still pass on another process
CLOCK_SLACK = 30.0  # processes on other machines may disagree on the time by this much


@dataclass(frozen=True)
class Caller:
    id: int
    name: str
    role: str


class Accounts:
    def __init__(self, db: Database, ttl: float = CALLER_TTL):
        self.db, self.ttl = db, ttl
        self._cache: dict[str, Caller] = {}  # token hash -> caller
        self._checked = time.time()  # token changes before this are reflected in the cache
        self._lock = threading.Lock()

    def caller(self, token: str | None) -> Caller:
        if not token:
            raise HubError(401, "this request needs a token: send `Authorization: Bearer <token>`")
        self._refresh()
        h = hash_token(token)
        c = self._cache.get(h)
        if c is None:
            with self.db.session() as s:
                acc = s.scalar(select(Account).where(Account.token_hash == h))
            if acc is None or acc.revoked:
                raise HubError(401, "unknown or revoked token")
            c = Caller(acc.id, acc.name, acc.role)
            if len(self._cache) > 500_000:  # bounded memory: start over rather than grow
                self._cache.clear()
            self._cache[h] = c
        return c

    def _refresh(self) -> None:
        """Drop cached tokens of accounts revoked or rotated since the last look (on any process)."""
        now = time.time()
        if now - self._checked < self.ttl:
            return
        with self._lock:
            if now - self._checked < self.ttl:
                return
            with self.db.session() as s:
                changed = set(s.scalars(select(Account.id).where(
                    Account.token_changed_at >= self._checked - CLOCK_SLACK)))
            if changed:
                self._cache = {h: c for h, c in self._cache.items() if c.id not in changed}
            self._checked = now

    def create(self, name: str, role: str) -> dict[str, Any]:
        token = new_token()
        try:
            with self.db.writing(), self.db.session() as s, s.begin():
                acc = Account(name=name, role=role, token_hash=hash_token(token))
                s.add(acc)
                s.flush()
                acc_id = acc.id
        except IntegrityError:
            raise HubError(409, f"the name {name!r} is taken") from None
        return {"id": acc_id, "name": name, "role": role, "token": token,
                "note": "the token is shown once; the hub stores only its hash"}

    def rotate(self, name: str) -> dict[str, Any]:
        """A new token for `name`; the old one stops working on every process within `ttl` seconds."""
        token = new_token()
        if not self._change(name, token_hash=hash_token(token), revoked=False):
            raise HubError(404, f"no account {name!r}")
        return {"name": name, "token": token, "note": "the old token stops working within "
                f"{self.ttl:g} s on every hub process; the new one is shown once"}

    def revoke(self, name: str) -> dict[str, Any]:
        if not self._change(name, revoked=True):
            raise HubError(404, f"no account {name!r}")
        return {"name": name, "revoked": True, "note": f"refused on every hub process within {self.ttl:g} s"}

    def _change(self, name: str, **values: Any) -> bool:
        with self.db.writing(), self.db.session() as s, s.begin():
            n = s.execute(update(Account).where(Account.name == name)
                          .values(token_changed_at=time.time(), **values)).rowcount
        self._cache = {h: c for h, c in self._cache.items() if c.name != name}  # this process: at once
        return n > 0

    def info(self, caller: Caller) -> dict[str, Any]:
        with self.db.session() as s:
            a = s.get(Account, caller.id)
            return {"id": a.id, "name": a.name, "role": a.role, "streak": a.streak, "verified": a.verified,
                    "false_claims": a.false_claims, "trust": reputation.trust(a.streak),
                    "trusted": reputation.trusted(a.streak)}
