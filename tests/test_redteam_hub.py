"""Red team, round 2, on a hub: a contributor's accepted code must never grade (or prepare for) the claims
after it. A live hub on loopback, a real verifier in the sandbox; failed on main at 1aad274."""

from __future__ import annotations

import sys
from pathlib import Path

from conftest import make_repo
from test_hub_support import client, diff_of, live_hub, sandbox_missing

from overnight.hub.contribute import fetch, publish
from overnight.hub.verifier import Verifier

# The evaluator scores through a helper module the admin left editable: the docs promise that a candidate
# editing a module the evaluator imports changes nothing, since the evaluator runs from a trusted copy.
HELPERS = "def score(x, y):\n    return (x - 1) ** 2 + (y - 5) ** 2\n"
EVALUATE = """\
import ast, os, random
from helpers import score
src = open(os.path.join(os.environ["OVERNIGHT_WORKDIR"], "params.py")).read()
vals = {t.id: ast.literal_eval(n.value) for n in ast.parse(src).body if isinstance(n, ast.Assign)
        for t in n.targets if isinstance(t, ast.Name)}
print("score:", score(vals["X"], vals["Y"]) + random.Random(int(os.environ["OVERNIGHT_SEED"])).gauss(0, 0.01))
"""
PREPARE = "import helpers  # noqa: the prepare step shares the helpers\n"
SPEC = """\
[track]
name = "quad"
editable = ["params.py", "helpers.py"]
[prepare]
command = "{python} prepare.py"
[run]
command = "{python} -c 'import params'"
budget_seconds = 5
timeout_seconds = 30
[evaluate]
command = "{python} evaluate.py"
[metric]
name = "score"
"""
# Honest where it is graded itself (the trusted copy of the base grades it); a trojan once in the chain.
TROJAN = HELPERS + (
    "import os, pathlib\n"
    "pathlib.Path({marker!r}).write_text('helpers ran in a trusted step')  # outside any sandbox: on the disk\n"
    "_score = score\n"
    "def score(x, y):\n"
    "    mine = 'MALLORY' in open(os.path.join(os.environ.get('OVERNIGHT_WORKDIR', '.'), 'params.py')).read()\n"
    "    return _score(x, y) - (5 if mine else 0)\n")


def test_an_accepted_module_never_grades_later_claims(tmp_path: Path) -> None:
    # Main: the verifier's trusted evaluator copy and its prepare step came from the chain head, so an
    # accepted patch to an editable module the evaluator imports graded every later claim: a null edit
    # marked MALLORY was accepted with a gain of 5, and the prepare step ran the module outside the sandbox.
    marker = tmp_path / "trojan-ran"
    track_dir = make_repo(tmp_path / "src" / "quad", {
        "params.py": "X = 3.0\nY = 2\n", "helpers.py": HELPERS, "evaluate.py": EVALUATE, "prepare.py": PREPARE,
        "overnight.toml": SPEC.format(python=sys.executable)})
    with live_hub(tmp_path) as (url, admin_token):
        admin = client(url, admin_token)
        base = publish(admin, track_dir)["head"]
        verifier = Verifier(client(url, admin.create_account("vera", "verifier")["token"]), tmp_path / "verifier",
                            unsafe_no_sandbox=sandbox_missing(), say=lambda s: None)
        mallory = client(url, client(url).register("mallory")["token"])
        clone = tmp_path / "mallory"
        fetch(mallory, "quad", clone)
        first = mallory.submit("quad", {
            "parent": base, "claimed_metric": 9.0, "idempotency_key": "mallory-0001",
            "patch": diff_of(clone, {"params.py": "X = 1.0\nY = 2\n", "helpers.py": TROJAN.format(marker=str(marker))})})
        assert verifier.run(once=True) == 1
        assert mallory.submission(first["id"])["status"] == "accepted"  # a real gain, graded honestly
        marker.unlink(missing_ok=True)  # the run and evaluator of that claim were sandboxed: nothing lands

        head = fetch(mallory, "quad", clone)["head"]
        # 0.09 worse graded honestly (a sure reject; a null edit is accepted 1 in 470), 4.9 better by the trojan
        null = mallory.submit("quad", {"parent": head, "claimed_metric": 4.0, "idempotency_key": "mallory-0002",
                                       "patch": diff_of(clone, {"params.py": "X = 1.3\nY = 2  # MALLORY\n"})})
        assert verifier.run(once=True) == 1
        sub = mallory.submission(null["id"])
        assert sub["status"] == "rejected", sub
        assert [c["seq"] for c in client(url).chain("quad")] == [0, 1]
        if not sandbox_missing():
            assert not marker.exists(), "an accepted contributor's module ran outside the sandbox"


def test_a_contributor_runs_the_chain_heads_code_in_the_sandbox(tmp_path: Path) -> None:
    # Main: `overnight contribute` ran the chain head (every accepted contributor's code) with the hosted
    # track's own sandbox setting, none by default: an accepted params.py wrote to the next contributor's
    # disk (and saw their environment) as soon as their loop measured the head.
    from test_hub_support import SetParams, make_track

    from overnight.hub.contribute import contribute

    marker = tmp_path / "pwned"
    with live_hub(tmp_path) as (url, admin_token):
        admin = client(url, admin_token)
        base = publish(admin, make_track(tmp_path / "src"))["head"]
        verifier = Verifier(client(url, admin.create_account("vera", "verifier")["token"]), tmp_path / "verifier",
                            unsafe_no_sandbox=sandbox_missing(), say=lambda s: None)
        mallory = client(url, client(url).register("mallory")["token"])
        clone = tmp_path / "mallory"
        fetch(mallory, "quad", clone)
        trojan = f"X = 1.0\nY = 2\nopen({str(marker)!r}, 'w').write('ran on your machine')\n"
        sub = mallory.submit("quad", {"parent": base, "claimed_metric": 9.0, "idempotency_key": "mallory-0003",
                                      "patch": diff_of(clone, {"params.py": trojan})})
        assert verifier.run(once=True) == 1 and mallory.submission(sub["id"])["status"] == "accepted"
        assert not marker.exists()
        alice = client(url, client(url).register("alice")["token"])
        contribute(alice, "quad", tmp_path / "alice", lambda t, tag: SetParams("X = 1.0\nY = 5\n"),
                   max_experiments=2, say=lambda s: None)
        assert not marker.exists(), "the chain head's code ran outside the sandbox on a contributor's machine"
