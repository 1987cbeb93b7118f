"""The hub's track, admin and submission-lookup rows (the SQL behind `service.Hub`)."""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from overnight.hub.auth import hash_token
from overnight.hub.db import Database
from overnight.hub.errors import HubError
from overnight.hub.models import Account, ChainEntry, HubTrack, Submission


class Conflict(Exception):
    """A row that breaks a unique constraint (a replayed submission, a taken name)."""


def ensure_admin(db: Database, admin_token: str | None, new_token: str | None) -> bool:
    """Make sure an admin exists: with `admin_token`'s hash when given, else `new_token`'s when there is
    none yet. True when `new_token` was stored."""
    with db.writing(), db.session() as s, s.begin():
        admin = s.scalar(select(Account).where(Account.role == "admin"))
        if admin_token:
            if admin is None:
                s.add(Account(name="admin", role="admin", token_hash=hash_token(admin_token)))
            elif admin.token_hash != hash_token(admin_token):
                admin.token_hash, admin.token_changed_at = hash_token(admin_token), time.time()
            return False
        if admin is None and new_token:
            s.add(Account(name="admin", role="admin", token_hash=hash_token(new_token)))
            return True
    return False


def heads(db: Database) -> list[tuple[str, str]]:
    """(track name, head) for every track, as the database has them."""
    with db.session() as s:
        return [(n, h) for n, h in s.execute(select(HubTrack.name, HubTrack.head))]


def insert_track(db: Database, name: str, spec_text: str, program: str, head: str) -> None:
    try:
        with db.writing(), db.session() as s, s.begin():
            t = HubTrack(name=name, spec=spec_text, program=program, head=head)
            s.add(t)
            s.flush()
            s.add(ChainEntry(track_id=t.id, seq=0, commit=head, parent=None))
    except IntegrityError:
        raise HubError(409, f"track {name!r} exists") from None


def track_row(db: Database, name: str) -> dict[str, Any] | None:
    with db.session() as s:
        row = s.scalar(select(HubTrack).where(HubTrack.name == name))
        return None if row is None else {"id": row.id, "spec": row.spec, "program": row.program, "head": row.head}


def head(db: Database, track_id: int) -> str:
    with db.session() as s:
        return s.scalar(select(HubTrack.head).where(HubTrack.id == track_id))


def by_key(db: Database, contributor: int, key: str) -> Submission | None:
    with db.session() as s:
        return s.scalar(select(Submission).where(Submission.contributor_id == contributor, Submission.idem_key == key))


def same_patch(db: Database, track_id: int, parent: str, sha: str) -> int | None:
    with db.session() as s:
        return s.scalar(select(Submission.id).where(Submission.track_id == track_id, Submission.parent == parent,
                                                    Submission.patch_sha == sha))


def set_streak(db: Database, account_id: int, streak: int) -> None:
    """Benches and operators: put an account's streak at a value."""
    with db.writing(), db.session() as s, s.begin():
        s.execute(update(Account).where(Account.id == account_id).values(streak=streak))


def statuses(db: Database) -> list[str]:
    """Every submission's status (benches count them)."""
    with db.session() as s:
        return list(s.scalars(select(Submission.status)))
