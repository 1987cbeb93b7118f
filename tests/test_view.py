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
    state.show(state.recent)
    state.feed.append(("run", (0, "#4 LEARNING_RATE=0.001", 3)))
    view = LiveView(state, "val_bpb", Console(file=io.StringIO()), Budget(seconds=60, timeout=120))
    view.poll()
    out = capsys.readouterr().out
    assert "#4 LEARNING_RATE=0.001: confirming: run 3 of at most 5 started" in out
    assert "#3" in out and "discard" in out and "(not better beyond noise (p=0.08))" in out


def test_plain_mode_prints_every_line_once_in_the_order_it_happened(capsys, tmp_path):
    """Piped output used to sample the slots every half second (a quick run's start was printed late or
    never) and stopped printing messages after the fifth (the live list keeps only the last five)."""
    from overnight.loop.recorder import Recorder

    state = _state()
    rec = Recorder.__new__(Recorder)  # only its live-state half: no ledger needed
    rec.state = state
    view = LiveView(state, "val_bpb", Console(file=io.StringIO()), Budget(seconds=60, timeout=120))
    state.slots[0].exp_id = None
    rec.publish_slots = lambda: None  # type: ignore[method-assign]
    for i in range(8):
        rec.say(f"message {i}")
    rec.slot_running(0, Experiment(id=1, status="running", description="baseline"), 1, head=False)
    view.poll()
    rec.slot_running(0, Experiment(id=2, status="running", description="X=3"), 1, head=False)
    rec._decided(Experiment(id=2, status="keep", metric=1.0, description="X=3"))
    rec.say("message 8")
    view.poll()
    view.poll()
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert lines[:8] == [f"message {i}" for i in range(8)]
    assert lines[8].startswith("#1 baseline: ") and lines[9].startswith("#2 X=3: ")
    assert lines[10].startswith("#2") and "keep" in lines[10] and lines[11] == "message 8" and len(lines) == 12
