"""The door, tokens, reputation and migrations, without a server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import inspect

from overnight.hub import reputation
from overnight.hub.auth import RateLimiter, hash_token, new_token
from overnight.hub.door import DoorError, check_patch
from overnight.hub.service import Hub

EDITABLE = ["params.py", "src/**/*.py"]


def diff(path: str, body: str = "@@ -1 +1 @@\n-X = 3.0\n+X = 1.0\n", header: str = "") -> str:
    return f"diff --git a/{path} b/{path}\n{header}index 1..2 100644\n--- a/{path}\n+++ b/{path}\n{body}"


def test_door_accepts_an_editable_change() -> None:
    assert check_patch(diff("params.py") + diff("src/a/b.py"), EDITABLE) == ["params.py", "src/a/b.py"]


@pytest.mark.parametrize("patch,reason", [
    (diff("evaluate.py"), "frozen"),
    (diff("../params.py"), "traversal"),
    ("diff --git a//etc/passwd b//etc/passwd\n", "traversal"),
    (diff("params.py", header="new file mode 120000\n"), "symlinks"),
    (diff("params.py", header="new mode 160000\n"), "submodules"),
    ("diff --git a/params.py b/params.py\nindex 1..2\nGIT binary patch\nliteral 3\n", "binary"),
    ("diff --git a/params.py b/params.py\nBinary files a/params.py and b/params.py differ\n", "binary"),
    ("diff --git a/params.py b/run.py\nsimilarity index 90%\nrename from params.py\nrename to run.py\n", "frozen"),
    (diff("params.py", body="@@ -1 +1 @@\n-X\n+\0\n"), "binary"),
    (diff("params.py", body="@@ -1 +1 @@\n+" + "x" * 70_000 + "\n"), "limit"),
    ("just some text\n", "not a git diff"),
    (diff(".git/config"), "frozen"),
])
def test_door_refuses_with_a_reason(patch: str, reason: str) -> None:
    with pytest.raises(DoorError) as e:
        check_patch(patch, EDITABLE + [".git/*"] if ".git/" in patch else EDITABLE)
    assert reason in str(e.value) or (reason == "frozen" and "git internals" in str(e.value))


def test_door_ignores_hunk_lines_that_look_like_headers() -> None:
    body = "@@ -1 +1 @@\n--- removed comment line\n+++ added comment line\n"
    assert check_patch(diff("params.py", body=body), EDITABLE) == ["params.py"]


def test_tokens_are_random_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and len(a) > 40 and hash_token(a) != a and len(hash_token(a)) == 64


def test_rate_limiter_refuses_over_the_burst() -> None:
    rl = RateLimiter(rate=0.001, burst=3)
    assert [rl.allow("t") for _ in range(4)] == [True, True, True, False]
    assert rl.allow("other")


def test_trust_grows_with_streak_and_orders_the_queue() -> None:
    assert reputation.trust(0) == 0.5 and reputation.trust(3) > reputation.trust(1) and reputation.trust(50) <= 1
    assert reputation.priority(5) > reputation.priority(0)  # trust orders the queue; claimed gains do not
    assert reputation.tier({"gpu": "H100", "gpu_count": 8}) == "8x H100"
    assert reputation.tier({"machine": "x86_64"}) == "cpu x86_64"


def test_migrations_use_their_own_version_table_and_rerun_cleanly(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = Hub(url, tmp_path)
    token = hub.start()
    assert token and (tmp_path / "admin.token").read_text().strip() == token
    assert oct((tmp_path / "admin.token").stat().st_mode)[-3:] == "600"
    hub.db.dispose()
    again = Hub(url, tmp_path)
    assert again.start() is None  # second start: same schema, admin exists, no new token
    again.db.dispose()
    tables = set(inspect(hub.db.engine).get_table_names())
    assert "overnight_hub_version" in tables and "alembic_version" not in tables
    assert {"hub_accounts", "hub_tracks", "hub_chain", "hub_submissions"} <= tables
    with hub.db.engine.connect() as c:
        assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert hub.caller(token).role == "admin"


def test_door_reads_traditional_hunks_the_way_git_apply_does() -> None:
    """Issue 11 #7: a `---`/`+++` hunk without a `diff --git` header, for an ignored path under .overnight/,
    passed the door (it read only `diff --git` headers) and entered the chain through `git apply --cached`."""
    sneaky = (diff("params.py") + "--- a/.overnight/data/heldout/labels.txt\n+++ b/.overnight/data/heldout/"
              "labels.txt\n@@ -0,0 +1 @@\n+attacker labels\n")
    with pytest.raises(DoorError, match=r"\.overnight/data/heldout/labels\.txt: frozen"):
        check_patch(sneaky, EDITABLE)
    alone = "--- a/evaluate.py\n+++ b/evaluate.py\n@@ -0,0 +1 @@\n+print('score: -1')\n"
    with pytest.raises(DoorError):
        check_patch(alone, EDITABLE)


def test_a_second_hub_process_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    hub = Hub(url, tmp_path)
    hub.start()
    code = f"from overnight.hub.service import Hub; Hub({url!r}, {str(tmp_path)!r}).start()"
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode != 0 and "SQLite serves one hub process" in p.stderr, p.stderr[-500:]
    hub.db.dispose()
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60).returncode == 0
