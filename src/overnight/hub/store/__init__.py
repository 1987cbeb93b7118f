"""The hub's public reads, straight from the database (no per-process cache: every process serves the
same truth the moment a transaction commits). The dashboard pages read through these functions."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import distinct, func, select

from overnight.hub import reputation
from overnight.hub.db import Database
from overnight.hub.errors import HubError
from overnight.hub.models import QUEUED, Account, ChainEntry, HubState, HubTrack, Submission, SubStatus

PENDING_LIMIT = 200


def sub_dict(sub: Submission, full: bool) -> dict[str, Any]:
    d = {"id": sub.id, "status": sub.status, "reason": sub.reason, "parent": sub.parent,
         "description": sub.description, "claimed_metric": sub.claimed_metric,
         "claimed_head": sub.claimed_head, "claimed_gain": sub.claimed_gain,
         "verified_metric": sub.verified_metric, "tier": sub.tier, "created_at": sub.created_at}
    if full:
        d.update(patch=sub.patch, claimed_runs=sub.claimed_runs, platform=sub.platform,
                 log_tail=sub.log_tail, verification=sub.verification)
    return d


def tracks(db: Database) -> list[dict[str, Any]]:
    with db.session() as s:
        return [{"name": n, "head": h} for n, h in s.execute(select(HubTrack.name, HubTrack.head).order_by(HubTrack.id))]


def last_entry(db: Database, track_id: int) -> dict[str, Any]:
    """The chain's newest entry (its commit is the head: both are written in one transaction)."""
    with db.session() as s:
        e = s.scalar(select(ChainEntry).where(ChainEntry.track_id == track_id).order_by(ChainEntry.seq.desc()))
        return {"seq": e.seq, "commit": e.commit, "metric": e.metric}


def submission(db: Database, sub_id: int, owner: int | None) -> dict[str, Any]:
    """One submission in full; `owner` set: only if it is theirs."""
    with db.session() as s:
        sub = s.get(Submission, sub_id)
        if sub is None or (owner is not None and sub.contributor_id != owner):
            raise HubError(404, f"no submission #{sub_id} of yours")
        return sub_dict(sub, full=True)


def submissions_of(db: Database, contributor: int) -> list[dict[str, Any]]:
    with db.session() as s:
        rows = s.scalars(select(Submission).where(Submission.contributor_id == contributor)
                         .order_by(Submission.id.desc()).limit(1000))
        return [sub_dict(r, full=False) for r in rows]


def chain(db: Database, track_id: int, name: str) -> list[dict[str, Any]]:
    with db.session() as s:
        names = dict(s.execute(select(Account.id, Account.name).where(
            Account.id.in_(select(ChainEntry.contributor_id).where(ChainEntry.track_id == track_id)
                           .union(select(ChainEntry.verifier_id).where(ChainEntry.track_id == track_id))))).all())
        out = []
        for e, sub in s.execute(select(ChainEntry, Submission).outerjoin(
                Submission, Submission.id == ChainEntry.submission_id)
                .where(ChainEntry.track_id == track_id).order_by(ChainEntry.seq)):
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


def chain_diff(db: Database, track_id: int, seq: int) -> str | None:
    with db.session() as s:
        return s.scalar(select(Submission.patch).join(ChainEntry, ChainEntry.submission_id == Submission.id)
                        .where(ChainEntry.track_id == track_id, ChainEntry.seq == seq))


def leaderboard(db: Database, track_id: int, name: str, metric: str, tier: str | None = None) -> bytes:
    """JSON bytes: contributors ranked by verified improvement, with their trust as of now. A process keeps
    its last copy while the hub's verdict counter (`hub_state.version`, one row) has not moved."""
    with db.session() as s:
        version = s.scalar(select(HubState.version).where(HubState.id == 1))
    key = (track_id, tier)
    cached = db.boards.get(key)
    if cached is not None and cached[0] == version:
        return cached[1]
    data = _board(db, track_id, name, metric, tier)
    db.boards[key] = (version, data)  # read before computing: a verdict in between only makes it recompute
    return data


def _board(db: Database, track_id: int, name: str, metric: str, tier: str | None) -> bytes:
    with db.session() as s:
        q = (select(Account.name, Account.streak, func.sum(ChainEntry.gain), func.count(ChainEntry.id))
             .join(ChainEntry, ChainEntry.contributor_id == Account.id).where(ChainEntry.track_id == track_id)
             .group_by(Account.id, Account.name, Account.streak).order_by(func.sum(ChainEntry.gain).desc()))
        if tier:
            q = q.where(ChainEntry.tier == tier)
        rows = s.execute(q).all()
        tiers = sorted(s.scalars(select(ChainEntry.tier).where(ChainEntry.track_id == track_id, ChainEntry.seq > 0)
                                 .distinct()))
    board = [{"rank": i + 1, "contributor": n, "verified_improvement": g, "accepted": c,
              "trust": reputation.trust(st)} for i, (n, st, g, c) in enumerate(rows)]
    return json.dumps({"track": name, "metric": metric, "tier": tier, "tiers": tiers, "leaderboard": board}).encode()


def overview(db: Database) -> list[dict[str, Any]]:
    """Every track with its chain length, head metric, gain since the base, contributors and queue size."""
    with db.session() as s:
        rows = s.execute(select(HubTrack.id, HubTrack.name, HubTrack.head, HubTrack.created_at)
                         .order_by(HubTrack.id)).all()
        chain_stats = {r[0]: r[1:] for r in s.execute(
            select(ChainEntry.track_id, func.max(ChainEntry.seq), func.count(distinct(ChainEntry.contributor_id)),
                   func.max(ChainEntry.created_at), func.sum(ChainEntry.gain))
            .where(ChainEntry.seq > 0).group_by(ChainEntry.track_id))}
        queued = dict(s.execute(select(Submission.track_id, func.count(Submission.id))
                                .where(Submission.status.in_(QUEUED)).group_by(Submission.track_id)).all())
        # the head's verified metric, and the base as the first verifier measured it
        heads = dict(s.execute(select(ChainEntry.track_id, ChainEntry.metric)
                               .join(HubTrack, HubTrack.id == ChainEntry.track_id)
                               .where(ChainEntry.commit == HubTrack.head)).all())
        bases = dict(s.execute(select(ChainEntry.track_id, ChainEntry.head_metric).where(ChainEntry.seq == 1)).all())
    out = []
    for tid, name, head, created in rows:
        seq, people, last, gain = chain_stats.get(tid, (0, 0, None, 0.0))
        out.append({"name": name, "head": head, "seq": seq or 0, "head_metric": heads.get(tid),
                    "base_metric": bases.get(tid), "verified_gain": float(gain or 0.0), "contributors": people or 0,
                    "pending": queued.get(tid, 0), "last_verified_at": last, "created_at": created})
    return out


def pending(db: Database, track_id: int, name: str, head: str) -> dict[str, Any]:
    """The verification queue in the order verifiers take it; claims only, never patches, logs or descriptions."""
    with db.session() as s:
        q = (select(Submission.id, Submission.status, Account.name, Submission.claimed_metric, Submission.claimed_head,
                    Submission.claimed_gain, Submission.tier, Submission.parent, Submission.created_at,
                    Submission.lease_until)
             .join(Account, Account.id == Submission.contributor_id)
             .where(Submission.track_id == track_id, Submission.status.in_(QUEUED))
             .order_by((Submission.status == SubStatus.VERIFYING).desc(), Submission.priority.desc(), Submission.id))
        items = s.execute(q.limit(PENDING_LIMIT)).all()
        total = s.scalar(select(func.count(Submission.id)).where(Submission.track_id == track_id,
                                                                 Submission.status.in_(QUEUED)))
    rows = [{"id": i, "status": st, "contributor": who, "claimed_metric": m, "claimed_head": hm, "claimed_gain": g,
             "relative_gain": g / abs(hm) if hm else None, "tier": tier, "on_head": parent == head,
             "created_at": at, "lease_until": lease if st == SubStatus.VERIFYING else None}
            for i, st, who, m, hm, g, tier, parent, at, lease in items]
    return {"track": name, "head": head, "total": total, "pending": rows}
