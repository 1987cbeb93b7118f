"""The hub's logic, independent of HTTP: start-up, tracks and submissions. Its SQL lives in `store/`:
verification (leases, reports, the chain append) in `store/queue.py`, public reads in `store/__init__.py`,
accounts and tokens in `store/accounts.py`, track rows in `store/rows.py`, the group writer in `store/writer.py`.

Stateless across processes: every decision reads the chain head from the database; a process caches only
what never changes (a track's spec) and tokens (invalidated within seconds, see `store/accounts.py`).
"""

from __future__ import annotations

import hashlib
import os
import threading
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from overnight.core.spec import Spec
from overnight.hub import gitstore, reputation, store
from overnight.hub.auth import new_token
from overnight.hub.db import Database, DatabaseError
from overnight.hub.door import MAX_PATCH_BYTES, DoorError, check_patch
from overnight.hub.errors import HubError
from overnight.hub.models import Submission, SubStatus
from overnight.hub.store import queue, rows
from overnight.hub.store.accounts import CALLER_TTL, Accounts, Caller
from overnight.hub.store.writer import GroupWriter

__all__ = ["Caller", "Hub", "HubError", "TrackView"]

LEASE_SECONDS = 300.0  # a verifier heartbeats well within this; a dead one's work is back in the queue after it
LOG_TAIL_CHARS = 8000


@dataclass(frozen=True)
class TrackView:
    id: int
    name: str
    spec: Spec
    spec_text: str
    program: str
    head: str  # read from the database for this view: never cached across requests


class Hub:
    def __init__(self, db_url: str, data_dir: Path, max_patch_bytes: int = MAX_PATCH_BYTES,
                 lease_seconds: float = LEASE_SECONDS, caller_ttl: float = CALLER_TTL):
        self.db = Database(db_url)
        self.data_dir = Path(data_dir).resolve()
        self.max_patch_bytes = max_patch_bytes
        self.lease_seconds = lease_seconds
        self.accounts = Accounts(self.db, caller_ttl)
        self._specs: dict[str, tuple[int, Spec, str, str]] = {}  # immutable per track: id, spec, text, program
        self.writer = GroupWriter(self.db)
        self.chain_lock = threading.Lock()  # SQLite only has one process: its chain appends meet here

    # --- startup ----------------------------------------------------------------------------------
    def start(self, admin_token: str | None = None, generate: bool = True) -> str | None:
        """Migrate, make sure an admin exists and the git chains match the database (all under the startup
        lock, so N processes may start at once); returns a newly generated admin token (to print once)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        token = new_token() if generate else None
        with self.db.startup_lock():
            self.db.migrate()
            stored = rows.ensure_admin(self.db, admin_token, token)
            self._repair()
        if not stored or token is None:
            return None
        fd = os.open(self.data_dir / "admin.token", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    def _repair(self) -> None:
        """The database decides the head; a git ref left ahead or behind by a kill is put back."""
        for name, head in rows.heads(self.db):
            repo = self.repo_dir(name)
            if not repo.exists():
                raise DatabaseError(f"track {name!r}: its git repository {repo} is missing (every hub process "
                                    "must share the --data folder)")
            if not gitstore.has_commit(repo, head):
                raise DatabaseError(f"track {name!r}: the database's head {head[:12]} is not in {repo}")
            if gitstore.head(repo) != head:
                gitstore.set_chain(repo, head)

    def ready(self) -> str | None:
        """None when the database answers a query, else why not."""
        return self.db.ping()

    # --- accounts ---------------------------------------------------------------------------------
    def caller(self, token: str | None) -> Caller:
        return self.accounts.caller(token)

    def create_account(self, name: str, role: str) -> dict[str, Any]:
        return self.accounts.create(name, role)

    def account(self, caller: Caller) -> dict[str, Any]:
        return self.accounts.info(caller)

    # --- tracks -----------------------------------------------------------------------------------
    def create_track(self, name: str, spec_text: str, program: str, bundle: bytes) -> dict[str, Any]:
        try:
            spec = Spec.model_validate(tomllib.loads(spec_text))
        except (tomllib.TOMLDecodeError, ValidationError) as e:
            raise HubError(422, f"invalid overnight.toml: {e}") from None
        if spec.track.name != name:
            raise HubError(422, f"the spec's [track] name is {spec.track.name!r}, not {name!r}")
        if spec.evaluate is None:  # without a sealed evaluator the chain would hold self-reported metrics
            raise HubError(422, "a hosted track needs an [evaluate] command: verifiers grade with the track's "
                                "frozen evaluator, never with the metric a contributor's code prints")
        repo = self.repo_dir(name)
        if repo.exists():
            raise HubError(409, f"track {name!r} exists")
        try:
            head = gitstore.init_from_bundle(repo, bundle)
        except gitstore.GitStoreError as e:
            raise HubError(422, f"bad bundle: {e}") from None
        rows.insert_track(self.db, name, spec_text, program, head)
        return {"name": name, "head": head}

    def repo_dir(self, name: str) -> Path:
        return self.data_dir / "repos" / f"{name}.git"

    def track(self, name: str) -> TrackView:
        """The track with its head as the database has it now."""
        fixed = self._specs.get(name)
        if fixed is None:
            row = rows.track_row(self.db, name)
            if row is None:
                raise HubError(404, f"no track {name!r}")
            fixed = self._specs[name] = (row["id"], Spec.model_validate(tomllib.loads(row["spec"])), row["spec"],
                                         row["program"])
            head = row["head"]
        else:
            head = rows.head(self.db, fixed[0])
        return TrackView(fixed[0], name, fixed[1], fixed[2], fixed[3], head)

    def tracks(self) -> list[dict[str, Any]]:
        return store.tracks(self.db)

    def track_info(self, name: str) -> dict[str, Any]:
        t = self.track(name)
        last = store.last_entry(self.db, t.id)
        return {"name": t.name, "spec": t.spec_text, "program": t.program, "head": last["commit"],
                "seq": last["seq"], "head_metric": last["metric"], "metric": t.spec.metric.name,
                "direction": t.spec.metric.direction, "editable": t.spec.track.editable}

    def bundle(self, name: str) -> Path:
        t = self.track(name)
        return gitstore.bundle_path(self.repo_dir(name), t.head)

    # --- submissions ------------------------------------------------------------------------------
    def submit(self, caller: Caller, name: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """(HTTP status, submission): 201 new, 200 the same request replayed (idempotency key)."""
        if caller.role != "contributor":
            raise HubError(403, "only contributor tokens submit")
        t = self.track(name)
        patch: str = body["patch"]
        try:
            check_patch(patch, t.spec.track.editable, self.max_patch_bytes)
        except DoorError as e:
            raise HubError(413 if "limit" in e.reason else 422, f"rejected at the door: {e.reason}") from None
        sha = hashlib.sha256(patch.encode()).hexdigest()
        key = body["idempotency_key"]
        if body["parent"] != t.head:
            old = self._by_key(caller, key)  # a retry of a request acknowledged before the head moved
            if old is not None:
                return self._replay(old, sha)
            raise HubError(409, f"stale: the parent {body['parent'][:12]} is not the chain head {t.head[:12]}; "
                                "fetch the head and rebase")
        claimed, head = float(body["claimed_metric"]), body.get("claimed_head")
        gain = 0.0 if head is None else (head - claimed if t.spec.minimize else claimed - head)
        platform = body.get("platform") or {}
        row = dict(track_id=t.id, contributor_id=caller.id, idem_key=key, parent=body["parent"], patch=patch,
                   patch_sha=sha, description=body.get("description", "")[:500], claimed_metric=claimed,
                   claimed_head=head, claimed_gain=gain, claimed_runs=list(body.get("claimed_runs") or [])[:100],
                   platform=platform, tier=reputation.tier(platform),
                   log_tail=(body.get("log_tail") or "")[-LOG_TAIL_CHARS:], status=SubStatus.PENDING, reason="")
        try:
            sub_id = self.writer.insert(row)
        except rows.Conflict:
            old = self._by_key(caller, key)
            if old is not None:  # a concurrent retry of the same request won the race
                return self._replay(old, sha)
            dup = rows.same_patch(self.db, t.id, body["parent"], sha)
            raise HubError(409, f"replayed: the same patch on the same parent is submission #{dup}") from None
        return 201, {"id": sub_id, "status": SubStatus.PENDING, "reason": "", "parent": row["parent"],
                     "description": row["description"], "claimed_metric": claimed, "claimed_head": head,
                     "claimed_gain": gain, "verified_metric": None, "tier": row["tier"]}

    def _by_key(self, caller: Caller, key: str) -> Submission | None:
        return rows.by_key(self.db, caller.id, key)

    def _replay(self, old: Submission, sha: str) -> tuple[int, dict[str, Any]]:
        if old.patch_sha != sha:
            raise HubError(409, "this idempotency key was used for a different patch")
        return 200, store.sub_dict(old, full=False)

    def submission(self, caller: Caller, sub_id: int) -> dict[str, Any]:
        return store.submission(self.db, sub_id, None if caller.role != "contributor" else caller.id)

    def my_submissions(self, caller: Caller) -> list[dict[str, Any]]:
        return store.submissions_of(self.db, caller.id)

    # --- verification (store/queue.py) ----------------------------------------------------------
    def claim(self, caller: Caller, track: str | None = None) -> dict[str, Any] | None:
        return queue.claim(self, caller, track)

    def heartbeat(self, caller: Caller, sub_id: int) -> dict[str, Any]:
        return queue.heartbeat(self, caller, sub_id)

    def report(self, caller: Caller, sub_id: int, body: dict[str, Any]) -> dict[str, Any]:
        return queue.report(self, caller, sub_id, body)

    # --- public reads (store/__init__.py) ---------------------------------------------------------------
    def chain(self, name: str) -> list[dict[str, Any]]:
        return store.chain(self.db, self.track(name).id, name)

    def chain_diff(self, name: str, seq: int) -> str:
        patch = store.chain_diff(self.db, self.track(name).id, seq)
        if patch is None:
            raise HubError(404, f"no diff for chain entry {seq} of {name!r}")
        return patch

    def leaderboard(self, name: str, tier: str | None = None) -> bytes:
        fixed = self._specs.get(name)  # id and spec never change: no head read needed here
        if fixed is None:
            t = self.track(name)
            fixed = (t.id, t.spec, t.spec_text, t.program)
        return store.leaderboard(self.db, fixed[0], name, fixed[1].metric.name, tier)
