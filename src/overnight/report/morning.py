"""`overnight report`: the page a user reads with the first coffee, as Markdown and as HTML.

What ran, what was kept (diffs, p-values), the best near-misses, crashes by cause, the
noise floor, cost and compute, and the plot. The Markdown is the source; the HTML is a
literal rendering of it (every text escaped), with the plot inlined so the file stands alone.
"""

from __future__ import annotations

import base64
import html
import time
from collections import Counter
from pathlib import Path

from overnight.core.status import RUN_FAILURES, Status
from overnight.report.results import noise_sd
from overnight.storage.ledger import Experiment, Ledger

FAILED = RUN_FAILURES | {Status.INVALID, Status.ERROR}
DIFF_LINES = 60


def _num(v: float | None, fmt: str = ".6g") -> str:
    return "—" if v is None else format(v, fmt)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _cause(e: Experiment) -> str:
    """A failure's cause in one line: the last line of its traceback, else its reason's first line."""
    lines = [ln.strip() for ln in (e.reason or "").splitlines() if ln.strip()]
    if len(lines) > 1 and ":" in lines[-1]:
        return lines[-1][:120]
    return (lines[0] if lines else str(e.status))[:120]


def markdown(ledger: Ledger, tag: str | None, metric: str, minimize: bool, title: str, plot: str | None) -> str:
    exps = ledger.experiments(tag=tag)
    out = [f"# {title}: the morning report", ""]
    if not exps:
        return "\n".join([*out, "No experiments yet: start with `overnight run`.", ""])
    runs = {e.id: ledger.runs(e.id) for e in exps}
    kept = [e for e in exps if e.status == Status.KEEP]
    base = next((e for e in exps if e.meta.get("baseline")), exps[0])
    head = kept[-1] if kept else None
    started = min(e.created_at for e in exps)
    ended = max((e.finished_at or e.created_at) for e in exps)
    counts = Counter(str(e.status) for e in exps)
    n_runs = sum(len(r) for r in runs.values())
    compute = sum((r.wall_seconds or 0.0) for rs in runs.values() for r in rs)
    when = f"{time.strftime('%Y-%m-%d %H:%M', time.localtime(started))} to {time.strftime('%H:%M', time.localtime(ended))}"
    out += ["## What ran", "",
            f"{len(exps)} experiments ({', '.join(f'{v} {k}' for k, v in sorted(counts.items()))}), {n_runs} runs, "
            f"{when} ({(ended - started) / 3600:.2f} h). Metric `{metric}`, {'lower' if minimize else 'higher'} "
            "is better.", ""]
    if head is not None and base.metric is not None:
        gain = (base.metric - head.metric) if minimize else (head.metric - base.metric)
        out += [f"Baseline {_num(base.metric)} → head **{_num(head.metric)}** ({gain:+.4g} better) at "
                f"`{(head.commit or '')[:10]}`.", ""]
    elif base.status != Status.KEEP:
        out += [f"The baseline did not finish: {base.status}, {_cause(base)}.", ""]
    sd = noise_sd(ledger, exps)
    out += ["## Noise floor", "",
            (f"Run-to-run sd {sd:.4g} of `{metric}`, pooled over the kept versions measured more than once; "
             "a change is kept only when it beats the head by more than this says is luck.") if sd is not None
            else "Not measured yet (it needs a version measured twice).", ""]
    out += ["## Kept", ""]
    changes = [e for e in kept if e is not base]
    if not changes:
        out += ["Nothing beyond the baseline was kept.", ""]
    for e in changes:
        p = (e.stats or {}).get("p_value")
        out += [f"### #{e.id} {_cell(e.description)}", "",
                f"{metric} {_num(e.metric)} vs head {_num(e.head_metric)} over {len(runs[e.id])} runs, "
                f"p = {_num(p, '.3g')}; proposer {e.proposer}.", ""]
        diff = (e.diff or "").splitlines()
        if diff:
            more = [f"… {len(diff) - DIFF_LINES} more lines"] if len(diff) > DIFF_LINES else []
            out += ["```diff", *diff[:DIFF_LINES], *more, "```", ""]
    near = [e for e in exps if e.status == Status.DISCARD and e.metric is not None and e.head_metric is not None]
    near.sort(key=lambda e: (e.metric - e.head_metric) * (1 if minimize else -1))
    out += ["## Best near-misses", ""]
    if near:
        out += [f"| # | description | {metric} | head | p | why |", "| --- | --- | --- | --- | --- | --- |"]
        for e in near[:5]:
            out.append(f"| {e.id} | {_cell(e.description)[:60]} | {_num(e.metric)} | {_num(e.head_metric)} | "
                       f"{_num((e.stats or {}).get('p_value'), '.3g')} | {_cell(_cause(e))[:90]} |")
    else:
        out.append("None.")
    out.append("")
    failed = [e for e in exps if e.status in FAILED]
    out += ["## Crashes by cause", ""]
    if failed:
        causes: dict[tuple[str, str], list[int]] = {}
        for e in failed:
            causes.setdefault((str(e.status), _cause(e)), []).append(e.id)
        out += ["| status | cause | experiments |", "| --- | --- | --- |"]
        for (status, cause), ids in sorted(causes.items(), key=lambda kv: -len(kv[1])):
            out.append(f"| {status} | {_cell(cause)} | {', '.join(f'#{i}' for i in ids)} |")
    else:
        out.append("None.")
    out.append("")
    tokens = sum(e.tokens_in + e.tokens_out for e in exps)
    cost = sum(e.cost_usd for e in exps)
    think = sum(e.propose_seconds for e in exps)
    out += ["## Cost and compute", "",
            f"{compute / 3600:.2f} h of runs ({n_runs} runs), {think / 60:.1f} min of proposing, "
            f"{tokens} LLM tokens, ${cost:.4f}.", ""]
    if plot:
        out += ["## Progress", "", f"![progress]({plot})", ""]
    return "\n".join(out)


def to_html(md: str, title: str, images: dict[str, Path]) -> str:
    """Render the Markdown this module writes (headings, paragraphs, tables, code, one image), escaped."""
    body: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("```"):
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            body.append('<pre class="diff">' + "\n".join(html.escape(x) for x in lines[i + 1:j]) + "</pre>")
            i = j + 1
            continue
        if line.startswith("|"):
            rows = []
            while i < len(lines) and lines[i].startswith("|"):
                cells = [c.strip().replace("\\|", "|") for c in lines[i].strip("|").split(" | ")]
                if not all(set(c) <= {"-", " "} for c in cells):
                    rows.append(cells)
                i += 1
            head, *rest = rows
            body.append("<table><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
                        + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rest)
                        + "</table>")
            continue
        if line.startswith("!["):
            src = line[line.index("(") + 1:-1]
            path = images.get(src)
            if path is not None and path.is_file():
                data = base64.b64encode(path.read_bytes()).decode()
                body.append(f'<img alt="progress" src="data:image/png;base64,{data}">')
        elif line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            body.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.strip():
            text = html.escape(line)
            text = text.replace("**", "")
            body.append(f"<p>{text}</p>")
        i += 1
    style = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;color:#222}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left}"
             "pre{background:#f6f6f6;padding:.5rem;overflow-x:auto}img{max-width:100%}")
    return (f"<!doctype html><html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
