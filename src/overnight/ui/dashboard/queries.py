"""Read-side queries for the dashboard: narrow column selects so 10,000 experiments stay fast."""

from __future__ import annotations

import math
import os
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import case, func, or_, select

from overnight.storage.ledger import PENDING, Experiment, Idea, Ledger, Run

# The list endpoint's columns, in row order (rows are arrays to keep 10,000 of them small).
LIST_COLUMNS = ["id", "status", "metric", "head_metric", "proposer", "description", "created_at",
                "finished_at", "cost_usd", "slot", "p_value", "delta", "baseline"]
DESCRIPTION_CHARS = 300  # the list never ships whole descriptions, diffs or transcripts
NOISE_KEYS = ("noise_sd", "noise", "sigma", "head_sd", "sd")


def clean(v: Any) -> Any:
    """NaN and infinities are not JSON; the browser would refuse the whole response."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _where_tag(q: Any, tag: str | None) -> Any:
    return q if tag is None else q.where(Experiment.tag == tag)


@contextmanager
def _raw_cursor(ledger: Ledger) -> Iterator[Any]:
    """A plain DB-API cursor: plain tuples, no ORM, and no transaction (reads never take the write lock)."""
    conn = ledger.engine.raw_connection()
    try:
        yield conn.cursor()
    finally:
        conn.close()  # back to the pool, which rolls back whatever is open


def _is_sqlite(ledger: Ledger) -> bool:
    return ledger.engine.dialect.name == "sqlite"


_LIST_SQL = (f"SELECT id, status, metric, head_metric, proposer, substr(description, 1, {DESCRIPTION_CHARS}), "
             "created_at, finished_at, cost_usd, slot, json_extract(stats, '$.p_value'), "
             "json_extract(stats, '$.delta'), json_extract(meta, '$.baseline') FROM experiments")


def list_rows(ledger: Ledger, tag: str | None, updated_after: float | None = None) -> list[Any]:
    """Rows in LIST_COLUMNS order (tuples or lists; both serialise as JSON arrays), NaN and infinities as null."""
    if _is_sqlite(ledger):
        where, args = [], []  # type: ignore[var-annotated]
        if tag is not None:
            where.append("tag = ?")
            args.append(tag)
        if updated_after is not None:
            where.append(f"(created_at >= ? OR finished_at >= ? OR status IN ({','.join('?' * len(PENDING))}))")
            args += [updated_after, updated_after, *sorted(PENDING)]
        sql = _LIST_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        with _raw_cursor(ledger) as cur:
            rows = cur.execute(sql, args).fetchall()
        # json_extract gives 1/0 for booleans; non-finite floats are rare, so only their rows are rebuilt
        return [r if r[12] is None and all(_finite(v) for v in r) else _fix(r) for r in rows]
    E = Experiment
    cols = [E.id, E.status, E.metric, E.head_metric, E.proposer, func.substr(E.description, 1, DESCRIPTION_CHARS),
            E.created_at, E.finished_at, E.cost_usd, E.slot, E.stats["p_value"].as_float(),
            E.stats["delta"].as_float(), E.meta["baseline"].as_boolean()]
    q = _where_tag(select(*cols), tag).order_by(E.id)
    if updated_after is not None:
        # new rows, newly finished rows, and anything still pending (its status may move without a timestamp)
        q = q.where(or_(E.created_at >= updated_after, E.finished_at >= updated_after, E.status.in_(PENDING)))
    with ledger.session() as s:
        return [[clean(v) for v in row] for row in s.execute(q)]


def _finite(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


def _fix(r: tuple) -> list[Any]:
    out = [clean(v) for v in r]
    out[12] = bool(out[12]) if out[12] is not None else None
    return out


def _file_signature(ledger: Ledger) -> tuple | None:
    """Size and mtime of a SQLite ledger and its WAL: every commit changes one of them (None: not a file)."""
    path = ledger.engine.url.database if _is_sqlite(ledger) else None
    if not path or path == ":memory:":
        return None
    sig: tuple = ()
    for f in (path, path + "-wal"):
        try:
            st = os.stat(f)
            sig += (st.st_mtime_ns, st.st_size)
        except OSError:
            sig += (None, None)
    return sig


class _Memo:
    """Answers that only change when the ledger file does: a poll of an idle ledger costs two stat() calls."""

    MAX_AGE = 10.0  # recompute anyway now and then, in case a write did not touch the files' stat

    def __init__(self) -> None:
        self.items: dict[tuple, tuple[tuple, float, Any]] = {}
        self.lock = threading.Lock()

    def get(self, ledger: Ledger, key: tuple, make: Any) -> Any:
        sig = _file_signature(ledger)
        full = (id(ledger), *key)
        hit = self.items.get(full)
        now = time.monotonic()
        if sig is not None and hit is not None and hit[0] == sig and now - hit[1] < self.MAX_AGE:
            return hit[2]
        value = make()
        if sig is not None:
            with self.lock:
                if len(self.items) > 256:
                    self.items.clear()
                self.items[full] = (sig, now, value)
        return value


_memo = _Memo()


def resolve_tag(ledger: Ledger, tag: str | None) -> str | None:
    return tag or _memo.get(ledger, ("current_tag",), lambda: ledger.get("current_tag"))


def version(ledger: Ledger, tag: str | None) -> str:
    """A fingerprint of everything the pages show; it changes when anything they show changes."""
    return _memo.get(ledger, ("version", tag), lambda: _version(ledger, tag))


def _version(ledger: Ledger, tag: str | None) -> str:
    E = Experiment
    pending = func.sum(case((E.status.in_(PENDING), 1), else_=0))
    if _is_sqlite(ledger):
        in_pending = ",".join(f"'{p}'" for p in sorted(PENDING))  # constants of this module, not input
        e_sql = (f"SELECT count(id), max(id), max(finished_at), sum(status IN ({in_pending})) FROM experiments"
                 + (" WHERE tag = ?" if tag is not None else ""))
        i_sql = "SELECT count(id), max(id), sum(status = 'open'), sum(status = 'claimed') FROM ideas"
        with _raw_cursor(ledger) as cur:
            e = cur.execute(e_sql, [tag] if tag is not None else []).fetchone()
            i = cur.execute(i_sql).fetchone()
    else:
        with ledger.session() as s:
            e = s.execute(_where_tag(select(func.count(E.id), func.max(E.id), func.max(E.finished_at), pending),
                                     tag)).one()
            i = s.execute(select(func.count(Idea.id), func.max(Idea.id),
                                 func.sum(case((Idea.status == "open", 1), else_=0)),
                                 func.sum(case((Idea.status == "claimed", 1), else_=0)))).one()
    return ":".join(str(v if v is not None else "") for v in (*e, *i, tag))


def _brief(e: Experiment | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"id": e.id, "metric": clean(e.metric), "description": e.description[:DESCRIPTION_CHARS],
            "commit": e.commit, "created_at": e.created_at, "finished_at": e.finished_at}


def _first(s: Any, q: Any) -> Experiment | None:
    return s.scalars(q.limit(1)).first()


def noise_floor(ledger: Ledger, baseline: Experiment | None, head: Experiment | None) -> dict[str, Any] | None:
    """The policy's own noise estimate if it recorded one, else the spread of the baseline's runs."""
    for e in (head, baseline):
        stats = (e.stats or {}) if e is not None else {}
        for k in NOISE_KEYS:
            if isinstance(stats.get(k), int | float) and math.isfinite(stats[k]):
                return {"sd": float(stats[k]), "source": f"the policy's {k} (#{e.id})"}
    if baseline is None:
        return None
    values = [r.metric for r in ledger.runs(baseline.id) if r.metric is not None and math.isfinite(r.metric)]
    if len(values) < 2:
        return None
    return {"sd": statistics.stdev(values), "source": f"sd of {len(values)} baseline runs"}


def summary(ledger: Ledger, tag: str | None, minimize: bool) -> dict[str, Any]:
    E = Experiment
    base_q = _where_tag(select(E), tag)
    with ledger.session() as s:
        counts = dict(s.execute(_where_tag(select(E.status, func.count(E.id)), tag).group_by(E.status)).all())
        agg = s.execute(_where_tag(select(func.min(E.created_at), func.max(E.finished_at), func.sum(E.cost_usd),
                                          func.sum(E.tokens_in + E.tokens_out)), tag)).one()
        head = _first(s, base_q.where(E.status == "keep", E.metric.is_not(None)).order_by(E.id.desc()))
        best_order = E.metric.asc() if minimize else E.metric.desc()
        best = _first(s, base_q.where(E.status == "keep", E.metric.is_not(None)).order_by(best_order))
        baseline = _first(s, base_q.where(E.meta["baseline"].as_boolean()).order_by(E.id))
        baseline = baseline or _first(s, base_q.where(E.status == "keep").order_by(E.id))
        running = list(s.scalars(base_q.where(E.status.in_(PENDING)).order_by(E.slot, E.id)))
        ideas = dict(s.execute(select(Idea.status, func.count(Idea.id)).group_by(Idea.status)).all())
    total = sum(counts.values())
    finished = total - sum(counts.get(p, 0) for p in PENDING)
    first, last = agg[0], agg[1]
    end = time.time() if running else (last or first)
    hours = (end - first) / 3600 if first and end and end > first else None
    return {
        "tag": tag, "counts": counts, "total": total, "finished": finished,
        "head": _brief(head), "best": _brief(best), "baseline": _brief(baseline),
        "noise": noise_floor(ledger, baseline, head),
        "per_hour": finished / hours if hours and hours > 1 / 60 else None,
        "started_at": first, "last_finished_at": last,
        "cost_usd": float(agg[2] or 0.0), "tokens": int(agg[3] or 0),
        "running": [{"id": e.id, "slot": e.slot, "proposer": e.proposer, "status": e.status,
                     "description": e.description[:DESCRIPTION_CHARS], "created_at": e.created_at}
                    for e in running],
        "ideas": ideas,
    }


def _row(obj: Any) -> dict[str, Any]:
    return {c.name: clean(getattr(obj, c.name)) for c in obj.__table__.columns}


def experiment_detail(ledger: Ledger, exp_id: int) -> dict[str, Any] | None:
    E = Experiment
    with ledger.session() as s:
        e = s.get(E, exp_id)
        if e is None:
            return None
        d = _row(e)
        d["measurements"] = {k: clean(v) for k, v in (e.measurements or {}).items()}
        d["stats"] = {k: clean(v) for k, v in (e.stats or {}).items()}
        d["runs"] = [_row(r) for r in s.scalars(select(Run).where(Run.experiment_id == exp_id).order_by(Run.id))]
        # neighbours in the same tag, for prev/next links
        d["prev_id"] = s.scalar(select(func.max(E.id)).where(E.tag == e.tag, E.id < exp_id))
        d["next_id"] = s.scalar(select(func.min(E.id)).where(E.tag == e.tag, E.id > exp_id))
    return d


def idea_dict(i: Idea) -> dict[str, Any]:
    return _row(i)
