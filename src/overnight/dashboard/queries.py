"""Read-side queries for the dashboard: narrow column selects so 10,000 experiments stay fast."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

from sqlalchemy import case, func, or_, select

from overnight.ledger import PENDING, Experiment, Idea, Ledger, Run

# The list endpoint's columns, in row order (rows are arrays to keep 10,000 of them small).
LIST_COLUMNS = ["id", "status", "metric", "head_metric", "proposer", "description", "created_at",
                "finished_at", "cost_usd", "slot", "p_value", "delta", "baseline"]
DESCRIPTION_CHARS = 300  # the list never ships whole descriptions, diffs or transcripts
NOISE_KEYS = ("noise_sd", "noise", "sigma", "head_sd", "sd")


def clean(v: Any) -> Any:
    """NaN and infinities are not JSON; the browser would refuse the whole response."""
    return None if isinstance(v, float) and not math.isfinite(v) else v


def resolve_tag(ledger: Ledger, tag: str | None) -> str | None:
    return tag or ledger.get("current_tag")


def _where_tag(q: Any, tag: str | None) -> Any:
    return q if tag is None else q.where(Experiment.tag == tag)


def list_rows(ledger: Ledger, tag: str | None, updated_after: float | None = None) -> list[list[Any]]:
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


def version(ledger: Ledger, tag: str | None) -> str:
    """A cheap fingerprint of everything the pages show; it changes when anything they show changes."""
    E = Experiment
    pending = func.sum(case((E.status.in_(PENDING), 1), else_=0))
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
