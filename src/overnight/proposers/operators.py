"""Operators: what an agent's next proposal does to the tree of experiments, and the policy that picks one.

- improve: edit the head (autoresearch's one chain);
- debug: a candidate whose run failed (crash, timeout, nan, ...) with its output's tail: fix it, run again;
- refine: a near-miss (discarded, yet within one noise sd of its head or better): make it clearly better;
- combine: two near-misses together;
- draft: a fresh attempt from the track's base after STALL discards in a row (since the last keep or draft),
  re-applied on the head by the loop's rebase; one that conflicts there is recorded, and the next draft told.

The policy (docs/search.md): only operators with material are eligible (a failure not yet debugged, a
near-miss not yet refined, a pair not yet combined); an eligible operator never tried goes first (in the
order of OPERATORS), then the highest UCB1 index of its keep rate. `choose` reads plain `Node`s, so the
real proposers and `overnight bench search`'s simulated agent drive the same code. Whatever the
operator, the candidate is judged against the head: debug, refine and combine apply their nodes' changes
on the head before the agent starts, a draft is rebased onto the head before it runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from overnight.core.status import RUN_FAILURES, Status
from overnight.git.repo import RepoError, git
from overnight.proposers.dedupe import changed_lines

if TYPE_CHECKING:
    from overnight.proposers.base import Proposal
    from overnight.track import Track


class Operator(StrEnum):
    IMPROVE = "improve"
    DEBUG = "debug"
    REFINE = "refine"
    COMBINE = "combine"
    DRAFT = "draft"


OPERATORS = [Operator.DEBUG, Operator.COMBINE, Operator.REFINE, Operator.IMPROVE, Operator.DRAFT]
UCB_C = 0.5  # exploration weight of the UCB1 index; keep rates of agents are low, so a small one
MAX_DEBUGS = 2  # a failure fixed and failing again is debugged at most this deep
NEAR = 8  # near-misses considered for refine and combine, best first
TAIL_CHARS = 3000
STALL = 5  # a draft from the base is eligible after this many discards in a row
# What the loop records as a draft's reason when its rebase onto the head fails (loop/intake.py).
DRAFT_CONFLICT = "the draft conflicts with the head"
DRAFT_EMPTY = "the draft is already in the head"


@dataclass(frozen=True)
class Node:
    """One experiment as the policy reads it."""

    id: int
    status: str
    operator: str | None = None  # None: the baseline, or a ledger written before operators
    parent_id: int | None = None
    other_id: int | None = None  # combine's second node
    improvement: float | None = None  # over its head, positive is better
    sigma: float = 0.0  # the noise sd it was judged with (0: unknown)
    commit: str | None = None
    parent_commit: str = ""
    description: str = ""
    reason: str = ""
    baseline: bool = False
    duplicate_of: int | None = None  # it ran as a repeat of that experiment (dedupe's send-backs ran out)
    change: frozenset[str] = frozenset()  # its normalised changed lines (dedupe.changed_lines); empty: unknown


@dataclass
class Operation:
    operator: Operator
    node: Node | None = None  # the node the proposal branches from (None: the head)
    other: Node | None = None
    parent_commit: str | None = None  # the commit the edit starts from when not the head (a draft)
    text: str = ""  # the prompt section saying what to do
    meta: dict[str, Any] = field(default_factory=dict)


def from_experiment(e: Any, minimize: bool) -> Node:
    stats, meta = e.stats or {}, e.meta or {}
    imp = stats.get("improvement")
    if imp is None and e.metric is not None and e.head_metric is not None:
        imp = (e.head_metric - e.metric) if minimize else (e.metric - e.head_metric)
    return Node(e.id, e.status, e.operator, e.parent_id, meta.get("other_id"),
                imp, float(stats.get("sigma") or 0.0), e.commit, e.parent_commit or "", e.description or "",
                e.reason or "", bool(meta.get("baseline")), meta.get("duplicate_of"),
                changed_lines(getattr(e, "diff", "") or ""))


def stalled(nodes: list[Node]) -> int:
    """Discards since the last keep or draft: the head's chain has stopped paying (one draft per stall)."""
    count = 0
    for n in reversed(nodes):
        if n.status == Status.KEEP or n.operator == Operator.DRAFT:
            break
        count += n.status == Status.DISCARD
    return count


def near_miss(n: Node) -> bool:
    return (n.status == Status.DISCARD and n.improvement is not None and n.improvement > -n.sigma
            and n.duplicate_of is None)  # a repeat is its original's material already


def combinable(a: Node, b: Node) -> bool:
    """Two near-misses whose union is new: not one holding the other's change, nor a refine built on its
    node's lines (a parent and child that share a changed line)."""
    if a.change and b.change:
        if a.change <= b.change or b.change <= a.change:
            return False
        if (a.parent_id == b.id or b.parent_id == a.id) and a.change & b.change:
            return False
    return a.duplicate_of != b.id and b.duplicate_of != a.id


def material(nodes: list[Node], skip: Iterable[int] = ()) -> dict[Operator, list[tuple[Node, ...]]]:
    """For each operator, what it could work on now, best first (improve and draft: nothing needed)."""
    skipped = set(skip)
    by_id = {n.id: n for n in nodes}
    done: dict[Operator, set[Any]] = {o: set() for o in Operator}
    for n in nodes:
        if n.operator and n.parent_id is not None:
            key = n.parent_id if n.other_id is None else frozenset((n.parent_id, n.other_id))
            done[_op(n.operator)].add(key)

    def depth(n: Node) -> int:
        d = 0
        while n.operator == Operator.DEBUG and n.parent_id in by_id and d <= MAX_DEBUGS:
            n, d = by_id[n.parent_id], d + 1  # type: ignore[index]
        return d

    out: dict[Operator, list[tuple[Node, ...]]] = {o: [] for o in Operator}
    out[Operator.IMPROVE] = [()]
    base = next((n for n in nodes if n.baseline and n.commit), None)
    if base is not None and stalled(nodes) >= STALL:
        out[Operator.DRAFT] = [(base,)]
    live = [n for n in nodes if n.commit and n.id not in skipped]
    out[Operator.DEBUG] = [(n,) for n in reversed(live) if n.status in RUN_FAILURES
                           and n.id not in done[Operator.DEBUG] and depth(n) < MAX_DEBUGS]
    near = sorted((n for n in live if near_miss(n)), key=lambda n: -(n.improvement or 0.0))[:NEAR]
    out[Operator.REFINE] = [(n,) for n in near if n.id not in done[Operator.REFINE]]
    out[Operator.COMBINE] = [(a, b) for i, a in enumerate(near) for b in near[i + 1:]
                             if frozenset((a.id, b.id)) not in done[Operator.COMBINE] and combinable(a, b)]
    return out


def score(nodes: list[Node]) -> dict[Operator, tuple[int, int]]:
    """(tries, keeps) per operator over the decided and failed experiments."""
    out = {o: (0, 0) for o in Operator}
    for n in nodes:
        if n.baseline or n.status not in (Status.KEEP, Status.DISCARD, *RUN_FAILURES):
            continue
        op = _op(n.operator)
        tries, keeps = out[op]
        out[op] = (tries + 1, keeps + (n.status == Status.KEEP))
    return out


def choose(nodes: list[Node], skip: Iterable[int] = (), allowed: Iterable[Operator] | None = None
           ) -> tuple[Operator, tuple[Node, ...]]:
    """The operator for the next proposal and the nodes it works on (among `allowed`, default all)."""
    mat = material(nodes, skip)
    stats = score(nodes)
    total = sum(t for t, _ in stats.values())
    only = set(OPERATORS if allowed is None else allowed) | {Operator.IMPROVE}
    eligible = [o for o in OPERATORS if mat[o] and o in only]
    untried = [o for o in eligible if stats[o][0] == 0]
    if untried:
        op = untried[0]
    else:
        def index(o: Operator) -> float:
            tries, keeps = stats[o]
            return (keeps + 1) / (tries + 2) + UCB_C * math.sqrt(math.log(total + 1) / tries)

        op = max(eligible, key=lambda o: (index(o), -OPERATORS.index(o)))
    return op, mat[op][0]


# --- the real proposers' side: the ledger in, a worktree ready for the agent out ----------------------
def nodes_of(track: Track, tag: str) -> list[Node]:
    nodes = [from_experiment(e, track.spec.minimize) for e in track.ledger.nodes(tag)]
    diffs = track.ledger.diffs([n.id for n in nodes if near_miss(n)])  # what combine compares, read only for them
    return [replace(n, change=changed_lines(diffs[n.id])) if n.id in diffs else n for n in nodes]


def one_line(text: str, limit: int = 200) -> str:
    return " ".join(text.split())[:limit]


def _apply(workdir: Path, node: Node) -> bool:
    """Replay the node's change (its commit against its parent) on the worktree's files and index."""
    try:
        git(workdir, "cherry-pick", "--no-commit", node.commit or "")
        return True
    except RepoError:
        git(workdir, "cherry-pick", "--quit", check=False)
        return False


def _reset(workdir: Path, commit: str) -> None:
    git(workdir, "checkout", "-q", "--detach", "-f", commit)
    git(workdir, "clean", "-ffdxq")


def _op(name: str | None) -> Operator:
    try:
        return Operator(name or Operator.IMPROVE)
    except ValueError:  # a name from a newer overnight: counted with the head's
        return Operator.IMPROVE


@dataclass
class Memory:
    """What one proposer process knows beyond the ledger: nodes whose change no longer applies on the
    head, and the operations it started that the ledger does not show yet (a pipelined loop records a
    proposal after the next one starts: the same crash is not debugged twice). A started operation is
    forgotten once the ledger records it, or when the loop withdraws its candidate (it never ran)."""

    stale: set[int] = field(default_factory=set)
    started: list[tuple[Node, int]] = field(default_factory=list)  # with the newest ledger id at its start
    made: int = 0

    def start(self, op: Operator, picked: tuple[Node, ...], after: int) -> None:
        self.made += 1
        self.started.append((Node(-self.made, Status.RUNNING, op.value, picked[0].id,
                                  picked[1].id if len(picked) > 1 else None), after))

    def pending(self, ledger: list[Node]) -> list[Node]:
        """The started operations the ledger does not show yet; those it shows now are forgotten."""
        rows, left = list(ledger), []
        for n, after in self.started:
            row = next((r for r in rows if r.id > after and _key(r) == _key(n)), None)
            if row is None:
                left.append((n, after))
            else:
                rows.remove(row)
        self.started = left
        return [n for n, _ in left]

    def forget(self, meta: dict[str, Any]) -> None:
        """A proposal that will never run: its operation was not done, its material is eligible again."""
        key = (meta.get("operator"), meta.get("parent_id"), meta.get("other_id"))
        for i in range(len(self.started) - 1, -1, -1):
            if _key(self.started[i][0]) == key:
                del self.started[i]
                return


def _key(n: Node) -> tuple[str | None, int | None, int | None]:
    return n.operator, n.parent_id, n.other_id


def prepare(track: Track, tag: str, workdir: Path, head_commit: str, memory: Memory) -> Operation:
    """Pick the operator and set the worktree up for it; a node whose change no longer applies on the
    head is marked stale and the next choice is made."""
    ledger = nodes_of(track, tag)
    nodes = ledger + memory.pending(ledger)
    after = max((n.id for n in ledger), default=0)
    skip = memory.stale
    while True:
        op, picked = choose(nodes, skip)
        if op == Operator.IMPROVE:
            return Operation(op)
        if op == Operator.DRAFT:
            memory.start(op, picked, after)
            return _draft(workdir, picked[0], head_commit, ledger)
        ok = all(_apply(workdir, n) for n in picked[:1])
        if not ok:
            _reset(workdir, head_commit)
            skip.add(picked[0].id)
            continue
        memory.start(op, picked, after)
        merged = len(picked) < 2 or _apply(workdir, picked[1])
        if not merged:
            _reset(workdir, head_commit)
            _apply(workdir, picked[0])
        return _operation(track, op, picked, merged)


def _draft(workdir: Path, base: Node, head_commit: str, ledger: list[Node]) -> Operation:
    last = next((n for n in reversed(ledger) if n.operator == Operator.DRAFT), None)
    said = ""
    if last is not None and last.reason.startswith(DRAFT_CONFLICT):  # say so, or the same draft comes again
        moved = git(workdir, "diff", "--no-color", "--no-ext-diff", base.commit or "", head_commit, check=False)
        said = (f"\n\nThe last draft, experiment #{last.id} ({one_line(last.description)!r}), conflicted with the "
                "head: it edited lines the head has changed since the base, so it never ran. Leave those lines "
                f"alone. The head's change from the base:\n\n```diff\n{moved[:TAIL_CHARS]}\n```")
    _reset(workdir, base.commit or "")
    return Operation(Operator.DRAFT, base, parent_commit=base.commit, text=(
        "# Operator: draft\n\nThe files are the track's base (the baseline, experiment "
        f"#{base.id}), not the head. Draft a fresh approach, different from what the history shows; "
        f"the harness re-applies your change on the current head and compares it with the head.{said}"))


def _operation(track: Track, op: Operator, picked: tuple[Node, ...], merged: bool) -> Operation:
    a = picked[0]
    what = f"experiment #{a.id} ({one_line(a.description)!r})"
    if op == Operator.DEBUG:
        tail = _tail(track, a.id)
        text = (f"# Operator: debug\n\n{what} failed: {a.status}, {one_line(a.reason, 300)}. Its change is "
                "applied to the files in front of you, on top of the current head. The end of its output:\n\n"
                f"```\n{tail}\n```\n\nFind the bug and fix it so the idea itself runs; keep the idea. "
                "Describe the fix and the idea.")
    elif op == Operator.REFINE:
        text = (f"# Operator: refine\n\n{what} came close: {one_line(a.reason, 300)}. Its change is applied to the "
                "files in front of you, on top of the current head. Refine it (tune it, tighten it, fix what "
                "holds it back) so that it beats the head clearly.")
    else:
        b = picked[1]
        how = ("Both changes are applied to the files in front of you, on top of the current head."
               if merged else f"The first is applied; #{b.id}'s did not apply cleanly, here it is to merge by "
               f"hand:\n\n```diff\n{_diff(track, b)}\n```")
        text = (f"# Operator: combine\n\n{what} and experiment #{b.id} ({one_line(b.description)!r}) each came "
                f"close alone. {how} Make them work together.")
    meta = {"other_id": picked[1].id} if len(picked) > 1 else {}
    return Operation(op, a, picked[1] if len(picked) > 1 else None, text=text, meta=meta)


def _tail(track: Track, exp_id: int) -> str:
    runs = track.ledger.runs(exp_id)
    tail = next((r.tail for r in reversed(runs) if r.tail), "") or "(no output was recorded)"
    return tail[-TAIL_CHARS:]


def _diff(track: Track, n: Node) -> str:
    e = track.ledger.experiment(n.id)
    return ((e.diff if e else "") or "")[:6000]


def stamp(proposal: Proposal, op: Operation) -> Proposal:
    """Record what the proposal did to the tree on it."""
    proposal.operator = op.operator.value
    proposal.parent_id = op.node.id if op.node is not None else None
    proposal.parent_commit = op.parent_commit
    proposal.meta.update(op.meta)
    return proposal
