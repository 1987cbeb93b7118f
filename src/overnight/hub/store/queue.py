"""Verification on the hub side: leases (claim, heartbeat, expiry), reports, the chain append.

Many hub processes share one database, so every step is decided inside a database transaction:
the submission row is locked for its report, the track row for the chain append (PostgreSQL
`SELECT ... FOR UPDATE`; SQLite has one process and a lock), the git ref moves inside that critical
section after the database has decided, and reputation counters change by SQL arithmetic, never by a
read-modify-write in Python. Lock order: submission, then track, then account.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, update

from overnight.hub import gitstore, reputation
from overnight.hub.door import DoorError, check_path
from overnight.hub.errors import HubError
from overnight.hub.models import Account, ChainEntry, HubState, HubTrack, Submission, SubStatus
from overnight.hub.store import sub_dict

if TYPE_CHECKING:
    from overnight.hub.service import Hub
    from overnight.hub.store.accounts import Caller

MAX_ATTEMPTS = 3  # leases that end without a verdict (released, or expired) before the item leaves the queue


def _bump(s) -> None:
    """Leaderboards (trust, chain) changed: every process's cached copy is out of date from this commit on."""
    s.execute(update(HubState).where(HubState.id == 1).values(version=HubState.version + 1))


def _need(caller: Caller, role: str) -> None:
    if caller.role not in (role, "admin"):
        raise HubError(403, f"this needs a {role} token")


def _chain_lock(hub: Hub) -> contextlib.AbstractContextManager:
    return hub.chain_lock if hub.db.sqlite else contextlib.nullcontext()


def claim(hub: Hub, caller: Caller, track: str | None = None) -> dict[str, Any] | None:
    """Lease the next pending submission whose parent is still the head; stale ones are closed.

    Queue order is the contributor's trust, then first come first served: a claimed gain buys nothing."""
    _need(caller, "verifier")
    now = time.time()
    with hub.db.writing(), hub.db.session() as s, s.begin():
        s.execute(update(Submission).where(Submission.status == SubStatus.VERIFYING, Submission.lease_until < now)
                  .values(status=SubStatus.PENDING, verifier_id=None, lease_until=None,
                          attempts=Submission.attempts + 1))
        s.execute(update(Submission).where(Submission.status == SubStatus.PENDING,
                                           Submission.attempts >= MAX_ATTEMPTS)
                  .values(status=SubStatus.REJECTED, decided_at=now,
                          reason=f"not verified: {MAX_ATTEMPTS} leases ended without a verdict (verifiers failed "
                                 "or died on it); not counted against the contributor"))
        q = (select(Submission, HubTrack.name, HubTrack.head).join(HubTrack, HubTrack.id == Submission.track_id)
             .where(Submission.status == SubStatus.PENDING).order_by(Submission.priority.desc(), Submission.id))
        if track:
            q = q.where(HubTrack.name == track)
        if hub.db.postgres:
            q = q.with_for_update(skip_locked=True, of=Submission)
        for sub, name, head in s.execute(q.limit(50)):
            if sub.parent != head:
                sub.status, sub.decided_at = SubStatus.STALE, now
                sub.reason = f"stale: the chain moved to {head[:12]} before this was verified; rebase and resubmit"
                continue
            sub.status, sub.verifier_id, sub.lease_until = SubStatus.VERIFYING, caller.id, now + hub.lease_seconds
            with s.no_autoflush:
                streak = s.scalar(select(Account.streak).where(Account.id == sub.contributor_id))
            return {**sub_dict(sub, full=True), "track": name, "contributor_streak": streak,
                    "contributor_trusted": reputation.trusted(streak), "lease_seconds": hub.lease_seconds}
    return None


def heartbeat(hub: Hub, caller: Caller, sub_id: int) -> dict[str, Any]:
    """Extend the caller's lease: a live verifier keeps its work, a dead one loses it after one lease."""
    _need(caller, "verifier")
    until = time.time() + hub.lease_seconds
    with hub.db.writing(), hub.db.session() as s, s.begin():
        n = s.execute(update(Submission).where(Submission.id == sub_id, Submission.status == SubStatus.VERIFYING,
                                               Submission.verifier_id == caller.id)
                      .values(lease_until=until)).rowcount
    if not n:
        raise HubError(409, f"submission #{sub_id} is not leased to you (the lease expired or it was decided)")
    return {"id": sub_id, "lease_until": until, "lease_seconds": hub.lease_seconds}


def _replayed(hub: Hub, s, sub: Submission, caller: Caller, outcome: str) -> dict[str, Any] | None:
    """The same verifier reporting again (a retry after a lost answer) gets the recorded result."""
    if sub.verifier_id != caller.id:
        return None
    done = {"accept": (SubStatus.ACCEPTED, SubStatus.STALE, SubStatus.REJECTED),
            "reject": (SubStatus.REJECTED,), "release": ()}[outcome]
    if sub.status not in done:
        return None
    out = sub_dict(sub, full=False)
    entry = s.scalar(select(ChainEntry).where(ChainEntry.submission_id == sub.id))
    if entry is not None:
        out.update(commit=entry.commit, seq=entry.seq)
    return {**out, "replayed": True}


def report(hub: Hub, caller: Caller, sub_id: int, body: dict[str, Any]) -> dict[str, Any]:
    """The verifier's outcome: accept (-> new head), reject (a false claim or not), or release (retry later)."""
    _need(caller, "verifier")
    outcome = body["outcome"]
    commit = None
    if outcome == "accept":  # build the commit before any lock: applying a patch is the slow part
        with hub.db.session() as s:
            row = s.get(Submission, sub_id)
            if row is None:
                raise HubError(404, f"no submission #{sub_id}")
            name = s.scalar(select(HubTrack.name).where(HubTrack.id == row.track_id))
            who = s.scalar(select(Account.name).where(Account.id == row.contributor_id))
            parent, patch, desc = row.parent, row.patch, row.description
        spec = hub.track(name).spec
        try:
            commit = gitstore.make_commit(hub.repo_dir(name), parent, patch,
                                          f"{desc[:200]}\n\nhub submission #{sub_id} by {who}",
                                          lambda p: check_path(p, spec.track.editable))
        except (gitstore.GitStoreError, DoorError) as e:
            body = {**body, "outcome": "reject", "false_claim": True,
                    "reason": f"the patch does not enter the chain: {e}"}
            outcome = "reject"
    moved: list[tuple[Any, str]] = []  # (repo, old head) once the git ref moved inside the transaction
    try:
        return _decide(hub, caller, sub_id, outcome, body, commit, moved)
    except Exception:
        for repo, old in moved:  # the database said no after the ref moved: the ref goes back
            with contextlib.suppress(gitstore.GitStoreError):
                gitstore.set_chain(repo, old)
        raise


def _decide(hub: Hub, caller: Caller, sub_id: int, outcome: str, body: dict[str, Any], commit: str | None,
            moved: list) -> dict[str, Any]:
    with _chain_lock(hub), hub.db.writing(), hub.db.session() as s, s.begin():
        sub = s.get(Submission, sub_id, with_for_update=True)
        if sub is None:
            raise HubError(404, f"no submission #{sub_id}")
        if sub.status != SubStatus.VERIFYING or sub.verifier_id != caller.id:
            again = _replayed(hub, s, sub, caller, body["outcome"])
            if again is not None:
                return again
            raise HubError(409, f"submission #{sub_id} is not leased to you (the lease expired or it was decided)")
        now = time.time()
        sub.verification = {k: body.get(k) for k in ("runs", "head_runs", "stats", "platform", "verifier_seconds")}
        sub.verified_metric = body.get("metric")
        reason = (body.get("reason") or "")[:4000]
        if outcome == "release":
            sub.attempts += 1
            if sub.attempts < MAX_ATTEMPTS:
                sub.status, sub.verifier_id, sub.lease_until = SubStatus.PENDING, None, None
                return sub_dict(sub, full=False)
            sub.status, sub.decided_at = SubStatus.REJECTED, now
            sub.reason = (f"not verified: {sub.attempts} verifier-side failures; not counted against the "
                          f"contributor; last: {reason}")[:4000]
            return sub_dict(sub, full=False)
        sub.decided_at, sub.reason = now, reason
        if outcome == "reject":
            sub.status = SubStatus.REJECTED
            if body.get("false_claim", True):
                s.execute(update(Account).where(Account.id == sub.contributor_id)
                          .values(streak=0, false_claims=Account.false_claims + 1))
                _bump(s)
            return sub_dict(sub, full=False)
        return _append(hub, s, sub, caller, commit, body, moved)


def _append(hub: Hub, s, sub: Submission, caller: Caller, commit: str | None, body: dict[str, Any],
            moved: list) -> dict[str, Any]:
    """Accept: compare-and-swap the head under the track's row lock; a lost race is stale, never rejected."""
    t = s.get(HubTrack, sub.track_id, with_for_update=True)  # serialises this track's appends across processes
    if t.head != sub.parent or commit is None:
        sub.status = SubStatus.STALE
        sub.reason = f"stale: the chain moved to {t.head[:12]} during verification; rebase and resubmit"
        return sub_dict(sub, full=False)
    old = t.head
    seq = s.scalar(select(func.max(ChainEntry.seq)).where(ChainEntry.track_id == t.id)) + 1
    platform = body.get("platform") or {}
    s.add(ChainEntry(track_id=t.id, seq=seq, commit=commit, parent=sub.parent, submission_id=sub.id,
                     contributor_id=sub.contributor_id, verifier_id=caller.id, metric=body.get("metric"),
                     head_metric=body.get("head_metric"), gain=float(body.get("gain") or 0.0),
                     tier=reputation.tier(platform)))
    t.head, sub.status = commit, SubStatus.ACCEPTED
    s.execute(update(Account).where(Account.id == sub.contributor_id)
              .values(streak=Account.streak + 1, verified=Account.verified + 1))
    _bump(s)
    s.flush()  # the database has decided (constraints checked, row locked): now the git ref may move
    repo = hub.repo_dir(t.name)
    moved.append((repo, old))
    gitstore.set_chain(repo, commit)  # the commit follows when the transaction closes; a kill between is repaired
    return {**sub_dict(sub, full=False), "commit": commit, "seq": seq}
