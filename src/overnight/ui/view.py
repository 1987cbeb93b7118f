"""The live view of a running loop: current experiment, budget bar, best so far, last outcomes.

On a terminal it is a Rich live panel; elsewhere (CI, logs) one plain line per experiment.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from overnight.loop import LoopState

STYLE = {"keep": "bold green", "discard": "dim", "crash": "red", "timeout": "yellow", "oom": "red",
         "invalid": "magenta", "no_metric": "magenta", "nan": "magenta", "error": "red"}


def fmt(v: float | None) -> str:
    return "—" if v is None else f"{v:.6g}"


@dataclass
class Budget:
    """What a run is held to, for the bar and the run lines: wall seconds, or steps, and the hard kill."""

    seconds: float = 0.0
    timeout: float = 0.0
    steps: int | None = None
    max_runs: int = 5
    baseline_runs: int = 3

    def clock(self, elapsed: float) -> str:
        if self.steps is not None:  # the work is fixed; wall time is whatever the machine gives
            return f"{elapsed:.0f}s, budget {self.steps} steps (killed at {self.timeout:g}s)"
        if elapsed <= self.seconds:
            return f"{elapsed:.0f}s / {self.seconds:g}s budget"
        return f"{elapsed:.0f}s: past the {self.seconds:g}s budget, finishing (killed at {self.timeout:g}s)"

    def which_run(self, description: str, run: int) -> str:
        """`run 3` says nothing: say whether it measures the baseline or confirms a candidate."""
        if "(head)" in description:  # counts the head commit's runs so far, so no "of N": "run 9 of 3" misled
            return f"run {run}: the head measured again, beside the candidates"
        if description.endswith(" baseline"):
            return f"run {run} of {self.baseline_runs}"
        return f"run {run}" if run <= 1 else f"confirming: run {run} of at most {self.max_runs}"

    @staticmethod
    def of(spec) -> Budget:
        return Budget(seconds=spec.run.budget_seconds, timeout=spec.run.timeout_seconds or 0,
                      steps=spec.run.budget_steps, max_runs=spec.policy.max_runs,
                      baseline_runs=spec.policy.baseline_runs)


def why(reason: str) -> str:
    """The decisive part of a reason: after `desc:` when there is one, first line only."""
    first = (reason or "").splitlines()[0] if reason else ""
    return first.split(": ", 1)[1] if ": " in first else first


def render(state: LoopState, metric: str, budget: Budget | None = None) -> Panel:
    budget = budget or Budget(seconds=state.budget, timeout=2 * state.budget)
    head = Table.grid(padding=(0, 2))
    head.add_row("branch", state.branch, "baseline", fmt(state.baseline), "head", Text(fmt(state.head), "bold green"))
    limit = f"/{state.max_experiments}" if state.max_experiments else ""
    left = ""
    if state.deadline:
        left = f"  ({max(0, state.deadline - time.time()) / 3600:.2f} h left)"
    head.add_row("experiments", f"{state.done}{limit}{left}", "phase", state.phase, "metric", metric)
    parts: list = [head]
    if len(state.slots) > 1:  # one line per slot: what runs there and how far into the budget it is
        slots = Table.grid(padding=(0, 2))
        for v in list(state.slots):
            elapsed = time.time() - v.run_started if v.run_started else 0.0
            bar = ProgressBar(total=state.budget, completed=min(elapsed, state.budget), width=20)
            slots.add_row(f"slot {v.index}", v.label, bar if v.exp_id else Text("idle", "dim"),
                          f"{elapsed:.0f}s" if v.exp_id else "", Text((v.description or "")[:50]),
                          budget.which_run(v.description, v.run) if v.exp_id else "")
        parts += [Text(""), slots]
    elif state.current:
        one = state.slots[0] if state.slots else None
        run = f" · {budget.which_run(one.description, one.run)}" if one and one.exp_id else ""
        parts.append(Text(f"\n{state.current}{run}", "bold"))
    if state.run_started and len(state.slots) <= 1:
        elapsed = time.time() - state.run_started
        total = budget.timeout if budget.steps is not None else state.budget
        parts.append(ProgressBar(total=total, completed=min(elapsed, total), width=50))
        parts.append(Text(budget.clock(elapsed)))
    table = Table(box=None, pad_edge=False, expand=False)
    for col in ("#", "status", metric, "description", "why"):
        table.add_column(col)
    for e in state.recent[-8:]:
        table.add_row(str(e.id), Text(e.status, STYLE.get(e.status, "")), fmt(e.metric),
                      Text((e.description or "")[:50]), Text(why(e.reason)[:70], "dim"))
    parts += [Text(""), table, *[Text(m, "cyan") for m in state.messages[-3:]]]
    return Panel(Group(*parts), title=f"overnight · {state.tag}", border_style="blue")


class LiveView:
    def __init__(self, state: LoopState, metric: str, console: Console | None = None, budget: Budget | None = None):
        self.state, self.metric = state, metric
        self.budget = budget or Budget(seconds=state.budget, timeout=2 * state.budget)
        self.console = console or Console()
        self._live: Live | None = None
        self._printed: set[tuple[int, str]] = set()
        self._said = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._pump, daemon=True)

    def __enter__(self) -> LiveView:
        if self.console.is_terminal:
            self._live = Live(get_renderable=lambda: render(self.state, self.metric, self.budget), console=self.console,
                              refresh_per_second=2, transient=False)
            self._live.__enter__()
        else:
            self._thread.start()
        return self

    def _pump(self) -> None:
        while not self._done.wait(0.5):
            self.poll()

    def poll(self) -> None:
        """Plain mode: print what happened since the last call, in the order it happened."""
        if self._live is not None:
            return
        feed = self.state.feed
        end = len(feed)
        for kind, item in feed[self._said:end]:
            if kind == "say":
                print(item, flush=True)
            elif kind == "run":  # a line when a run starts, so a long baseline is not silence
                index, description, run = item
                where = f"slot {index}: " if len(self.state.slots) > 1 else ""
                held = f"{self.budget.steps} steps" if self.budget.steps else f"{self.budget.seconds:g}s budget"
                print(f"{where}{description}: {self.budget.which_run(description, run)} started ({held})", flush=True)
            elif (item.id, item.status) not in self._printed:
                self._printed.add((item.id, item.status))
                reason = f"  ({why(item.reason)[:100]})" if item.reason else ""
                print(f"#{item.id:<4} {item.status:<10} {fmt(item.metric):>12}  {(item.description or '')[:60]}{reason}",
                      flush=True)
        self._said = end

    def __exit__(self, *exc) -> None:
        self._done.set()
        if self._live is not None:
            self._live.__exit__(*exc)
        else:
            self.poll()
