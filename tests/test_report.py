"""`overnight report`: the morning report from a real loop's ledger, as Markdown and HTML."""

import threading
from pathlib import Path

from typer.testing import CliRunner

from overnight.cli import app
from overnight.loop import Limits, Loop
from overnight.proposers.base import Proposal, ProposalContext
from overnight.track import Track

GREEDY = '[policy]\nrule = "greedy"\n'
HOSTILE = "<script>alert(1)</script> | X=1"


class Edits:
    name = "scripted"

    def __init__(self):
        self.steps = [
            ("import nothing_here_at_all\n", "a crash"),
            ("X = 1.0\nY = 2\n", HOSTILE),
            ("X = 1.5\nY = 2\n", "a near miss"),
        ]

    def propose(self, ctx: ProposalContext) -> Proposal:
        text, desc = self.steps.pop(0)
        (Path(ctx.workdir) / "params.py").write_text(text)
        return Proposal(description=desc, proposer=self.name)

    def observe(self, exp) -> None:
        pass

    def baseline(self, exp) -> None:
        pass


def test_report_has_every_section_and_escapes_candidate_text(quad_track, tmp_path):
    d = quad_track(spec_extra=GREEDY)
    track = Track(d)
    Loop(track, Edits(), limits=Limits(max_experiments=4), stop=threading.Event(), lookahead=0).run()
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["report", str(d), "-o", str(out)])
    assert r.exit_code == 0, r.output
    md = (out / "report.md").read_text()
    for section in ("## What ran", "## Noise floor", "## Kept", "## Best near-misses", "## Crashes by cause",
                    "## Cost and compute", "## Progress"):
        assert section in md, section
    assert "4 experiments" in md and "1 crash" in md
    assert "ModuleNotFoundError: No module named 'nothing_here_at_all'" in md  # the cause, not just "crash"
    assert "-X = 3.0" in md and "+X = 1.0" in md  # the kept change's diff
    assert "a near miss" in md.split("## Best near-misses")[1].split("##")[0]
    page = (out / "report.html").read_text()
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert 'src="data:image/png;base64,' in page  # the plot travels inside the page
    assert (out / "progress.png").read_bytes()[:4] == b"\x89PNG"


def test_report_before_any_experiment_says_so(quad_track):
    d = quad_track()
    r = CliRunner().invoke(app, ["report", str(d)])
    assert r.exit_code == 0
    assert "No experiments yet" in (d / ".overnight" / "report.md").read_text()
