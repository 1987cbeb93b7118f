"""The ledger: every experiment, run, measurement, decision and idea, in SQLite (WAL).

One file per track at `<track>/.overnight/ledger.db`; the Optuna study lives in
the same file so a resumed loop continues everything from one place. Opening a ledger
brings its schema to the newest revision (`schema.py`); everything outside `storage/`
reads and writes through `Ledger` and the functions of `storage/queries.py`.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, NamedTuple

from sqlalchemy import create_engine, event, func, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DatabaseError
from sqlalchemy.orm import Session, sessionmaker

from overnight.core.status import FINAL, PENDING, Status
from overnight.storage import schema
from overnight.storage.models import KV, Base, Experiment, Idea, IdeaStatus, Note, Run

__all__ = ["FINAL", "KV", "PENDING", "Base", "Experiment", "HistoryRow", "Idea", "IdeaStatus", "Ledger", "NodeRow", "Note",
           "Run", "SchemaError", "Status", "sqlite_url"]

SchemaError = schema.SchemaError


class HistoryRow(NamedTuple):
    """One experiment as the proposers' history digest reads it (no diff, no transcript)."""

    id: int
    status: str
    metric: float | None
    head_metric: float | None
    description: str
    reason: str
    baseline: bool
    operator: str | None = None  # what the proposal did to the research tree, and from which node
    parent_id: int | None = None


class NodeRow(NamedTuple):
    """One experiment as the operator policy reads it (no diff, no transcript)."""

    id: int
    status: str
    operator: str | None
    parent_id: int | None
    metric: float | None
    head_metric: float | None
    stats: dict[str, Any]
    meta: dict[str, Any]
    commit: str | None
    parent_commit: str
    description: str
    reason: str


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    dbapi_conn.isolation_level = None  # transactions are begun by _begin_immediate, not the driver
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA busy_timeout=30000")  # first: two openers of a new file both switch it to WAL
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _begin_immediate(conn: Any) -> None:
    # Take the write lock up front: a deferred read-then-write transaction fails at once in WAL mode
    # when another process committed in between, instead of waiting on busy_timeout.
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


@contextmanager
def _opening(db: Path) -> Iterator[None]:
    """One opener of a SQLite file at a time: two processes switching a new file to WAL and upgrading
    it together can get SQLITE_BUSY without the busy handler being called (seen on 2 cores, ~1 in 15)."""
    try:
        f = open(db.with_name(db.name + ".lock"), "a")  # noqa: SIM115 - a sidecar, apart from SQLite's fcntl locks
    except OSError:  # no folder or a read-only one: SQLite says what is wrong, or there is nothing to upgrade
        yield
        return
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield  # closing the file releases the lock


def _begin_deferred(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN")  # a read of several statements sees one WAL snapshot, and takes no lock


def _engine(url: str, writer: bool) -> Engine:
    engine = create_engine(url)
    if url.startswith("sqlite"):
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", _begin_immediate if writer else _begin_deferred)
    return engine


class Ledger:
    """Typed access to one ledger database. Short transactions; safe across processes."""

    def __init__(self, url: str):
        self.url = url
        self.engine: Engine = _engine(url, writer=True)
        # Reads need no write lock: a second engine whose transactions begin deferred (WAL snapshots).
        self.read_engine: Engine = _engine(url, writer=False)
        db = self.path
        try:
            with _opening(db) if db else nullcontext():
                schema.upgrade(self.engine, self.read_engine, self.where)
        except DatabaseError as e:  # not a SQLite file, a corrupt one, or a server that refuses
            self.close()
            raise SchemaError(f"{self.where}: cannot open the ledger: {e.orig or e}") from None
        except SchemaError:
            self.close()
            raise
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._readers = sessionmaker(self.read_engine, expire_on_commit=False)

    @classmethod
    def for_track(cls, state_dir: Path) -> Ledger:
        state_dir.mkdir(parents=True, exist_ok=True)
        return cls(sqlite_url(state_dir / "ledger.db"))

    @property
    def path(self) -> Path | None:
        """The SQLite file, or None for a server database or an in-memory one."""
        db = self.engine.url.database if self.engine.dialect.name == "sqlite" else None
        return Path(db) if db and db != ":memory:" else None

    @property
    def where(self) -> str:
        """The ledger named for messages, without a password."""
        return str(self.path) if self.path else self.engine.url.render_as_string(hide_password=True)

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

    def add_experiments(self, rows: list[dict[str, Any]], runs: list[dict[str, Any]] | None = None) -> None:
        """Many experiments (and runs) in one transaction: imports, benchmarks, fixtures."""
        with self.session() as s:
            if rows:
                s.execute(insert(Experiment), rows)
            if runs:
                s.execute(insert(Run), runs)

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

    def history(self, tag: str) -> list[HistoryRow]:
        """Every experiment of a tag, narrow: what a proposer's history digest needs."""
        E = Experiment
        q = (select(E.id, E.status, E.metric, E.head_metric, E.description, E.reason, E.meta, E.operator,
                    E.parent_id).where(E.tag == tag).order_by(E.id))
        with self.reading() as s:
            return [HistoryRow(i, st, m, hm, d or "", r or "", bool((meta or {}).get("baseline")), op, pid)
                    for i, st, m, hm, d, r, meta, op, pid in s.execute(q)]

    def nodes(self, tag: str) -> list[NodeRow]:
        """Every experiment of a tag, narrow: what the operator policy needs."""
        E = Experiment
        q = (select(E.id, E.status, E.operator, E.parent_id, E.metric, E.head_metric, E.stats, E.meta, E.commit,
                    E.parent_commit, E.description, E.reason).where(E.tag == tag).order_by(E.id))
        with self.reading() as s:
            return [NodeRow(*r) for r in s.execute(q)]

    def diffs(self, ids: list[int]) -> dict[int, str]:
        """The diffs of a few experiments (the near-misses the operator policy pairs up)."""
        if not ids:
            return {}
        q = select(Experiment.id, Experiment.diff).where(Experiment.id.in_(ids))
        with self.reading() as s:
            return {i: d or "" for i, d in s.execute(q)}

    def node_at(self, tag: str, commit: str) -> int | None:
        """The newest kept experiment of a tag at `commit` (the head node a proposal branched from)."""
        E = Experiment
        q = (select(E.id).where(E.tag == tag, E.commit == commit, E.status == Status.KEEP)
             .order_by(E.id.desc()).limit(1))
        with self.reading() as s:
            return s.scalar(q)

    def cost_usd(self, tag: str | None = None) -> float:
        """LLM spend recorded on the experiments of a tag (or all)."""
        q = select(func.sum(Experiment.cost_usd))
        if tag is not None:
            q = q.where(Experiment.tag == tag)
        with self.reading() as s:
            return float(s.scalar(q) or 0.0)

    # --- runs --------------------------------------------------------------------------------------
    def add_run(self, **fields: Any) -> Run:
        with self.session() as s:
            r = Run(**fields)
            s.add(r)
            s.flush()
            return r

    def finish_run(self, run_id: int, **fields: Any) -> Run:
        """Record a finished run's outcome (status, metric, measurements, exit code, wall seconds, tail);
        `finished_at` is now unless given."""
        with self.session() as s:
            r = s.get(Run, run_id)
            if r is None:
                raise KeyError(run_id)
            for k, v in {"finished_at": time.time(), **fields}.items():
                setattr(r, k, v)
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

    def idea(self, idea_id: int) -> Idea | None:
        with self.reading() as s:
            return s.get(Idea, idea_id)

    def claim_idea(self, who: str, lease_seconds: float) -> Idea | None:
        """Claim the oldest open idea (or one whose lease expired) under a time-limited lease."""
        now = time.time()
        with self.session() as s:
            q = (
                select(Idea)
                .where((Idea.status == IdeaStatus.OPEN)
                       | ((Idea.status == IdeaStatus.CLAIMED) & (Idea.lease_until < now)))
                .order_by(Idea.id)
                .limit(1)
            )
            idea = s.scalars(q).first()
            if idea is None:
                return None
            idea.status, idea.claimed_by, idea.lease_until = IdeaStatus.CLAIMED, who, now + lease_seconds
            return idea

    def finish_idea(self, idea_id: int, status: str, experiment_id: int | None = None) -> None:
        with self.session() as s:
            idea = s.get(Idea, idea_id)
            if idea is None:
                raise KeyError(idea_id)
            idea.status, idea.lease_until = status, None
            if experiment_id is not None:
                idea.experiment_id = experiment_id

    def reopen_orphan_ideas(self, claimed_by_prefix: str) -> int:
        """Ideas claimed by a loop that died (claimed_by starts with the prefix, e.g. "loop:") whose
        candidate never became an experiment go back to open. Returns how many."""
        used = select(Experiment.idea_id).where(Experiment.idea_id.is_not(None))
        escaped = claimed_by_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        q = (update(Idea)
             .where(Idea.status == IdeaStatus.CLAIMED, Idea.claimed_by.like(escaped + "%", escape="\\"),
                    Idea.id.not_in(used))
             .values(status=IdeaStatus.OPEN, lease_until=None))
        with self.session() as s:
            return s.execute(q).rowcount

    def add_note(self, text: str, source: str = "") -> None:
        with self.session() as s:
            s.add(Note(text=text.strip(), source=source))

    def notes(self, newest: int | None = None) -> list[Note]:
        """Every note oldest first, or the `newest` N newest first."""
        q = select(Note).order_by(Note.id) if newest is None else select(Note).order_by(Note.id.desc()).limit(newest)
        with self.reading() as s:
            return list(s.scalars(q))
