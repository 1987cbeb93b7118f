"""The ledger's schema: a ledger written by the previous release opens, upgrades and resumes; a ledger
this code cannot use is one clear error that changes nothing; the migrations match the models."""

from __future__ import annotations

import hashlib
import sqlite3
import tarfile
from pathlib import Path

import pytest
from conftest import git
from pg import pg_server, pg_url  # noqa: F401 - the throwaway PostgreSQL fixtures
from typer.testing import CliRunner

from overnight.cli import app
from overnight.core.status import FINAL
from overnight.storage import schema
from overnight.storage.ledger import Ledger, SchemaError, sqlite_url
from overnight.storage.models import Base
from overnight.track import Track

FIXTURES = Path(__file__).resolve().parent / "fixtures"
OLD = FIXTURES / "ledger-183a807.tar.gz"  # made by tests/fixtures/make_ledger_183a807.sh
cli = CliRunner()


def old_track(tmp_path: Path) -> Path:
    with tarfile.open(OLD) as tar:
        tar.extractall(tmp_path, filter="data")
    return tmp_path / "oldquad"


def version_of(db: Path) -> str | None:
    con = sqlite3.connect(db)
    try:
        has = con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (schema.VERSION_TABLE,)).fetchone()
        return con.execute(f"SELECT version_num FROM {schema.VERSION_TABLE}").fetchone()[0] if has else None
    finally:
        con.close()


def schema_diff(url: str) -> list:
    """What Alembic's autogenerate would change to make the database match the models (our tables only)."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import create_engine

    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    finally:
        engine.dispose()
    ours = set(Base.metadata.tables)
    return [d for d in diff if not (d[0] == "remove_table" and d[1].name not in ours)
            and not (d[0] == "remove_index" and d[1].table.name not in ours)]


def test_head_is_the_newest_migration() -> None:
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory(str(schema.MIGRATIONS))
    assert scripts.get_heads() == [schema.HEAD]  # one line of history, and the constant names its end
    assert {s.revision for s in scripts.walk_revisions()} == schema.known_revisions()


def test_a_fresh_ledger_is_at_head_and_matches_the_models(tmp_path: Path) -> None:
    led = Ledger.for_track(tmp_path / ".overnight")
    led.close()
    assert version_of(tmp_path / ".overnight" / "ledger.db") == schema.HEAD
    assert schema_diff(sqlite_url(tmp_path / ".overnight" / "ledger.db")) == []


def test_ledger_from_183a807_opens_upgrades_and_resumes(tmp_path: Path) -> None:
    d = old_track(tmp_path)
    db = d / ".overnight" / "ledger.db"
    assert version_of(db) is None  # the previous release kept no schema version
    before = cli.invoke(app, ["results", str(d)])
    assert before.exit_code == 0, before.output
    assert version_of(db) == schema.HEAD and schema_diff(sqlite_url(db)) == []

    old_rows = before.output.splitlines()
    assert [r.split("\t")[0] for r in old_rows[1:]] == ["23f1057", "c5f0cf6", "b906003", "69edff5"]
    assert [r.split("\t")[3] for r in old_rows[1:]] == ["keep", "discard", "keep", "running"]
    status = cli.invoke(app, ["status", str(d)], terminal_width=200)
    assert status.exit_code == 0, status.output
    assert "baseline score 12.9886 → head 4.97913 at b906003" in status.output
    assert "#4 X=0.5 (resumed by the next `overnight run`)" in status.output
    assert "2 idea(s) queued" in status.output

    track = Track(d)
    old_trials = {e.meta.get("trial") for e in track.ledger.experiments()} - {None}
    run = cli.invoke(app, ["run", str(d), "--max-experiments", "2"])
    assert run.exit_code == 0, run.output
    exps = track.ledger.experiments()
    assert [e.id for e in exps][:4] == [1, 2, 3, 4] and len(exps) >= 5
    assert exps[3].status in FINAL  # the experiment the dead loop left running was finished
    assert all(r.finished_at is not None for e in exps for r in track.ledger.runs(e.id))
    assert sum(1 for e in exps if e.meta.get("baseline")) == 1  # no second baseline: the head carried over
    new_trials = {e.meta.get("trial") for e in exps[4:]} - {None}
    assert new_trials and min(new_trials) > max(old_trials)  # the Optuna study in the same file continued
    head = [e for e in exps if e.status == "keep"][-1]
    assert git(d, "rev-parse", "overnight/oldquad").strip() == head.commit
    after = cli.invoke(app, ["results", str(d)])
    rows = after.output.splitlines()
    assert rows[:3] == old_rows[:3]  # the finished rows are as the old release wrote them
    # (the kept head is measured afresh beside the new candidates: its row gains runs, nothing else changes)
    head_old, head_new = old_rows[3].split("\t"), rows[3].split("\t")
    runs = old_rows[0].split("\t").index("runs")
    assert int(head_new[runs]) > int(head_old[runs]) and head_new[:runs] + head_new[runs + 1:] == (
        head_old[:runs] + head_old[runs + 1:])


def test_a_ledger_from_a_newer_overnight_is_one_clear_error_and_untouched(tmp_path: Path) -> None:
    d = old_track(tmp_path)
    db = d / ".overnight" / "ledger.db"
    Ledger(sqlite_url(db)).close()
    con = sqlite3.connect(db)
    con.execute(f"UPDATE {schema.VERSION_TABLE} SET version_num = '0999'")
    con.commit()
    con.close()
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    with pytest.raises(SchemaError, match="revision '0999', newer than this overnight knows"):
        Ledger(sqlite_url(db))
    r = cli.invoke(app, ["status", str(d)])
    out = r.output.replace("\n", "")  # one message, wrapped to the terminal's width
    assert r.exit_code == 2 and out.startswith("error: ") and "Traceback" not in out, r.output
    assert f"{db}: the ledger is at schema revision '0999'" in out and "upgrade overnight" in out
    assert hashlib.sha256(db.read_bytes()).hexdigest() == digest


def test_a_file_that_is_not_a_ledger_is_one_clear_error_and_untouched(tmp_path: Path) -> None:
    d = old_track(tmp_path)
    db = d / ".overnight" / "ledger.db"
    for f in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        f.unlink()
    junk = b"this is [not] a database\n" * 100
    db.write_bytes(junk)
    r = cli.invoke(app, ["status", str(d)])
    out = r.output.replace("\n", "")
    assert r.exit_code == 2 and out.startswith("error: ") and "Traceback" not in out, r.output
    assert f"{db}: cannot open the ledger: file is not a database" in out
    assert db.read_bytes() == junk


def test_postgres_ledger_migrates_and_matches_the_models(pg_url: str) -> None:  # noqa: F811
    led = Ledger(pg_url)
    try:
        e = led.add_experiment(tag="t", parent_commit="a", proposer="x", status="keep", metric=1.0)
        assert led.experiment(e.id).metric == 1.0
    finally:
        led.close()
    Ledger(pg_url).close()  # a second open finds the schema at head
    assert schema_diff(pg_url) == []



def test_reopen_orphan_ideas_only_frees_a_dead_loops_claims_without_experiments(tmp_path: Path) -> None:
    led = Ledger.for_track(tmp_path / ".overnight")
    for text in ("orphan", "became an experiment", "a verifier's", "wildcard bait", "already done"):
        led.add_idea(text)
    orphan, used, other, bait, done = (led.claim_idea(who, 3600) for who in
                                       ("loop:1a2b", "loop:1a2b", "verifier:v1", "loopX1a2b", "loop:9"))
    led.add_experiment(tag="t", parent_commit="a", proposer="llm", status="discard", idea_id=used.id)
    led.finish_idea(done.id, "done")
    assert led.reopen_orphan_ideas("loop_") == 0  # `_` is a character of the prefix, not LIKE's wildcard
    assert led.reopen_orphan_ideas("loop:") == 1
    state = {i.text: (i.status, i.lease_until) for i in led.ideas()}
    assert state["orphan"] == ("open", None)
    assert [state[t][0] for t in ("became an experiment", "a verifier's", "wildcard bait", "already done")] == \
        ["claimed", "claimed", "claimed", "done"]
    assert led.claim_idea("loop:new", 60).id == orphan.id  # back at the front of the queue
    assert led.reopen_orphan_ideas("loop:") == 1 and led.reopen_orphan_ideas("loop:") == 0
    assert {other.id, bait.id} <= {i.id for i in led.ideas({"claimed"})}
    led.close()


def test_finish_run_records_the_outcome_and_refuses_an_unknown_run(tmp_path: Path) -> None:
    led = Ledger.for_track(tmp_path / ".overnight")
    e = led.add_experiment(tag="t", parent_commit="a", proposer="x", status="running")
    r = led.add_run(experiment_id=e.id, seed=1, status="running")
    assert led.delete_unfinished_runs(exp_id=999) == 0
    done = led.finish_run(r.id, status="ok", metric=1.5, measurements={"score": 1.5}, exit_code=0)
    assert done.finished_at is not None and led.runs(e.id)[0].metric == 1.5
    assert led.delete_unfinished_runs() == 0  # a finished run is never forgotten on resume
    with pytest.raises(KeyError):
        led.finish_run(r.id + 1, status="ok")
    led.close()
