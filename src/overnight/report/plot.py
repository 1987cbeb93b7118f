"""progress.png: every experiment a dot coloured by status, the kept frontier a step line."""

from __future__ import annotations

from pathlib import Path

from overnight.storage.ledger import Experiment

COLORS = {
    "keep": "#2ca02c", "discard": "#9e9e9e", "crash": "#d62728", "timeout": "#ff7f0e", "oom": "#8c564b",
    "no_metric": "#e377c2", "nan": "#e377c2", "invalid": "#000000", "interrupted": "#bcbd22",
}


def _view_range(values: list[float], kept: list[float], minimize: bool) -> tuple[float, float]:
    """Y range: all kept points, and the bulk of the rest (up to the 90th percentile on the bad side)."""
    if not values:
        return 0.0, 1.0
    ordered = sorted(values)
    q = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))] if minimize else ordered[int(0.1 * len(ordered))]
    span_vals = [*kept, q] if kept else ordered
    lo, hi = (min(min(span_vals), ordered[0]), max(span_vals)) if minimize else (min(span_vals), max(max(span_vals), ordered[-1]))
    pad = (hi - lo) * 0.08 or abs(hi) * 0.05 or 1.0
    return lo - pad, hi + pad


def plot(experiments: list[Experiment], metric: str, minimize: bool, out: Path, title: str = "",
         noise_sd: float | None = None) -> Path:
    """Write the plot; `noise_sd` draws a ±1 sd band around the kept frontier (x counts from 1, like `#`)."""
    import warnings

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    with warnings.catch_warnings():  # matplotlib's layout hints are not the user's business
        warnings.simplefilter("ignore")
        fig = figure(plt, MaxNLocator, experiments, metric, minimize, title, noise_sd)
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out)
        plt.close(fig)
    return out


def figure(plt, locator, experiments: list[Experiment], metric: str, minimize: bool, title: str,
           noise_sd: float | None):
    fig, ax = plt.subplots(figsize=(11, 5.5), dpi=110)
    xs = list(range(1, len(experiments) + 1))
    by_status: dict[str, tuple[list[int], list[float]]] = {}
    for x, e in zip(xs, experiments, strict=True):
        if e.metric is not None:
            by_status.setdefault(e.status, ([], []))
            by_status[e.status][0].append(x)
            by_status[e.status][1].append(e.metric)
    lo, hi = _view_range([e.metric for e in experiments if e.metric is not None],
                         [e.metric for e in experiments if e.status == "keep" and e.metric is not None], minimize)
    for status, (sx, sy) in by_status.items():
        inside = [(x, y) for x, y in zip(sx, sy, strict=True) if lo <= y <= hi]
        outside = [(x, min(max(y, lo), hi)) for x, y in zip(sx, sy, strict=True) if not lo <= y <= hi]
        color = COLORS.get(status, "#1f77b4")
        if inside:
            ax.scatter(*zip(*inside, strict=True), s=22, color=color, label=f"{status} ({len(sx)})", zorder=3,
                       alpha=0.85)
        if outside:  # far-off points sit on the edge as arrows so they don't squash the frontier
            ax.scatter(*zip(*outside, strict=True), s=30, color=color, marker="^" if minimize else "v", zorder=3,
                       alpha=0.6, label=None if inside else f"{status} ({len(sx)})")
    ax.set_ylim(lo, hi)
    fx, fy = [], []
    for x, e in zip(xs, experiments, strict=True):
        if e.status == "keep" and e.metric is not None:
            fx.append(x)
            fy.append(e.metric)
            label = e.description[:40].replace("$", r"\$")  # literal text, not mathtext
            ax.annotate(label, (x, e.metric), fontsize=7, rotation=20,
                        xytext=(4, 6 if minimize else -10), textcoords="offset points")
    if fx:
        fx.append(len(experiments))
        fy.append(fy[-1])
        ax.step(fx, fy, where="post", color=COLORS["keep"], linewidth=1.6, label="kept frontier", zorder=2)
        if noise_sd:  # a change inside the band is what luck alone gives
            ax.fill_between(fx, [y - noise_sd for y in fy], [y + noise_sd for y in fy], step="post",
                            color=COLORS["keep"], alpha=0.15, linewidth=0, label=f"noise ±1 sd ({noise_sd:.3g})")
    ax.xaxis.set_major_locator(locator(integer=True))
    ax.set_xlim(0.5, len(experiments) + 0.5)
    failed = sum(1 for e in experiments if e.metric is None)
    ax.set_xlabel(f"experiment ({len(experiments)} total, {failed} without a metric)")
    ax.set_ylabel(f"{metric} ({'lower' if minimize else 'higher'} is better)")
    ax.set_title(title or f"overnight: {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper right")  # "best" is slow and warns on many points
    fig.tight_layout()
    return fig
