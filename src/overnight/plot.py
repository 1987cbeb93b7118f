"""progress.png: every experiment a dot coloured by status, the kept frontier a step line."""

from __future__ import annotations

from pathlib import Path

from overnight.ledger import Experiment

COLORS = {
    "keep": "#2ca02c", "discard": "#9e9e9e", "crash": "#d62728", "timeout": "#ff7f0e", "oom": "#8c564b",
    "no_metric": "#e377c2", "nan": "#e377c2", "invalid": "#000000", "interrupted": "#bcbd22",
}


def plot(experiments: list[Experiment], metric: str, minimize: bool, out: Path, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    xs = list(range(len(experiments)))
    by_status: dict[str, tuple[list[int], list[float]]] = {}
    for x, e in zip(xs, experiments, strict=True):
        if e.metric is not None:
            by_status.setdefault(e.status, ([], []))
            by_status[e.status][0].append(x)
            by_status[e.status][1].append(e.metric)
    for status, (sx, sy) in by_status.items():
        ax.scatter(sx, sy, s=22, color=COLORS.get(status, "#1f77b4"), label=f"{status} ({len(sx)})",
                   zorder=3, alpha=0.85)
    fx, fy = [], []
    for x, e in zip(xs, experiments, strict=True):
        if e.status == "keep" and e.metric is not None:
            fx.append(x)
            fy.append(e.metric)
            ax.annotate(e.description[:40], (x, e.metric), fontsize=7, rotation=20,
                        xytext=(4, 6 if minimize else -10), textcoords="offset points")
    if fx:
        fx.append(len(experiments) - 1)
        fy.append(fy[-1])
        ax.step(fx, fy, where="post", color=COLORS["keep"], linewidth=1.6, label="kept frontier", zorder=2)
    failed = sum(1 for e in experiments if e.metric is None)
    ax.set_xlabel(f"experiment ({len(experiments)} total, {failed} without a metric)")
    ax.set_ylabel(f"{metric} ({'lower' if minimize else 'higher'} is better)")
    ax.set_title(title or f"overnight: {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out)
    plt.close(fig)
    return out
