"""Prompt assembly: program, spec summary, bounded history digest, claimed idea, memory notes.

A fresh agent on an old ledger resumes with this text and nothing else, so it
carries everything the history teaches; every section has a size cap so the
prompt stays bounded when the ledger holds thousands of experiments.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from overnight.git.repo import matches_any
from overnight.proposers.dedupe import description_words
from overnight.storage.ledger import HistoryRow as Row  # the digest's few columns
from overnight.storage.ledger import Idea

if TYPE_CHECKING:
    from overnight.track import Track

PROGRAM_CHARS = 12_000
DIGEST_CHARS = 8_000
NOTES_CHARS = 3_000
RECENT = 15
DEAD_ENDS = 30
FAILED = {"discard", "crash", "timeout", "no_metric", "nan", "oom", "invalid", "error"}
SKIP_DIRS = {".git", ".overnight", "__pycache__", ".venv", "node_modules"}


def clip(text: str, limit: int, what: str = "text") -> str:
    text = text.strip()
    if len(text) <= limit:
        return text
    return text[:limit].rstrip() + f"\n[… {what} truncated, {len(text) - limit} more characters]"


def one_line(text: str, limit: int = 110) -> str:
    s = " ".join(text.split())
    return s if len(s) <= limit else s[: limit - 1] + "…"


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.6g}"


def load_rows(track: Track, tag: str) -> list[Row]:
    return track.ledger.history(tag)


def editable_files(workdir: Path, globs: list[str], limit: int = 50) -> list[str]:
    found: list[str] = []
    for p in sorted(workdir.rglob("*")):
        rel = p.relative_to(workdir)
        if any(part in SKIP_DIRS for part in rel.parts) or not p.is_file():
            continue
        if matches_any(rel.as_posix(), globs):
            found.append(rel.as_posix())
            if len(found) >= limit:
                break
    return found


def spec_summary(track: Track, workdir: Path | None = None) -> str:
    spec = track.spec
    goal = "lower is better" if spec.minimize else "higher is better"
    lines = [
        f"- track: {spec.track.name}",
        f"- metric: `{spec.metric.name}`, {spec.metric.direction} ({goal})",
        f"- editable (globs): {', '.join(spec.track.editable)}; every other file is frozen and editing it voids the experiment",
    ]
    if workdir is not None:
        files = editable_files(workdir, spec.track.editable)
        lines.append(f"- editable files now: {', '.join(files) if files else '(none yet; you may create them)'}")
    if spec.run.budget_steps is not None:  # fixed work: a faster step is a win, more steps are not allowed
        lines.append(f"- run: `{spec.run.command}` with a fixed budget of {spec.run.budget_steps} steps "
                     f"(OVERNIGHT_BUDGET_STEPS; killed after {spec.run.timeout_seconds:g} s)")
    else:
        lines.append(f"- run: `{spec.run.command}` with a fixed budget of {spec.run.budget_seconds:g} s "
                     f"(killed after {spec.run.timeout_seconds:g} s)")
    if spec.track.inputs:
        lines.append(f"- inputs (not in git, read-only, same paths in every run): {', '.join(spec.track.inputs)}")
    if spec.metric.pattern:
        lines.append(f"- the metric is the last match of the regex `{spec.metric.pattern}` in the output")
    lines.append(f"- smoke check: `{spec.run.smoke_command}`" if spec.run.smoke_command else
                 "- smoke check: none configured")
    if spec.evaluate:
        lines.append("- a separate, frozen evaluator computes the metric; numbers you print are ignored")
    for g in spec.guard:
        bound = " and ".join(b for b in (f">= {g.min:g}" if g.min is not None else "",
                                          f"<= {g.max:g}" if g.max is not None else "") if b)
        lines.append(f"- guard: `{g.metric}` must stay {bound} or the candidate is discarded")
    lines.append(f"- keep rule: {spec.policy.rule}")
    return "\n".join(lines)


def _key(description: str) -> str:
    """Group repeats of the same attempt: case, punctuation, spacing and filler words ("try",
    "again", "retry:") do not matter, numbers do (the duplicate check's normalisation)."""
    words = description_words(description)
    return " ".join(words)[:80] if words else " ".join(description.lower().split())[:80]


def history_digest(track: Track, tag: str, recent: int = RECENT, max_chars: int = DIGEST_CHARS,
                   rows: list[Row] | None = None) -> str:
    rows = load_rows(track, tag) if rows is None else rows
    if not rows:
        return "No experiments yet: the baseline has not run."
    spec = track.spec
    sign = "negative" if spec.minimize else "positive"
    base = next((r for r in rows if r.baseline), None)
    kept = [r for r in rows if r.status == "keep" and r.metric is not None]
    head = kept[-1] if kept else None
    best = None
    for r in kept:
        if best is None or spec.better(r.metric, best.metric):  # type: ignore[arg-type]
            best = r
    counts: dict[str, int] = {}
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    out = [
        f"{len(rows)} experiments so far (" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())) + ").",
        f"- baseline: {fmt(base.metric if base else None)}",
        f"- head (what you are editing): {fmt(head.metric if head else None)}"
        + (f" — #{head.id} {one_line(head.description, 90)}" if head and not head.baseline else ""),
    ]
    if best is not None and best is not head:
        out.append(f"- best: {fmt(best.metric)} — #{best.id} {one_line(best.description, 90)}")
    last = [r for r in rows if not r.baseline][-recent:] if recent > 0 else []
    if last:
        out.append(f"\nLast {len(last)} experiments (Δ = metric − head at the time; {sign} is better):")
        for r in last:
            delta = "" if r.metric is None or r.head_metric is None else f" Δ {r.metric - r.head_metric:+.4g}"
            why = "" if r.status in ("keep", "discard") or not r.reason else f" ({one_line(r.reason, 70)})"
            node = f" [{r.operator} of #{r.parent_id}]" if r.operator not in (None, "improve") and r.parent_id else ""
            out.append(f"- #{r.id} {r.status}{delta}{node}: {one_line(r.description or '(no description)')}{why}")
    shown = {r.id for r in last}
    older = [r for r in rows if not r.baseline and r.status in FAILED and r.id not in shown and r.description]
    if older:
        groups: dict[str, list[Row]] = {}
        for r in older:
            groups.setdefault(_key(r.description), []).append(r)
        ordered = sorted(groups.values(), key=lambda g: g[-1].id, reverse=True)
        out.append(f"\nDead ends ({len(older)} earlier failed or discarded experiments, newest first; "
                   "do not retry them without a new reason; a repeat is sent back):")
        for g in ordered[:DEAD_ENDS]:
            times = f" ×{len(g)}" if len(g) > 1 else ""
            statuses = "/".join(sorted({r.status for r in g}))
            deltas = [r.metric - r.head_metric for r in g if r.metric is not None and r.head_metric is not None]
            at = f" best Δ {(min(deltas) if spec.minimize else max(deltas)):+.3g}" if deltas else ""
            out.append(f"- [{statuses}{times}{at}] #{g[-1].id} {one_line(g[-1].description, 90)}")
        if len(ordered) > DEAD_ENDS:
            out.append(f"- … and {len(ordered) - DEAD_ENDS} more distinct dead ends")
    return clip("\n".join(out), max_chars, "history")


def notes_digest(track: Track, max_chars: int = NOTES_CHARS) -> str:
    notes = track.ledger.notes(newest=200)
    lines: list[str] = []
    used = 0
    for n in notes:  # newest first until the budget is spent, then shown oldest first
        line = f"- {one_line(n.text, 300)}"
        if used + len(line) > max_chars:
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(reversed(lines)) if lines else "(no notes yet)"


def open_ideas(track: Track, limit: int = 10) -> list[Idea]:
    return track.ledger.ideas({"open"})[:limit]


def assemble(track: Track, tag: str, idea: Any = None, workdir: Path | None = None,
             instructions: str = "") -> str:
    """The whole proposal prompt, in Markdown."""
    parts = [
        "# Research program (program.md)\n\n" + (clip(track.program, PROGRAM_CHARS, "program.md")
                                                 or "(no program.md: improve the metric)"),
        "# Track\n\n" + spec_summary(track, workdir),
        "# History\n\n" + history_digest(track, tag),
    ]
    if idea is not None:
        parts.append(f"# Your assignment: idea #{idea.id} (from {idea.source})\n\n{clip(idea.text, 2000, 'idea')}\n\n"
                     "Test this idea in this experiment, as directly as you can.")
    queued = [i for i in open_ideas(track) if idea is None or i.id != idea.id]
    if queued:
        parts.append("# Queued ideas (others will try these; do not duplicate them)\n\n"
                     + "\n".join(f"- #{i.id} {one_line(i.text, 150)}" for i in queued))
    parts.append("# Memory notes (left by earlier agents)\n\n" + notes_digest(track))
    if instructions:
        parts.append("# What to do now\n\n" + instructions.strip())
    return "\n\n".join(parts) + "\n"
