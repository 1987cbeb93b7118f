"""The live view: which run confirms what, no bar past the budget, reasons in the table."""

import io
import time

from rich.console import Console

from overnight.loop import LoopState
from overnight.loop.jobs import SlotView
from overnight.storage.ledger import Experiment
from overnight.ui.view import Budget, LiveView, render


def _text(state: LoopState, budget: Budget) -> str:
    console = Console(record=True, width=140)
    console.print(render(state, "val_bpb", budget))
    return console.export_text()


def _state(**kw) -> LoopState:
    exp = Experiment(id=3, status="discard", metric=3.05, description="[[search]] X=2",
                     reason="val_bpb 3.05 vs head 3.13 over 5 run(s): not better beyond noise (p=0.08)")
    return LoopState(tag="t", branch="overnight/t", budget=60, recent=[exp],
                     slots=[SlotView(0, "cpu", exp_id=4, description="#4 LEARNING_RATE=0.001", run=3,
                                     run_started=time.time() - 69)], current="#4 LEARNING_RATE=0.001", **kw)


def test_a_run_past_its_budget_is_not_shown_as_69_of_60():
    text = _text(_state(run_started=time.time() - 69), Budget(seconds=60, timeout=120, max_runs=5))
    assert "69s / 60s" not in text and "past the 60s budget" in text and "killed at 120s" in text
    assert "confirming: run 3 of at most 5" in text
    assert "not better beyond noise (p=0.08)" in text  # the reason beside "discard 3.05"
    assert "[[search]] X=2" in text  # candidate text is literal


def test_a_step_budget_shows_steps_not_a_time_bar():
    text = _text(_state(run_started=time.time() - 10), Budget(seconds=60, timeout=120, steps=100))
    assert "budget 100 steps" in text and "/ 60s" not in text


def test_plain_mode_prints_which_run_and_why(capsys):
    state = _state(run_started=time.time() - 5)
    view = LiveView(state, "val_bpb", Console(file=io.StringIO()), Budget(seconds=60, timeout=120))
    view.poll()
    out = capsys.readouterr().out
    assert "#4 LEARNING_RATE=0.001: confirming: run 3 of at most 5 started" in out
    assert "#3" in out and "discard" in out and "(not better beyond noise (p=0.08))" in out
