"""The hub's tables (SQLAlchemy 2.0); the schema itself is owned by the Alembic migrations."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("admin", "verifier", "contributor")


class SubStatus(StrEnum):
    """A hub submission's states (stored as these strings)."""

    PENDING = "pending"
    VERIFYING = "verifying"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    STALE = "stale"


QUEUED = frozenset({SubStatus.PENDING, SubStatus.VERIFYING})
DECIDED = frozenset({SubStatus.ACCEPTED, SubStatus.REJECTED, SubStatus.STALE})


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Account(Base):
    """A token holder: only the sha256 of its token is stored, never the token."""

    __tablename__ = "hub_accounts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    streak: Mapped[int] = mapped_column(Integer, default=0)  # consecutive verified claims (BOINC-style)
    verified: Mapped[int] = mapped_column(Integer, default=0)
    false_claims: Mapped[int] = mapped_column(Integer, default=0)
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)  # a revoked token is refused on every process
    token_changed_at: Mapped[float | None] = mapped_column(Float, index=True)  # revoked or rotated: caches drop it
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class HubTrack(Base):
    __tablename__ = "hub_tracks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    spec: Mapped[str] = mapped_column(Text)  # overnight.toml text
    program: Mapped[str] = mapped_column(Text, default="")
    head: Mapped[str] = mapped_column(String(64))  # the latest verified commit
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class ChainEntry(Base):
    """One verified commit; seq 0 is the track's base."""

    __tablename__ = "hub_chain"
    __table_args__ = (UniqueConstraint("track_id", "seq", name="uq_chain_seq"),
                      UniqueConstraint("submission_id", name="uq_chain_submission"))  # accepted once, ever

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("hub_tracks.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    commit: Mapped[str] = mapped_column(String(64))
    parent: Mapped[str | None] = mapped_column(String(64))
    submission_id: Mapped[int | None] = mapped_column(Integer)
    contributor_id: Mapped[int | None] = mapped_column(Integer)
    verifier_id: Mapped[int | None] = mapped_column(Integer)
    metric: Mapped[float | None] = mapped_column(Float)
    head_metric: Mapped[float | None] = mapped_column(Float)
    gain: Mapped[float] = mapped_column(Float, default=0.0)  # verified improvement, positive = better
    tier: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Submission(Base):
    __tablename__ = "hub_submissions"
    __table_args__ = (
        UniqueConstraint("contributor_id", "idem_key", name="uq_sub_idem"),
        UniqueConstraint("track_id", "parent", "patch_sha", name="uq_sub_patch"),  # a replayed patch is refused
        Index("ix_sub_queue", "status", "priority"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    track_id: Mapped[int] = mapped_column(ForeignKey("hub_tracks.id"), index=True)
    contributor_id: Mapped[int] = mapped_column(ForeignKey("hub_accounts.id"), index=True)
    idem_key: Mapped[str] = mapped_column(String(100))
    parent: Mapped[str] = mapped_column(String(64))
    patch: Mapped[str] = mapped_column(Text)
    patch_sha: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, default="")
    claimed_metric: Mapped[float] = mapped_column(Float)
    claimed_head: Mapped[float | None] = mapped_column(Float)
    claimed_gain: Mapped[float] = mapped_column(Float, default=0.0)
    claimed_runs: Mapped[list[Any]] = mapped_column(JSON, default=list)
    platform: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    tier: Mapped[str] = mapped_column(String(200), default="")
    log_tail: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20))  # pending, verifying, accepted, rejected, stale
    reason: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[float] = mapped_column(Float, default=0.0)  # the contributor's trust at submission
    verifier_id: Mapped[int | None] = mapped_column(Integer)
    lease_until: Mapped[float | None] = mapped_column(Float)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # leases that ended without a verdict
    verified_metric: Mapped[float | None] = mapped_column(Float)
    verification: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # runs, head runs, stats, platform
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    decided_at: Mapped[float | None] = mapped_column(Float)


class HubState(Base):
    """One row: `version` grows with every verdict (accept or reject), in the verdict's transaction, so any
    process can tell in one read whether its copy of a leaderboard is still the truth."""

    __tablename__ = "hub_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)
