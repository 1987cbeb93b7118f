"""The hub's logic, independent of HTTP: accounts, tracks, submissions, verification, chain, leaderboard."""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from overnight.core.spec import Spec
from overnight.hub import gitstore, reputation
from overnight.hub.auth import hash_token, new_token
from overnight.hub.db import Database
from overnight.hub.door import MAX_PATCH_BYTES, DoorError, check_patch
from overnight.hub.models import Account, ChainEntry, HubTrack, Submission
from overnight.hub.writer import GroupWriter

LEASE_SECONDS = 3600.0
LOG_TAIL_CHARS = 8000


class HubError(Exception):
    """A refused request: `status` is the HTTP status, the message is shown to the caller as is."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Caller:
    id: int
    name: str
    role: str


@dataclass(frozen=True)
class TrackView:
    id: int
    name: str
    spec: Spec
    spec_text: str
    program: str
    head: str


class Hub:
    def __init__(self, db_url: str, data_dir: Path, max_patch_bytes: int = MAX_PATCH_BYTES):
        self.db = Database(db_url)
        self.data_dir = Path(data_dir).resolve()
        self.max_patch_bytes = max_patch_bytes
        self._callers: dict[str, Caller] = {}  # token hash -> caller; tokens are never revoked in this version
        self._tracks: dict[str, TrackView] = {}
        self._boards: dict[tuple[str, str | None], bytes] = {}
        self.writer = GroupWriter(self.db)
        self._chain_lock = threading.Lock()  # one accept at a time moves a chain (single hub process)

    # --- startup ----------------------------------------------------------------------------------
    def start(self, admin_token: str | None = None) -> str | None:
        """Migrate and make sure an admin exists; returns a newly generated admin token (to print once)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.db.migrate()
        with self.db.writing(), self.db.session() as s, s.begin():
            admin = s.scalar(select(Account).where(Account.role == "admin"))
            if admin_token:
                if admin is None:
                    s.add(Account(name="admin", role="admin", token_hash=hash_token(admin_token)))
                else:
                    admin.token_hash = hash_token(admin_token)
            elif admin is None:
                token = new_token()
                s.add(Account(name="admin", role="admin", token_hash=hash_token(token)))
        self._warm()
        if admin_token or admin is not None:
            return None
        path = self.data_dir / "admin.token"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
        return token

    def _warm(self, limit: int = 200_000) -> None:
        """Load token hashes up front: the first request of each contributor skips a database read."""
        with self.db.session() as s:
            for id_, name, role, h in s.execute(select(Account.id, Account.name, Account.role, Account.token_hash)
                                                .limit(limit)):
                self._callers[h] = Caller(id_, name, role)

    # --- accounts ---------------------------------------------------------------------------------
    def caller(self, token: str | None) -> Caller:
        if not token:
            raise HubError(401, "this request needs a token: send `Authorization: Bearer <token>`")
        h = hash_token(token)
        c = self._callers.get(h)
        if c is None:
            with self.db.session() as s:
                acc = s.scalar(select(Account).where(Account.token_hash == h))
            if acc is None:
                raise HubError(401, "unknown token")
            c = self._callers[h] = Caller(acc.id, acc.name, acc.role)
        return c

    def create_account(self, name: str, role: str) -> dict[str, Any]:
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

    def account(self, caller: Caller) -> dict[str, Any]:
        with self.db.session() as s:
            a = s.get(Account, caller.id)
            return {"id": a.id, "name": a.name, "role": a.role, "streak": a.streak, "verified": a.verified,
                    "false_claims": a.false_claims, "trust": reputation.trust(a.streak)}

    # --- tracks -----------------------------------------------------------------------------------
    def create_track(self, name: str, spec_text: str, program: str, bundle: bytes) -> dict[str, Any]:
        try:
            spec = Spec.model_validate(tomllib.loads(spec_text))
        except (tomllib.TOMLDecodeError, ValidationError) as e:
            raise HubError(422, f"invalid overnight.toml: {e}") from None
        if spec.track.name != name:
            raise HubError(422, f"the spec's [track] name is {spec.track.name!r}, not {name!r}")
        repo = self.repo_dir(name)
        if repo.exists():
            raise HubError(409, f"track {name!r} exists")
        try:
            head = gitstore.init_from_bundle(repo, bundle)
        except gitstore.GitStoreError as e:
            raise HubError(422, f"bad bundle: {e}") from None
        with self.db.writing(), self.db.session() as s, s.begin():
            t = HubTrack(name=name, spec=spec_text, program=program, head=head)
            s.add(t)
            s.flush()
            s.add(ChainEntry(track_id=t.id, seq=0, commit=head, parent=None))
        return {"name": name, "head": head}

    def repo_dir(self, name: str) -> Path:
        return self.data_dir / "repos" / f"{name}.git"

    def track(self, name: str) -> TrackView:
        t = self._tracks.get(name)
        if t is None:
            with self.db.session() as s:
                row = s.scalar(select(HubTrack).where(HubTrack.name == name))
            if row is None:
                raise HubError(404, f"no track {name!r}")
            spec = Spec.model_validate(tomllib.loads(row.spec))
            t = self._tracks[name] = TrackView(row.id, row.name, spec, row.spec, row.program, row.head)
        return t

    def tracks(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [{"name": t.name, "head": t.head} for t in s.scalars(select(HubTrack).order_by(HubTrack.id))]

    def track_info(self, name: str) -> dict[str, Any]:
        t = self.track(name)
        with self.db.session() as s:
            last = s.scalar(select(ChainEntry).where(ChainEntry.track_id == t.id).order_by(ChainEntry.seq.desc()))
        return {"name": t.name, "spec": t.spec_text, "program": t.program, "head": t.head, "seq": last.seq,
                "head_metric": last.metric, "metric": t.spec.metric.name, "direction": t.spec.metric.direction,
                "editable": t.spec.track.editable}

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
            with self.db.session() as s:  # a retry of a request acknowledged before the head moved
                old = s.scalar(select(Submission).where(Submission.contributor_id == caller.id,
                                                        Submission.idem_key == key))
            if old is not None:
                return self._replay(old, sha)
            raise HubError(409, f"stale: the parent {body['parent'][:12]} is not the chain head {t.head[:12]}; "
                                "fetch the head and rebase")
        claimed, head = float(body["claimed_metric"]), body.get("claimed_head")
        gain = 0.0 if head is None else (head - claimed if t.spec.minimize else claimed - head)
        rel = gain / max(abs(head), 1e-12) if head is not None else 0.0
        platform = body.get("platform") or {}
        row = dict(track_id=t.id, contributor_id=caller.id, idem_key=key, parent=body["parent"], patch=patch,
                   patch_sha=sha, description=body.get("description", "")[:500], claimed_metric=claimed,
                   claimed_head=head, claimed_gain=gain, claimed_runs=list(body.get("claimed_runs") or [])[:100],
                   platform=platform, tier=reputation.tier(platform),
                   log_tail=(body.get("log_tail") or "")[-LOG_TAIL_CHARS:], status="pending", reason="")
        try:
            sub_id = self.writer.insert(row, rel)
        except IntegrityError:
            with self.db.session() as s:
                old = s.scalar(select(Submission).where(Submission.contributor_id == caller.id,
                                                        Submission.idem_key == key))
                if old is not None:  # a concurrent retry of the same request won the race
                    return self._replay(old, sha)
                dup = s.scalar(select(Submission.id).where(Submission.track_id == t.id,
                                                           Submission.parent == body["parent"],
                                                           Submission.patch_sha == sha))
            raise HubError(409, f"replayed: the same patch on the same parent is submission #{dup}") from None
        return 201, {"id": sub_id, "status": "pending", "reason": "", "parent": row["parent"],
                     "description": row["description"], "claimed_metric": claimed, "claimed_head": head,
                     "claimed_gain": gain, "verified_metric": None, "tier": row["tier"]}

    def _replay(self, old: Submission, sha: str) -> tuple[int, dict[str, Any]]:
        if old.patch_sha != sha:
            raise HubError(409, "this idempotency key was used for a different patch")
        return 200, self._sub_dict(old, full=False)

    def submission(self, caller: Caller, sub_id: int) -> dict[str, Any]:
        with self.db.session() as s:
            sub = s.get(Submission, sub_id)
            if sub is None or (caller.role == "contributor" and sub.contributor_id != caller.id):
                raise HubError(404, f"no submission #{sub_id} of yours")
            return self._sub_dict(sub, full=True)

    def my_submissions(self, caller: Caller) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(select(Submission).where(Submission.contributor_id == caller.id)
                             .order_by(Submission.id.desc()).limit(1000))
            return [self._sub_dict(r, full=False) for r in rows]

    @staticmethod
    def _sub_dict(sub: Submission, full: bool) -> dict[str, Any]:
        d = {"id": sub.id, "status": sub.status, "reason": sub.reason, "parent": sub.parent,
             "description": sub.description, "claimed_metric": sub.claimed_metric,
             "claimed_head": sub.claimed_head, "claimed_gain": sub.claimed_gain,
             "verified_metric": sub.verified_metric, "tier": sub.tier, "created_at": sub.created_at}
        if full:
            d.update(patch=sub.patch, claimed_runs=sub.claimed_runs, platform=sub.platform,
                     log_tail=sub.log_tail, verification=sub.verification)
        return d

    # --- verification -----------------------------------------------------------------------------
    def claim(self, caller: Caller, track: str | None = None) -> dict[str, Any] | None:
        """Lease the most promising pending submission whose parent is still the head; stale ones are closed."""
        self._need(caller, "verifier")
        now = time.time()
        with self.db.writing(), self.db.session() as s, s.begin():
            s.execute(update(Submission).where(Submission.status == "verifying", Submission.lease_until < now)
                      .values(status="pending", verifier_id=None, lease_until=None))
            q = select(Submission, HubTrack).join(HubTrack, HubTrack.id == Submission.track_id).where(
                Submission.status == "pending").order_by(Submission.priority.desc(), Submission.id)
            if track:
                q = q.where(HubTrack.name == track)
            if s.bind.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True, of=Submission)
            for sub, t in s.execute(q.limit(50)):
                if sub.parent != t.head:
                    sub.status, sub.decided_at = "stale", now
                    sub.reason = f"stale: the chain moved to {t.head[:12]} before this was verified; rebase and resubmit"
                    continue
                sub.status, sub.verifier_id, sub.lease_until = "verifying", caller.id, now + LEASE_SECONDS
                with s.no_autoflush:
                    streak = s.get(Account, sub.contributor_id).streak
                return {**self._sub_dict(sub, full=True), "track": t.name, "contributor_streak": streak,
                        "contributor_trusted": streak >= reputation.TRUSTED_STREAK}
        return None

    def report(self, caller: Caller, sub_id: int, body: dict[str, Any]) -> dict[str, Any]:
        """The verifier's outcome: accept (→ new head), reject (false claim or not), or release (retry later)."""
        self._need(caller, "verifier")
        outcome = body["outcome"]
        try:
            return self._report(caller, sub_id, outcome, body)
        finally:  # trust and the chain may have changed: leaderboards are recomputed on the next read
            self._tracks.clear()
            self._boards = {}

    def _report(self, caller: Caller, sub_id: int, outcome: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._chain_lock, self.db.writing(), self.db.session() as s, s.begin():
            sub = s.get(Submission, sub_id)
            if sub is None or sub.status != "verifying" or sub.verifier_id != caller.id:
                raise HubError(409, f"submission #{sub_id} is not leased to you")
            t = s.get(HubTrack, sub.track_id)
            acc = s.get(Account, sub.contributor_id)
            now = time.time()
            sub.verification = {k: body.get(k) for k in ("runs", "head_runs", "stats", "platform", "verifier_seconds")}
            sub.verified_metric = body.get("metric")
            if outcome == "release":
                sub.status, sub.verifier_id, sub.lease_until = "pending", None, None
                return self._sub_dict(sub, full=False)
            sub.decided_at, sub.reason = now, body.get("reason", "")[:4000]
            if outcome == "reject":
                sub.status = "rejected"
                if body.get("false_claim", True):
                    acc.streak, acc.false_claims = 0, acc.false_claims + 1
                return self._sub_dict(sub, full=False)
            if t.head != sub.parent:
                sub.status, sub.reason = "stale", f"stale: the chain moved to {t.head[:12]} during verification"
                return self._sub_dict(sub, full=False)
            try:
                commit = gitstore.apply(self.repo_dir(t.name), sub.parent, sub.patch,
                                        f"{sub.description[:200]}\n\nhub submission #{sub.id} by {acc.name}")
            except gitstore.GitStoreError as e:
                sub.status, sub.reason = "rejected", f"the patch does not apply: {e}"
                return self._sub_dict(sub, full=False)
            seq = s.scalar(select(func.max(ChainEntry.seq)).where(ChainEntry.track_id == t.id)) + 1
            platform = body.get("platform") or {}
            s.add(ChainEntry(track_id=t.id, seq=seq, commit=commit, parent=sub.parent, submission_id=sub.id,
                             contributor_id=acc.id, verifier_id=caller.id, metric=body.get("metric"),
                             head_metric=body.get("head_metric"), gain=float(body.get("gain") or 0.0),
                             tier=reputation.tier(platform)))
            t.head, sub.status = commit, "accepted"
            acc.streak, acc.verified = acc.streak + 1, acc.verified + 1
            return {**self._sub_dict(sub, full=False), "commit": commit, "seq": seq}

    @staticmethod
    def _need(caller: Caller, role: str) -> None:
        if caller.role not in (role, "admin"):
            raise HubError(403, f"this needs a {role} token")

    # --- chain and leaderboard --------------------------------------------------------------------
    def chain(self, name: str) -> list[dict[str, Any]]:
        t = self.track(name)
        with self.db.session() as s:
            names = dict(s.execute(select(Account.id, Account.name).where(
                Account.id.in_(select(ChainEntry.contributor_id).where(ChainEntry.track_id == t.id)
                               .union(select(ChainEntry.verifier_id).where(ChainEntry.track_id == t.id))))).all())
            out = []
            for e, sub in s.execute(select(ChainEntry, Submission).outerjoin(
                    Submission, Submission.id == ChainEntry.submission_id)
                    .where(ChainEntry.track_id == t.id).order_by(ChainEntry.seq)):
                d = {"seq": e.seq, "commit": e.commit, "parent": e.parent, "metric": e.metric,
                     "head_metric": e.head_metric, "gain": e.gain, "tier": e.tier, "created_at": e.created_at,
                     "contributor": names.get(e.contributor_id), "verifier": names.get(e.verifier_id),
                     "submission": e.submission_id}
                if sub is not None:
                    d.update(description=sub.description, diff_url=f"/tracks/{name}/chain/{e.seq}/diff",
                             claimed_metric=sub.claimed_metric, runs=sub.verification.get("runs"),
                             head_runs=sub.verification.get("head_runs"), stats=sub.verification.get("stats"))
                out.append(d)
            return out

    def chain_diff(self, name: str, seq: int) -> str:
        t = self.track(name)
        with self.db.session() as s:
            patch = s.scalar(select(Submission.patch).join(ChainEntry, ChainEntry.submission_id == Submission.id)
                             .where(ChainEntry.track_id == t.id, ChainEntry.seq == seq))
        if patch is None:
            raise HubError(404, f"no diff for chain entry {seq} of {name!r}")
        return patch

    def leaderboard(self, name: str, tier: str | None = None) -> bytes:
        """JSON bytes, cached until the chain moves (reads vastly outnumber accepts)."""
        key = (name, tier)
        cached = self._boards.get(key)
        if cached is not None:
            return cached
        t = self.track(name)
        with self.db.session() as s:
            q = (select(Account.name, Account.streak, func.sum(ChainEntry.gain), func.count(ChainEntry.id))
                 .join(ChainEntry, ChainEntry.contributor_id == Account.id).where(ChainEntry.track_id == t.id)
                 .group_by(Account.id, Account.name, Account.streak).order_by(func.sum(ChainEntry.gain).desc()))
            if tier:
                q = q.where(ChainEntry.tier == tier)
            rows = s.execute(q).all()
            tiers = sorted(s.scalars(select(ChainEntry.tier).where(ChainEntry.track_id == t.id, ChainEntry.seq > 0)
                                     .distinct()))
        board = [{"rank": i + 1, "contributor": n, "verified_improvement": g, "accepted": c,
                  "trust": reputation.trust(st)} for i, (n, st, g, c) in enumerate(rows)]
        data = json.dumps({"track": name, "metric": t.spec.metric.name, "tier": tier, "tiers": tiers,
                           "leaderboard": board}).encode()
        self._boards[key] = data
        return data
