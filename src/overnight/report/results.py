"""Results: the ledger as autoresearch's results.tsv (its columns first) or as JSON."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from overnight.storage.ledger import Experiment, Ledger


def _fmt(v: float | None) -> str:
    return "" if v is None else f"{v:.6f}"


def tsv(ledger: Ledger, metric: str, tag: str | None = None) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, delimiter="\t", lineterminator="\n")
    w.writerow(["commit", metric, "memory_gb", "status", "description",
                "id", "tag", "parent", "proposer", "runs", "p_value", "delta", "wall_seconds", "reason"])
    for e in ledger.experiments(tag=tag):
        runs = ledger.runs(e.id)
        stats = e.stats or {}
        desc = " ".join(e.description.split())
        reason = " ".join((e.reason or "").split())[:300]
        w.writerow([
            (e.commit or "")[:7], _fmt(e.metric), f"{e.memory_gb:.1f}" if e.memory_gb is not None else "",
            e.status, desc, e.id, e.tag, (e.parent_commit or "")[:7], e.proposer, len(runs),
            _fmt(stats.get("p_value")), _fmt(stats.get("delta")),
            _fmt(e.measurements.get("wall_seconds")), reason,
        ])
    return buf.getvalue()


def noise_sd(ledger: Ledger, experiments: list[Experiment]) -> float | None:
    """The pooled run-to-run sd of kept versions measured more than once (None: not measured yet)."""
    from overnight.judge.stats import pooled_sd  # the one noise-floor estimate

    groups = [[r.metric for r in ledger.runs(e.id) if r.status == "ok" and r.metric is not None]
              for e in experiments if e.status == "keep"]
    sd, df = pooled_sd(groups)
    return sd if df else None


def as_dict(e: Experiment, runs: list | None = None) -> dict[str, Any]:
    d = {c.name: getattr(e, c.name) for c in Experiment.__table__.columns}
    if runs is not None:
        d["runs"] = [{c.name: getattr(r, c.name) for c in r.__table__.columns} for r in runs]
    return d


def to_json(ledger: Ledger, tag: str | None = None) -> str:
    return json.dumps([as_dict(e, ledger.runs(e.id)) for e in ledger.experiments(tag=tag)], indent=1, default=str)
