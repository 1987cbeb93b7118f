"""The ledger: every experiment, run, measurement, decision and idea, in SQLite (WAL).

One file per track at `<track>/.overnight/ledger.db`; the Optuna study lives in
the same file so a resumed loop continues everything from one place.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship, sessionmaker

# Terminal outcomes of an experiment. `running`/`interrupted` are resumed, never final.
FINAL = {"keep", "discard", "crash", "timeout", "no_metric", "nan", "oom", "invalid", "no_change", "error"}
PENDING = {"running", "interrupted"}


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
    status: Mapped[str] = mapped_column(String(20), default="open", index=True)  # open, claimed, done, dropped
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


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _begin_immediate, not the driver
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")  # other terminals (ideas add, dashboard) write too
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _begin_immediate(conn: Any) -> None:
    # Take the write lock up front: a deferred read-then-write transaction fails at once in WAL mode
    # when another process committed in between, instead of waiting on busy_timeout.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


class Ledger:
    """Typed access to one ledger database. Short transactions; safe across processes."""

    def __init__(self, url: str):
        self.url = url
        self.engine: Engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", _begin_immediate)
        try:
            Base.metadata.create_all(self.engine)
        except OperationalError as e:  # another process created the tables between check and create
            if "already exists" not in str(e):
                raise
            Base.metadata.create_all(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads need no write lock: a second engine whose transactions begin deferred (WAL snapshots).
        self.read_engine: Engine = create_engine(url)
        if url.startswith("sqlite"):
            event.listen(self.read_engine, "connect", _sqlite_pragmas)
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False)

    @classmethod
    def for_track(cls, state_dir: Path) -> Ledger:
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(state_dir / "ledger.db"))

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._sessions() as s, s.begin():
            yield s

    @contextmanager
    def reading(self) -> Iterator[Session]:
        with self._readers() as s:
            yield s

    def close(self) -> None:
        self.engine.dispose()
        self.read_engine.dispose()

    # --- key/value ---------------------------------------------------------------------------------
    def get(self, key: str, default: Any = None) -> Any:
        with self.reading() as s:
            row = s.get(KV, key)
            return json.loads(row.value) if row else default

    def put(self, key: str, value: Any) -> None:
        with self.session() as s:
            s.merge(KV(key=key, value=json.dumps(value)))

    # --- experiments -------------------------------------------------------------------------------
    def add_experiment(self, **fields: Any) -> Experiment:
        with self.session() as s:
            e = Experiment(**fields)
            s.add(e)
            s.flush()
            return e

    def update_experiment(self, exp_id: int, **fields: Any) -> Experiment:
        with self.session() as s:
            e = s.get(Experiment, exp_id)
            assert e is not None, exp_id
            for k, v in fields.items():
                setattr(e, k, v)
            return e

    def experiment(self, exp_id: int) -> Experiment | None:
        with self.reading() as s:
            return s.get(Experiment, exp_id)

    def experiments(self, tag: str | None = None, status: set[str] | None = None) -> list[Experiment]:
        with self.reading() as s:
            q = select(Experiment).order_by(Experiment.id)
            if tag is not None:
                q = q.where(Experiment.tag == tag)
            if status is not None:
                q = q.where(Experiment.status.in_(status))
            return list(s.scalars(q))

    def add_run(self, **fields: Any) -> Run:
        with self.session() as s:
            r = Run(**fields)
            s.add(r)
            s.flush()
            return r

    def runs(self, exp_id: int) -> list[Run]:
        with self.reading() as s:
            return list(s.scalars(select(Run).where(Run.experiment_id == exp_id).order_by(Run.id)))

    def delete_unfinished_runs(self, exp_id: int | None = None) -> int:
        """Forget runs a dead loop left half-done (of one experiment, or all); they are redone."""
        with self.session() as s:
            q = select(Run).where(Run.finished_at.is_(None))
            if exp_id is not None:
                q = q.where(Run.experiment_id == exp_id)
            rows = list(s.scalars(q))
            for r in rows:
                s.delete(r)
            return len(rows)

    # --- ideas and notes ---------------------------------------------------------------------------
    def add_idea(self, text: str, source: str = "human") -> Idea:
        with self.session() as s:
            idea = Idea(text=text.strip(), source=source)
            s.add(idea)
            s.flush()
            return idea

    def ideas(self, status: set[str] | None = None) -> list[Idea]:
        with self.reading() as s:
            q = select(Idea).order_by(Idea.id)
            if status:
                q = q.where(Idea.status.in_(status))
            return list(s.scalars(q))

    def claim_idea(self, who: str, lease_seconds: float) -> Idea | None:
        """Claim the oldest open idea (or one whose lease expired) under a time-limited lease."""
        now = time.time()
        with self.session() as s:
            q = (
                select(Idea)
                .where((Idea.status == "open") | ((Idea.status == "claimed") & (Idea.lease_until < now)))
                .order_by(Idea.id)
                .limit(1)
            )
            idea = s.scalars(q).first()
            if idea is None:
                return None
            idea.status, idea.claimed_by, idea.lease_until = "claimed", who, now + lease_seconds
            return idea

    def finish_idea(self, idea_id: int, status: str, experiment_id: int | None = None) -> None:
        with self.session() as s:
            idea = s.get(Idea, idea_id)
            if idea is None:
                raise KeyError(idea_id)
            idea.status, idea.lease_until = status, None
            if experiment_id is not None:
                idea.experiment_id = experiment_id

    def add_note(self, text: str, source: str = "") -> None:
        with self.session() as s:
            s.add(Note(text=text.strip(), source=source))

    def notes(self) -> list[Note]:
        with self.reading() as s:
            return list(s.scalars(select(Note).order_by(Note.id)))
