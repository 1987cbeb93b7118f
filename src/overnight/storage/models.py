"""The ledger's tables as SQLAlchemy models: experiments, runs, ideas, notes, key/value.

The schema they describe is versioned by the migrations in `storage/migrations` (see `schema.py`):
a change here needs a new revision there.
"""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class IdeaStatus(StrEnum):
    """Where an idea of the queue stands (experiments and runs use `overnight.core.status.Status`)."""

    OPEN = "open"
    CLAIMED = "claimed"
    DONE = "done"
    DROPPED = "dropped"


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON}


class Experiment(Base):
    __tablename__ = "experiments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    tag: Mapped[str] = mapped_column(String(200), index=True)
    parent_commit: Mapped[str] = mapped_column(String(64))
    commit: Mapped[str | None] = mapped_column(String(64))
    proposer: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(20), index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    metric: Mapped[float | None] = mapped_column(Float)
    head_metric: Mapped[float | None] = mapped_column(Float)  # the head it was compared against
    measurements: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # p-value, effect, interval
    diff: Mapped[str] = mapped_column(Text, default="")
    platform: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # proposer specifics (trial number, ...)
    transcript: Mapped[str] = mapped_column(Text, default="")
    idea_id: Mapped[int | None] = mapped_column(Integer)
    operator: Mapped[str | None] = mapped_column(String(20))  # improve, debug, refine, combine, draft; None: baseline
    parent_id: Mapped[int | None] = mapped_column(Integer)  # the node experiment it was branched from
    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)
    slot: Mapped[int] = mapped_column(Integer, default=0)
    propose_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    finished_at: Mapped[float | None] = mapped_column(Float)

    runs: Mapped[list[Run]] = relationship(back_populates="experiment", order_by="Run.id")

    @property
    def memory_gb(self) -> float | None:
        v = self.measurements.get("memory_gb")
        return float(v) if v is not None else None


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    experiment_id: Mapped[int] = mapped_column(ForeignKey("experiments.id"), index=True)
    seed: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20))
    metric: Mapped[float | None] = mapped_column(Float)
    measurements: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    wall_seconds: Mapped[float | None] = mapped_column(Float)
    log_path: Mapped[str] = mapped_column(Text, default="")
    tail: Mapped[str] = mapped_column(Text, default="")
    platform_key: Mapped[str] = mapped_column(String(64), default="")
    started_at: Mapped[float] = mapped_column(Float, default=time.time)
    finished_at: Mapped[float | None] = mapped_column(Float)

    experiment: Mapped[Experiment] = relationship(back_populates="runs")


class Idea(Base):
    __tablename__ = "ideas"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200), default="human")
    status: Mapped[str] = mapped_column(String(20), default=IdeaStatus.OPEN, index=True)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    lease_until: Mapped[float | None] = mapped_column(Float)
    experiment_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class KV(Base):
    __tablename__ = "kv"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
