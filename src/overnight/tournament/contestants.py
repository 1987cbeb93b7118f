"""A contestant: a proposer (optuna, llm with a model, an agent-CLI preset), a program.md variant, or both."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,40}$")
OPTION_KEYS = {"program", "model", "base_url", "provider", "agent_cmd", "max_cost"}


class ContestantError(ValueError):
    """A contestant definition that cannot be used; the message says which and why."""


@dataclass
class Contestant:
    name: str
    proposer: str = "optuna"
    options: dict[str, Any] = field(default_factory=dict)  # forwarded to make_proposer
    program: Path | None = None  # a program.md variant; None: the track's own

    def describe(self) -> str:
        bits = [self.proposer] + [f"{k}={v}" for k, v in self.options.items()]
        if self.program is not None:
            bits.append(f"program={self.program}")
        return ", ".join(bits)

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "proposer": self.proposer, "options": dict(self.options),
                "program": str(self.program) if self.program else None}


def parse(text: str, base: Path) -> Contestant:
    """`NAME=PROPOSER[:ARG][,key=value...]`, e.g. `lr=agent:claude,program=programs/lr.md`."""
    name, sep, rest = text.partition("=")
    if not sep or not NAME.match(name.strip()):
        raise ContestantError(f"contestant {text!r}: write NAME=PROPOSER[,program=FILE] "
                              "(NAME: letters, digits, '.', '_' or '-')")
    name = name.strip()
    head, *pairs = [p.strip() for p in rest.split(",")]
    proposer, _, arg = head.partition(":")
    if proposer not in ("optuna", "llm", "agent"):
        raise ContestantError(f"contestant {name!r}: proposer must be optuna, llm or agent, not {proposer!r}")
    options: dict[str, Any] = {}
    if arg:
        options["agent_cmd" if proposer == "agent" else "model"] = arg
    program = None
    for pair in pairs:
        key, eq, value = pair.partition("=")
        if not eq or key not in OPTION_KEYS:
            raise ContestantError(f"contestant {name!r}: unknown option {pair!r} (known: {', '.join(sorted(OPTION_KEYS))})")
        if key == "program":
            program = (base / value).resolve()
            if not program.is_file():
                raise ContestantError(f"contestant {name!r}: program file {program} does not exist")
        else:
            options[key] = float(value) if key == "max_cost" else value
    return Contestant(name=name, proposer=proposer, options=options, program=program)


def check_unique(contestants: list[Contestant]) -> None:
    names = [c.name for c in contestants]
    if len(contestants) < 2:
        raise ContestantError("a tournament needs at least two contestants (--contestant NAME=PROPOSER, twice)")
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ContestantError(f"contestant names must differ: {', '.join(dup)} given twice")
