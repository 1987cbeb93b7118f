"""Meta-optimisation of program.md: each round is a tournament; the winner's program is kept.

Round k's contestants are the champion and new variants. Variants come from a folder the user
fills (taken in name order) or from an LLM that reads the champion and the last verdict and
writes a whole new program.md. A challenger replaces the champion only when the verdict says it
is better beyond noise, so a round of equal programs changes nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from overnight.tournament.contest import Tournament
from overnight.tournament.contestants import Contestant

VariantSource = Callable[[str, dict[str, Any], int], list[str]]  # (champion text, last verdict, n) -> texts


def folder_variants(folder: Path) -> VariantSource:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix == ".md")
    queue = [p.read_text() for p in files]

    def take(_champion: str, _verdict: dict[str, Any], n: int) -> list[str]:
        out, queue[:] = queue[:n], queue[n:]
        return out

    return take


PROMPT = """You improve the instructions ("program.md") that an AI research agent follows on a code-optimisation
track. Below is the current champion program and how it fared in a tournament at equal budget. Write ONE new
complete program.md that you expect to make the agent improve the metric faster. Reply with the file only,
inside one ```markdown fenced block.

# Champion program
{champion}

# Last tournament
{verdict}
"""


def llm_variants(model: str, base_url: str | None = None, api_key: str | None = None) -> VariantSource:
    """Variants written by an OpenAI-compatible chat model (a local server works with --base-url)."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key or "unused-for-local-servers", max_retries=2)

    def write(champion: str, verdict: dict[str, Any], n: int) -> list[str]:
        out = []
        for _ in range(n):
            reply = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT.format(
                champion=champion, verdict="\n".join(verdict.get("lines", [])) or "(first round)")}])
            text = reply.choices[0].message.content or ""
            m = re.search(r"```(?:markdown|md)?\n(.*?)```", text, re.S)
            out.append((m.group(1) if m else text).strip() + "\n")
        return out

    return write


@dataclass
class MetaTournament:
    """`rounds` tournaments in a row; `make(name, contestants)` builds each with the same budget and judge."""

    folder: Path  # where the programs of every round are written, for the record
    champion: Contestant
    make: Callable[[str, list[Contestant]], Tournament]
    variants: VariantSource
    rounds: int = 3
    per_round: int = 1
    history: list[dict[str, Any]] = field(default_factory=list)

    def run(self, name: str) -> list[dict[str, Any]]:
        self.folder.mkdir(parents=True, exist_ok=True)
        champion = self.champion
        last: dict[str, Any] = {}
        for k in range(1, self.rounds + 1):
            text = champion.program.read_text() if champion.program else ""
            new = self.variants(text, last, self.per_round)
            if not new:
                break
            challengers = []
            for i, body in enumerate(new):
                f = self.folder / f"round{k}-v{i + 1}.md"
                f.write_text(body)
                challengers.append(Contestant(f"r{k}v{i + 1}", champion.proposer, dict(champion.options), f))
            t = self.make(f"{name}-r{k}", [champion, *challengers])
            state = t.run()
            last = state.get("verdict") or {}
            if not last:
                break  # stopped: the same command resumes this round
            winner = last.get("winner")
            self.history.append({"round": k, "champion": champion.name, "winner": winner, "lines": last["lines"]})
            if winner and winner != champion.name:
                champion = next(c for c in challengers if c.name == winner)
        self.champion = champion
        return self.history
