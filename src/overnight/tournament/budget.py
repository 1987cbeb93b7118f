"""Spend in the units that cost money: experiments, slot-seconds (accelerator time), dollars, wall time."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from overnight.core.status import Status


@dataclass
class Spend:
    experiments: int = 0
    slot_seconds: float = 0.0  # summed wall time of every run, on whatever slot it ran
    dollars: float = 0.0  # LLM and agent-CLI spend the proposers reported
    wall_seconds: float = 0.0  # the contestant's turns, end to end

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass
class Caps:
    """Per contestant; a contestant that reaches any cap gets no more turns. None: no cap."""

    experiments: int | None = None
    slot_seconds: float | None = None
    dollars: float | None = None
    wall_seconds: float | None = None

    def reached(self, s: Spend) -> str | None:
        for name in ("experiments", "slot_seconds", "dollars", "wall_seconds"):
            cap = getattr(self, name)
            if cap is not None and getattr(s, name) >= cap:
                return name
        return None

    def as_dict(self) -> dict[str, float | None]:
        return asdict(self)


def spend(ledger, tag: str, wall_seconds: float = 0.0) -> Spend:
    """What the contestant on `tag` has spent so far, read from the ledger."""
    s = Spend(wall_seconds=wall_seconds)
    for e in ledger.experiments(tag=tag):
        if not e.meta.get("baseline"):
            s.experiments += 1
        s.dollars += e.cost_usd or 0.0
        s.slot_seconds += sum(r.wall_seconds or 0.0 for r in ledger.runs(e.id))
    return s


def curve(ledger, tag: str, minimize: bool) -> list[tuple[float, float]]:
    """(slot-seconds spent, head metric) after every decided experiment: verified progress against budget."""
    points: list[tuple[float, float]] = []
    spent, head = 0.0, None
    for e in ledger.experiments(tag=tag):
        spent += sum(r.wall_seconds or 0.0 for r in ledger.runs(e.id))
        if e.status == Status.KEEP and e.metric is not None:
            head = e.metric
        if head is not None:
            points.append((round(spent, 3), head))
    return points
