"""Read-side queries for the dashboard and reports: narrow selects, so 10,000 experiments stay fast.

Plain data out (dicts, lists, tuples; NaN and infinities as None): callers never see a session.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import case, func, or_, select

from overnight.core.status import DECIDED, PENDING, Status
from overnight.judge.noise import expected_false_keeps
from overnight.judge.stats import pooled_sd
from overnight.storage.ledger import Experiment, Idea, IdeaStatus, Ledger, Run

# The list endpoint's columns, in row order (rows are arrays to keep 10,000 of them small).
LIST_COLUMNS = ["id", "status", "metric", "head_metric", "proposer", "description", "created_at",
                "finished_at", "cost_usd", "slot", "p_value", "delta", "baseline", "operator", "parent_id"]
DESCRIPTION_CHARS = 300  # the list never ships whole descriptions, diffs or transcripts
_PENDING = sorted(str(p) for p in PENDING)


def clean(v: Any) -> Any:
    """NaN and infinities are not JSON; the browser would refuse the whole response."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def _where_tag(q: Any, tag: str | None) -> Any:
    return q if tag is None else q.where(Experiment.tag == tag)


@contextmanager
def _raw_cursor(ledger: Ledger) -> Iterator[Any]:
    """A plain DB-API cursor: plain tuples, no ORM, and no transaction (reads never take the write lock)."""
    conn = ledger.read_engine.raw_connection()
    try:
        yield conn.cursor()
    finally:
        conn.close()  # back to the pool, which rolls back whatever is open


def _is_sqlite(ledger: Ledger) -> bool:
    return ledger.engine.dialect.name == "sqlite"


_LIST_SQL = (f"SELECT id, status, metric, head_metric, proposer, substr(description, 1, {DESCRIPTION_CHARS}), "
             "created_at, finished_at, cost_usd, slot, json_extract(stats, '$.p_value'), "
             "json_extract(stats, '$.delta'), json_extract(meta, '$.baseline'), operator, parent_id FROM experiments")


def list_rows(ledger: Ledger, tag: str | None, updated_after: float | None = None) -> list[Any]:
    """Rows in LIST_COLUMNS order (tuples or lists; both serialise as JSON arrays), NaN and infinities as null."""
    if _is_sqlite(ledger):
        where, args = [], []  # type: ignore[var-annotated]
        if tag is not None:
            where.append("tag = ?")
            args.append(tag)
        if updated_after is not None:
            where.append(f"(created_at >= ? OR finished_at >= ? OR status IN ({','.join('?' * len(_PENDING))}))")
            args += [updated_after, updated_after, *_PENDING]
        sql = _LIST_SQL + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id"
        with _raw_cursor(ledger) as cur:
            rows = cur.execute(sql, args).fetchall()
        # json_extract gives 1/0 for booleans; non-finite floats are rare, so only their rows are rebuilt
        return [r if r[12] is None and all(_finite(v) for v in r) else _fix(r) for r in rows]
    E = Experiment
    cols = [E.id, E.status, E.metric, E.head_metric, E.proposer, func.substr(E.description, 1, DESCRIPTION_CHARS),
            E.created_at, E.finished_at, E.cost_usd, E.slot, E.stats["p_value"].as_float(),
            E.stats["delta"].as_float(), E.meta["baseline"].as_boolean(), E.operator, E.parent_id]
    q = _where_tag(select(*cols), tag).order_by(E.id)
    if updated_after is not None:
        # new rows, newly finished rows, and anything still pending (its status may move without a timestamp)
        q = q.where(or_(E.created_at >= updated_after, E.finished_at >= updated_after, E.status.in_(_PENDING)))
    with ledger.reading() as s:
        return [[clean(v) for v in row] for row in s.execute(q)]


def _finite(v: Any) -> bool:
    return not isinstance(v, float) or math.isfinite(v)


def _fix(r: tuple) -> list[Any]:
    out = [clean(v) for v in r]
    out[12] = bool(out[12]) if out[12] is not None else None
    return out


def file_signature(ledger: Ledger) -> tuple | None:
    """Size and mtime of a SQLite ledger and its WAL: every commit changes one of them (None: not a file)."""
    path = ledger.path
    if path is None:
        return None
    sig: tuple = ()
    for f in (str(path), f"{path}-wal"):
        try:
            st = os.stat(f)
            sig += (st.st_mtime_ns, st.st_size)
        except OSError:
            sig += (None, None)
    return sig


def version(ledger: Ledger, tag: str | None) -> str:
    """A fingerprint of everything the pages show; it changes when anything they show changes."""
    E = Experiment
    if _is_sqlite(ledger):
        in_pending = ",".join(f"'{p}'" for p in _PENDING)  # constants of the status vocabulary, not input
        e_sql = (f"SELECT count(id), max(id), max(finished_at), sum(status IN ({in_pending})) FROM experiments"
                 + (" WHERE tag = ?" if tag is not None else ""))
        i_sql = (f"SELECT count(id), max(id), sum(status = '{IdeaStatus.OPEN}'), "
                 f"sum(status = '{IdeaStatus.CLAIMED}') FROM ideas")
        with _raw_cursor(ledger) as cur:
            e = cur.execute(e_sql, [tag] if tag is not None else []).fetchone()
            i = cur.execute(i_sql).fetchone()
    else:
        pending = func.sum(case((E.status.in_(_PENDING), 1), else_=0))
        with ledger.reading() as s:
            e = s.execute(_where_tag(select(func.count(E.id), func.max(E.id), func.max(E.finished_at), pending),
                                     tag)).one()
            i = s.execute(select(func.count(Idea.id), func.max(Idea.id),
                                 func.sum(case((Idea.status == IdeaStatus.OPEN, 1), else_=0)),
                                 func.sum(case((Idea.status == IdeaStatus.CLAIMED, 1), else_=0)))).one()
    return ":".join(str(v if v is not None else "") for v in (*e, *i, tag))


def _brief(e: Experiment | None) -> dict[str, Any] | None:
    if e is None:
        return None
    return {"id": e.id, "status": e.status, "metric": clean(e.metric),
            "description": e.description[:DESCRIPTION_CHARS], "commit": e.commit,
            "created_at": e.created_at, "finished_at": e.finished_at}


def _first(s: Any, q: Any) -> Experiment | None:
    return s.scalars(q.limit(1)).first()


def noise_by_platform(ledger: Ledger, tag: str | None) -> list[dict[str, Any]]:
    """The noise floor as `overnight status` states it: per platform, the sd pooled over the kept
    experiments measured more than once there (their runs share the code), most runs first."""
    E, R = Experiment, Run
    q = _where_tag(select(R.platform_key, R.experiment_id, R.metric, E.platform)
                   .join(E, E.id == R.experiment_id)
                   .where(E.status == Status.KEEP, R.status == Status.OK, R.metric.is_not(None)), tag)
    by_key: dict[str, dict[int, list[float]]] = {}
    platforms: dict[str, dict[str, Any]] = {}
    with ledger.reading() as s:
        for key, exp_id, metric, platform in s.execute(q.order_by(R.id)):
            if math.isfinite(metric):
                by_key.setdefault(key, {}).setdefault(exp_id, []).append(metric)
                platforms.setdefault(key, platform or {})
    out = []
    for key, groups in by_key.items():
        measured = [v for v in groups.values() if len(v) >= 2]
        if not measured:
            continue
        sd, _df = pooled_sd(measured)  # the one noise-floor estimate, as `overnight status` uses it
        out.append({"key": key, "platform": platforms[key], "sd": sd, "runs": sum(len(v) for v in measured),
                    "versions": len(measured)})
    return sorted(out, key=lambda p: -p["runs"])


def summary(ledger: Ledger, tag: str | None, minimize: bool) -> dict[str, Any]:
    E = Experiment
    base_q = _where_tag(select(E), tag)
    kept = base_q.where(E.status == Status.KEEP, E.metric.is_not(None))
    with ledger.reading() as s:
        counts = dict(s.execute(_where_tag(select(E.status, func.count(E.id)), tag).group_by(E.status)).all())
        agg = s.execute(_where_tag(select(func.min(E.created_at), func.max(E.finished_at), func.sum(E.cost_usd),
                                          func.sum(E.tokens_in + E.tokens_out)), tag)).one()
        head = _first(s, kept.order_by(E.id.desc()))
        best = _first(s, kept.order_by(E.metric.asc() if minimize else E.metric.desc()))
        # the first kept baseline, as `overnight status` says; a crashed attempt before it is not the baseline
        is_baseline = E.meta["baseline"].as_boolean()
        baseline = _first(s, kept.where(is_baseline).order_by(E.id)) or _first(s, kept.order_by(E.id))
        attempt = None if baseline else _first(s, base_q.where(is_baseline).order_by(E.id.desc()))
        running = list(s.scalars(base_q.where(E.status.in_(_PENDING)).order_by(E.slot, E.id)))
        ideas = dict(s.execute(select(Idea.status, func.count(Idea.id)).group_by(Idea.status)).all())
        decided = [st or {} for st, meta in s.execute(_where_tag(select(E.stats, E.meta), tag))
                   if not (meta or {}).get("baseline")]
    bound, decisions = expected_false_keeps(decided)  # the night-level figure `overnight status` prints
    total = sum(counts.values())
    finished = total - sum(counts.get(p, 0) for p in _PENDING)
    first, last = agg[0], agg[1]
    end = time.time() if running else (last or first)
    hours = (end - first) / 3600 if first and end and end > first else None
    return {
        "tag": tag, "counts": counts, "total": total, "finished": finished,
        "head": _brief(head), "best": _brief(best), "baseline": _brief(baseline),
        "baseline_attempt": _brief(attempt),  # the latest baseline that was not kept, while none is
        "noise_platforms": noise_by_platform(ledger, tag),
        "head_platform": (head.platform or {}).get("key") if head is not None else None,
        "per_hour": finished / hours if hours and hours > 1 / 60 else None,
        "started_at": first, "last_finished_at": last,
        "cost_usd": float(agg[2] or 0.0), "tokens": int(agg[3] or 0),
        "running": [{"id": e.id, "slot": e.slot, "proposer": e.proposer, "status": e.status,
                     "description": e.description[:DESCRIPTION_CHARS], "created_at": e.created_at}
                    for e in running],
        "ideas": ideas,
        "false_keeps": {"bound": bound, "decisions": decisions},
    }


def row_dict(obj: Any) -> dict[str, Any]:
    """Every column of a row (an experiment, run or idea), NaN and infinities as None."""
    return {c.name: clean(getattr(obj, c.name)) for c in obj.__table__.columns}


def decision_runs(exp: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the decision used: the runs finished by the time the experiment was decided (later ones
    re-measure a kept head), and per measurement the mean of their ok runs for a keep or discard
    (the value the judge compared), else the last run's value."""
    done = exp.get("finished_at")
    used = [r for r in runs if r["finished_at"] is not None and (done is None or r["finished_at"] <= done)]
    ok = [r for r in used if r["status"] == Status.OK]
    averaged = exp["status"] in DECIDED or (exp["status"] in PENDING and ok)
    source = ok if averaged else used[-1:]
    values: dict[str, list[float]] = {}
    for r in source:
        for k, v in (r.get("measurements") or {}).items():
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
                values.setdefault(k, []).append(float(v))
    if not source and exp.get("measurements"):  # an older ledger, or runs that were never recorded
        values = {k: [v] for k, v in exp["measurements"].items() if isinstance(v, int | float)}
    return {"how": "mean" if averaged else "last run", "run_ids": [r["id"] for r in source],
            "means": {k: statistics.fmean(v) for k, v in values.items()},
            "per_run": {str(r["id"]): {k: clean(v) for k, v in (r.get("measurements") or {}).items()}
                        for r in source},
            "later_run_ids": [r["id"] for r in runs if r not in used]}


def experiment_detail(ledger: Ledger, exp_id: int) -> dict[str, Any] | None:
    E = Experiment
    with ledger.reading() as s:
        e = s.get(E, exp_id)
        if e is None:
            return None
        d = row_dict(e)
        d["measurements"] = {k: clean(v) for k, v in (e.measurements or {}).items()}
        d["stats"] = {k: clean(v) for k, v in (e.stats or {}).items()}
        d["runs"] = [row_dict(r) for r in s.scalars(select(Run).where(Run.experiment_id == exp_id).order_by(Run.id))]
        # neighbours in the same tag, for prev/next links
        d["prev_id"] = s.scalar(select(func.max(E.id)).where(E.tag == e.tag, E.id < exp_id))
        d["next_id"] = s.scalar(select(func.min(E.id)).where(E.tag == e.tag, E.id > exp_id))
    d["decision"] = decision_runs(d, d["runs"])
    return d


def idea_dict(i: Idea) -> dict[str, Any]:
    return row_dict(i)
