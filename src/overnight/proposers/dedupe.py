"""Duplicate proposals: a candidate whose diff or description nearly repeats one already tried.

Cheap text similarity (stdlib difflib, no API): both sides are normalised first (diff headers,
whitespace, comments, case and filler words go), then compared token by token, so a changed
word or number counts as a difference and reformatting does not. Numbers must match exactly:
"LR 0.02" does not repeat "LR 0.03". "Tried" means measured and decided (keep or discard): a
crash never tested its idea, so its fix is not a repeat. Proposers call `find_duplicate` (or
`check` with a track) before handing a candidate over; see docs/search.md.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path
from typing import TYPE_CHECKING

from overnight.core.status import DECIDED
from overnight.git.repo import git

if TYPE_CHECKING:
    from overnight.track import Track

DIFF_SIMILAR = 0.95  # token ratio of normalised diffs at or above which a diff repeats another
TEXT_SIMILAR = 0.85  # word ratio of normalised descriptions
MAX_REPEATS = 2  # duplicates sent back per proposal; a third insistence goes through, marked in meta
MIN_WORDS = 2  # shorter descriptions ("tweak") say too little to call anything a repeat
DIFF_TOKENS = 4000  # diffs are compared on their first tokens: a big rewrite is rarely a repeat
FILLER = {"a", "an", "the", "try", "trying", "retry", "again", "attempt", "test", "experiment", "with", "to",
          "of", "in", "and", "for", "on", "by", "use", "using", "add", "set"}
_TOKEN = re.compile(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|[A-Za-z_]\w*|[^\sA-Za-z_\d]")
_WORD = re.compile(r"\d+(?:\.\d*)?(?:[eE][-+]?\d+)?|\.\d+|[a-z_][a-z_\d]*(?:-[a-z_\d]+)*")
_COMMENT = re.compile(r"\s(#|//).*$|^\s*(#|//).*$")  # a file of unknown language: either marker
_HASH = re.compile(r"\s#.*$|^\s*#.*$")
_SLASH = re.compile(r"\s//.*$|^\s*//.*$")
# By file extension: Python's `//` is floor division, C's `#` a preprocessor line; neither is a comment there.
_SLASH_EXT = {"c", "h", "cc", "cpp", "cxx", "hh", "hpp", "hxx", "cu", "cuh", "js", "jsx", "mjs", "ts", "tsx", "java",
              "go", "rs", "swift", "kt", "kts", "scala", "cs", "php", "dart", "proto", "glsl", "hlsl", "metal",
              "wgsl", "zig", "m", "mm"}
_HASH_EXT = {"py", "pyi", "pyx", "sh", "bash", "zsh", "toml", "yaml", "yml", "r", "rb", "pl", "cfg", "ini", "conf",
             "cmake", "jl", "nim", "ex", "exs", "mk", "makefile", "dockerfile"}


@dataclass(frozen=True)
class Tried:
    """A decided experiment, as much of it as the comparison needs."""

    id: int
    status: str
    description: str
    diff: str = ""


@dataclass(frozen=True)
class Duplicate:
    of: Tried
    by: str  # "diff" or "description"
    score: float

    def message(self) -> str:
        """What the proposer is told: which experiment, how it ended, what to do instead."""
        what = "the same change as" if self.by == "diff" else "the same idea as"
        return (f"this repeats {what} experiment #{self.of.id} ({self.of.status}): "
                f"{' '.join(self.of.description.split())[:200]!r}. It was already measured; try a different idea, "
                "or, if yours really differs, change the code accordingly and say how in the description")


def _number(tok: str) -> float | None:
    try:
        return float(tok)
    except ValueError:
        return None


def numbers(tokens: Iterable[str]) -> list[float]:
    return sorted(n for t in tokens if (n := _number(t)) is not None)


def _changed(diff: str) -> Iterable[tuple[str, list[str]]]:
    """Each changed line of a unified diff as its sign and tokens: headers, context, comments and spacing dropped."""
    comment = _COMMENT
    for line in diff.splitlines():
        if line.startswith(("diff --git", "+++ ")) and not line.endswith("/dev/null"):
            comment = _comment_of(line.rsplit(" ", 1)[-1])
        if line.startswith(("+++", "---", "diff --git", "index ", "@@", "new file", "deleted file",
                            "similarity", "rename ", "old mode", "new mode")):
            continue
        if not line.startswith(("+", "-")):
            continue
        body = comment.sub("", line[1:]).strip()
        if body:
            yield line[0], [t.replace('"', "'") for t in _TOKEN.findall(body)]


def diff_tokens(diff: str) -> list[str]:
    """The changed lines of a unified diff as tokens: headers, context, comments and spacing dropped."""
    out: list[str] = []
    for sign, tokens in _changed(diff):
        out += [sign, *tokens]
        if len(out) >= DIFF_TOKENS:
            break
    return out


def changed_lines(diff: str) -> frozenset[str]:
    """The normalised changed lines of a diff, as a set: does one change hold another."""
    return frozenset(sign + " ".join(tokens) for sign, tokens in _changed(diff))


def _comment_of(path: str) -> re.Pattern[str]:
    name = path.rsplit("/", 1)[-1].lower()
    ext = name.rsplit(".", 1)[-1] if "." in name else name
    return _SLASH if ext in _SLASH_EXT else _HASH if ext in _HASH_EXT else _COMMENT


def description_words(text: str) -> list[str]:
    return [w for w in _WORD.findall(text.lower()) if w not in FILLER]


def ratio(a: list[str], b: list[str]) -> float:
    if not a or not b:
        return 0.0
    m = SequenceMatcher(None, a, b, autojunk=False)
    return m.ratio() if m.real_quick_ratio() >= 0.5 and m.quick_ratio() >= 0.5 else 0.0


def find_duplicate(description: str, diff: str, tried: Iterable[Tried]) -> Duplicate | None:
    """The closest earlier experiment this proposal repeats, or None."""
    dt, words = diff_tokens(diff), description_words(description)
    dn, wn = numbers(dt), numbers(words)
    best: Duplicate | None = None
    for t in tried:
        tt = diff_tokens(t.diff) if dt else []
        if tt:
            s = 1.0 if dt == tt else ratio(dt, tt)
            if s >= DIFF_SIMILAR and numbers(tt) == dn and (best is None or s > best.score):
                best = Duplicate(t, "diff", s)
        if len(words) >= MIN_WORDS and not (tt and numbers(tt) != dn):  # other numbers in the code: another try
            tw = description_words(t.description)
            s = ratio(words, tw)
            if s >= TEXT_SIMILAR and numbers(tw) == wn and (best is None or s > best.score):
                best = Duplicate(t, "description", s)
    return best


def tried(track: Track, tag: str) -> list[Tried]:
    """Every decided experiment on the tag but the baseline, oldest first."""
    return [Tried(e.id, e.status, e.description or "", e.diff or "")
            for e in track.ledger.experiments(tag, status=set(DECIDED)) if not (e.meta or {}).get("baseline")]


def worktree_diff(workdir: Path) -> str:
    """The uncommitted change under `workdir` against its checkout, new files included; git runs the
    harness's way (its environment, no external diff or textconv programs)."""
    out = git(workdir, "diff", "--no-color", "--no-ext-diff", "--no-textconv", "HEAD", "--", ".", check=False)
    for name in git(workdir, "ls-files", "--others", "--exclude-standard", "-z", "--", ".", check=False).split("\0"):
        p = workdir / name
        if name and p.is_file() and p.stat().st_size < 1_000_000:
            try:
                body = p.read_text()
            except (UnicodeDecodeError, OSError):
                continue
            out += f"+++ b/{name}\n" + "".join(f"+{line}\n" for line in body.splitlines())
    return out


def check(track: Track, tag: str, description: str, workdir: Path) -> Duplicate | None:
    """For proposers outside this package (agent CLIs): does the edit in `workdir` repeat a tried one?"""
    return find_duplicate(description, worktree_diff(workdir), tried(track, tag))


class Gate:
    """One proposal's check before it is handed over: a repeat goes back to the proposer, with the
    reason, at most MAX_REPEATS times (a proposer that insists has a reason the check cannot see)."""

    def __init__(self, track: Track, tag: str, workdir: Path, max_repeats: int = MAX_REPEATS):
        self.track, self.tag, self.workdir, self.max_repeats = track, tag, workdir, max_repeats
        self.sent_back = 0
        self.meta: dict[str, int] = {}
        self._tried: list[Tried] | None = None

    def send_back(self, description: str, log: list[str] | None = None) -> str | None:
        """The message for the proposer when the edit in the worktree repeats a tried one, else None."""
        if self._tried is None:
            self._tried = tried(self.track, self.tag)
        dup = find_duplicate(description, worktree_diff(self.workdir), self._tried)
        if dup is None:
            return None
        if self.sent_back >= self.max_repeats:
            self.meta = {"duplicate_of": dup.of.id, "sent_back": self.sent_back}
            if log is not None:
                log.append(f"## harness\nstill a repeat of #{dup.of.id} after {self.sent_back} tries: it runs")
            return None
        self.sent_back += 1
        self.meta = {"sent_back": self.sent_back}
        why = f"error: not finished: {dup.message()}"
        if log is not None:
            log.append(f"## harness\n{why}")
        return why
