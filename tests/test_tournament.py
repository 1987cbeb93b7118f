"""Tournaments: scripted agents whose skill depends on the program text, on a real track and real loops."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from overnight.cli import app
from overnight.proposers.base import Proposal
from overnight.tournament import verdict as V
from overnight.tournament.budget import Caps
from overnight.tournament.contest import Tournament, TournamentError
from overnight.tournament.contestants import ContestantError, check_unique, parse
from overnight.track import Track

FOCUS = "Only touch X."


class ProgramAgent:
    """Reads the program: told to focus on X it walks X halfway to its optimum; otherwise it edits a comment."""

    name = "scripted"
    uses_ideas = False

    def __init__(self, track):
        self.track = track

    def propose(self, ctx) -> Proposal:
        params = ctx.workdir / "params.py"
        text = params.read_text()
        if FOCUS in ctx.track.program:
            x = float(re.search(r"^X = ([-\d.]+)", text, re.M).group(1))
            text = re.sub(r"^X = [-\d.]+", f"X = {x - (x - 1) / 2:.6g}", text, flags=re.M)
            desc = "X halfway to 1"
        else:
            text += f"# note {len(text)}\n"
            desc = "a comment"
        params.write_text(text)
        return Proposal(description=desc, proposer=self.name)

    def observe(self, experiment) -> None:
        pass

    def baseline(self, experiment) -> None:
        pass


def _tournament(track_dir: Path, programs: dict[str, str], experiments: int = 2, remeasure: int = 4, **kw):
    cs = []
    for name, text in programs.items():
        f = track_dir.parent / f"{name}.md"
        f.write_text(text)
        cs.append(parse(f"{name}=optuna,program={f}", track_dir))
    track = Track(track_dir)
    return Tournament(track, "t", cs, Caps(experiments=experiments), lambda c, view, tag: ProgramAgent(view),
                      remeasure=remeasure, say=lambda s: None, **kw)


def test_the_better_program_wins(quad_track):
    d = quad_track(sigma=0.01)
    t = _tournament(d, {"focus": f"# program\n{FOCUS}\n", "vague": "# program\nImprove the score.\n"})
    state = t.run()
    v = state["verdict"]
    assert v["winner"] == "focus", v["lines"]
    assert v["order"] == ["focus", "vague"]
    spent = v["spend"]
    assert spent["focus"]["experiments"] == spent["vague"]["experiments"] == 2  # the same budget
    assert all(s["slot_seconds"] > 0 for s in spent.values())
    # each contestant has its own branch from the same base; the winner's moved, the other's is the base
    repo = t.track.repo
    heads = v["heads"]
    assert heads["focus"] != state["base"] and heads["vague"] == state["base"]
    assert repo.resolve("refs/heads/overnight/t-focus") == heads["focus"]
    assert v["curves"]["focus"][-1][1] < v["curves"]["vague"][-1][1]


def test_equal_programs_are_not_declared_different(quad_track):
    d = quad_track(sigma=0.05)
    same = f"# program\n{FOCUS}\n"
    state = _tournament(d, {"a": same, "b": same}).run()
    v = state["verdict"]
    assert v["winner"] is None, v["lines"]
    assert not any(p["significant"] for p in v["pairs"])


def test_resume_keeps_turns_and_refuses_other_contestants(quad_track):
    d = quad_track(sigma=0.01)
    t = _tournament(d, {"a": "x", "b": "y"}, experiments=1)
    t.stop.set()  # stopped before the first turn: nothing decided, state saved
    assert t.run()["verdict"] is None
    t2 = _tournament(d, {"a": "x", "b": "y"}, experiments=1)
    assert t2.run()["verdict"] is not None
    with pytest.raises(TournamentError, match="already exists"):
        _tournament(d, {"a": "x", "c": "y"}, experiments=1).run()


def test_verdict_statistics():
    # a constant 1.0 gap on paired rounds is beyond noise; identical series are not
    v = V.decide({"a": [1.0, 2.0, 3.0, 4.0], "b": [2.0, 3.1, 3.9, 5.0], "c": [2.0, 3.1, 3.9, 5.0]}, minimize=True)
    assert v.winner == "a" and v.beats("a", "b") and not v.beats("b", "c") and not v.beats("c", "b")
    assert V.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_contestant_parsing_errors(tmp_path):
    with pytest.raises(ContestantError, match="NAME=PROPOSER"):
        parse("justaname", tmp_path)
    with pytest.raises(ContestantError, match="proposer must be"):
        parse("a=gpt", tmp_path)
    with pytest.raises(ContestantError, match="does not exist"):
        parse("a=optuna,program=missing.md", tmp_path)
    with pytest.raises(ContestantError, match="unknown option"):
        parse("a=optuna,colour=red", tmp_path)
    assert parse("a=agent:claude,model=m", tmp_path).options == {"agent_cmd": "claude", "model": "m"}
    with pytest.raises(ContestantError, match="given twice"):
        check_unique([parse("a=optuna", tmp_path), parse("a=llm", tmp_path)])


def test_cli_runs_an_optuna_tournament(quad_track):
    d = quad_track(sigma=0.01)
    r = CliRunner().invoke(app, ["tournament", str(d), "-c", "one=optuna", "-c", "two=optuna",
                                 "--experiments", "1", "--remeasure", "3"])
    assert r.exit_code == 0, r.output
    assert "re-measurement overhead" in r.output and "alpha 0.05" in r.output
    r = CliRunner().invoke(app, ["tournament", str(d), "-c", "one=optuna"])
    assert r.exit_code == 2 and "at least two contestants" in r.output


def test_meta_rounds_keep_the_better_program(quad_track, tmp_path):
    from overnight.tournament.meta import MetaTournament, folder_variants

    d = quad_track(sigma=0.01)
    vague = tmp_path / "vague.md"
    vague.write_text("# program\nImprove the score.\n")
    folder = tmp_path / "variants"
    folder.mkdir()
    (folder / "1-same.md").write_text("# program\nImprove the score, please.\n")
    (folder / "2-focus.md").write_text(f"# program\n{FOCUS}\n")
    track = Track(d)

    def make(name, cs):
        return Tournament(track, name, cs, Caps(experiments=2), lambda c, view, tag: ProgramAgent(view),
                          remeasure=4, say=lambda s: None)

    meta = MetaTournament(tmp_path / "programs", parse(f"champ=optuna,program={vague}", d), make,
                          folder_variants(folder), rounds=3)
    history = meta.run("m")
    assert [h["winner"] for h in history] == [None, "r2v1"]  # an equal variant changes nothing; focus wins
    assert meta.champion.name == "r2v1" and FOCUS in meta.champion.program.read_text()


def test_llm_writes_program_variants():
    from fakeprovider import FakeProvider, Reply

    from overnight.tournament.meta import llm_variants

    with FakeProvider([Reply(text=f"Here:\n```markdown\n# program\n{FOCUS}\n```\n")]) as fp:
        out = llm_variants("m", fp.openai_url)("# old", {"lines": ["a beats b"]}, 1)
        assert out == [f"# program\n{FOCUS}\n"]
        sent = str(fp.requests[0])
        assert "# old" in sent and "a beats b" in sent


def test_dashboard_shows_the_tournament(quad_track):
    pytest.importorskip("playwright")
    from overnight.bench.dashboard import CHROMIUM, browser, serve
    from overnight.ui.dashboard import create_app

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}")
    d = quad_track(sigma=0.01)
    t = _tournament(d, {"focus": f"# program\n{FOCUS}\n", "vague": "# program\nImprove the score.\n"}, experiments=1)
    t.run()
    with serve(create_app(t.track.ledger, t.track.spec)) as url, browser() as b:
        page = b.new_page()
        page.goto(url)
        page.wait_for_selector("#tournaments .tournament")
        text = page.locator("#tournaments").inner_text()
        assert "winner focus" in text and "focus beats vague" in text
        page.click("#tournaments a:text('vague')")  # each contestant's own experiments, by its tag
        page.wait_for_selector("#stats .stat")
        assert "tag=t-vague" in page.url


def test_remeasure_waits_for_no_loop(quad_track):
    import threading

    from overnight.loop.session import Limits, Session

    d = quad_track(sigma=0.01)
    t = _tournament(d, {"a": "x", "b": "y"}, experiments=1)
    held = Session(t.track, Limits(), threading.Event())
    t.track.repo  # noqa: B018 - the repo is opened before the lock is taken, as a loop does
    state = t._load()
    held.acquire()  # an `overnight run` holds the track
    try:
        with pytest.raises(TournamentError, match="another `overnight run` is active"):
            t._remeasure(state)
    finally:
        held.release()
