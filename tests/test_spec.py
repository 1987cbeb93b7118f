from pathlib import Path

import pytest
from typer.testing import CliRunner

from overnight.cli import app
from overnight.core.spec import SpecError, load_spec

GREEDY = '[policy]\nrule = "greedy"\n'


def test_valid_spec_loads(quad_track):
    spec = load_spec(quad_track())
    assert spec.track.editable == ["params.py"]
    assert spec.metric.direction == "minimize"
    assert spec.run.timeout_seconds == 20
    assert [p.name for p in spec.search] == ["X", "Y"]
    assert spec.better(1.0, 2.0) and not spec.better(2.0, 1.0)


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ("[run2]\nx = 1\n", "key `run2`: unknown key"),
        ("[[guard]]\nmetric = 'm'\nmax = 'lots'\n", "[[guard]] #1 max"),
        ("[[guard]]\nmetric = 'm'\n", "needs `min` or `max`"),
    ],
)
def test_bad_spec_names_file_and_key(quad_track, extra, needle):
    d = quad_track(spec_extra=extra)
    with pytest.raises(SpecError) as e:
        load_spec(d)
    assert str(d / "overnight.toml") in str(e.value)
    assert needle in str(e.value)


def test_unknown_key_inside_table(quad_track):
    d = quad_track()
    text = (d / "overnight.toml").read_text().replace("budget_seconds = 5", "budget_seconds = 5\nbudjet = 3")
    (d / "overnight.toml").write_text(text)
    with pytest.raises(SpecError, match=r"\[run\] budjet: unknown key"):
        load_spec(d)


def test_wrong_type_and_missing_command(quad_track):
    d = quad_track()
    spec = d / "overnight.toml"
    spec.write_text(spec.read_text().replace("budget_seconds = 5", 'budget_seconds = "five"'))
    with pytest.raises(SpecError, match=r"\[run\] budget_seconds: .*'five'"):
        load_spec(d)
    spec.write_text("\n".join(line for line in spec.read_text().splitlines() if not line.startswith("command")))
    with pytest.raises(SpecError, match=r"\[run\] command: required key is missing"):
        load_spec(d)


def test_globs_and_search_constants_are_checked(quad_track):
    d = quad_track()
    spec = d / "overnight.toml"
    spec.write_text(spec.read_text().replace('editable = ["params.py"]', 'editable = ["params.py", "nope/*.py"]'))
    with pytest.raises(SpecError, match="'nope/\\*.py': matches no file"):
        load_spec(d)
    spec.write_text(spec.read_text().replace(', "nope/*.py"', "").replace('name = "Y"', 'name = "Z"'))
    with pytest.raises(SpecError, match="exactly one top-level line `Z = <value>`"):
        load_spec(d)


def test_toml_syntax_error(quad_track):
    d = quad_track()
    (d / "overnight.toml").write_text("[track\nname=1")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(d)


def test_cli_bad_spec_exits_2_and_writes_nothing(quad_track):
    d = quad_track(spec_extra="[surprise]\n")
    r = CliRunner().invoke(app, ["run", str(d), "--max-experiments", "1"])
    assert r.exit_code == 2
    assert "surprise" in r.output and "unknown key" in r.output
    assert not (d / ".overnight").exists()
    assert not (d / "results.tsv").exists()


def test_missing_spec_says_how_to_start(tmp_path: Path):
    r = CliRunner().invoke(app, ["status", str(tmp_path)])
    assert r.exit_code == 2
    assert "overnight init" in r.output


def test_policy_shorthand_and_its_keys(quad_track):
    d = quad_track(spec=None)
    spec_file = d / "overnight.toml"
    spec_file.write_text('policy = "greedy"\n' + spec_file.read_text())
    assert load_spec(d).policy.rule == "greedy"
    spec_file.write_text(spec_file.read_text().replace('policy = "greedy"\n', "") + "[policy]\nalpha = 0.01\nmax_runs = 7\n")
    spec = load_spec(d)
    assert (spec.policy.rule, spec.policy.alpha, spec.policy.max_runs) == ("noise", 0.01, 7)
    spec_file.write_text(spec_file.read_text() + "rulez = 'x'\n")
    with pytest.raises(SpecError, match=r"\[policy\] rulez: unknown key"):
        load_spec(d)


# --- containment (issue 11, finding 13) --------------------------------------------------------------

EVAL_SPEC_FILES = {"evaluate.py": "print('score: 1')\n", "prep.py": "pass\n", "program.md": "# program\n",
                   "sub/tool.py": "x = 1\n"}
EVAL_SPEC = '[prepare]\ncommand = "python prep.py"\n[evaluate]\ncommand = "python3 -u evaluate.py --fast"\n'


def _with_editable(quad_track, globs: str):
    d = quad_track(files=EVAL_SPEC_FILES, spec_extra=EVAL_SPEC)
    spec = d / "overnight.toml"
    spec.write_text(spec.read_text().replace('editable = ["params.py"]', f"editable = {globs}"))
    return d


@pytest.mark.parametrize(("globs", "covered"), [
    ('["params.py", "overnight.toml"]', "overnight.toml"), ('["*.py"]', "evaluate.py"), ('["**"]', "overnight.toml"),
    ('["params.py", "prep.py"]', "prep.py"), ('["*.md", "params.py"]', "program.md"), ('["*"]', "overnight.toml"),
])
def test_editable_may_not_cover_the_spec_program_or_evaluator(quad_track, globs, covered):
    with pytest.raises(SpecError) as e:
        load_spec(_with_editable(quad_track, globs))
    assert "[track] editable" in str(e.value) and "covers" in str(e.value) and covered in str(e.value)


def test_editable_may_still_name_other_files(quad_track):
    assert load_spec(_with_editable(quad_track, '["params.py", "sub/*.py", "run.py"]')).track.editable[1] == "sub/*.py"


@pytest.mark.parametrize("value", ["inf", "nan", "-5", "0", "-inf"])
def test_budget_must_be_finite_and_positive(quad_track, value):
    d = quad_track()
    spec = d / "overnight.toml"
    spec.write_text(spec.read_text().replace("budget_seconds = 5", f"budget_seconds = {value}"))
    with pytest.raises(SpecError, match=r"\[run\] budget_seconds"):
        load_spec(d)


def test_a_spec_that_is_not_utf8_is_a_clear_error(quad_track):
    d = quad_track()
    spec = d / "overnight.toml"
    spec.write_bytes(spec.read_bytes().replace(b'name = "quad"', b'name = "qu\xe9ad"'))
    with pytest.raises(SpecError, match="not UTF-8 text"):
        load_spec(d)
    r = CliRunner().invoke(app, ["status", str(d)])
    assert r.exit_code == 2 and "not UTF-8" in r.output and "Traceback" not in r.output


def test_cli_prints_section_names_and_user_text_literally(quad_track):
    d = quad_track()
    spec = d / "overnight.toml"
    spec.write_text(spec.read_text().replace('direction = "minimize"', "").replace(
        'name = "score"', 'name = "score"\ndirection = "[/x] [bold]up"'))
    r = CliRunner().invoke(app, ["status", str(d)])
    assert r.exit_code == 2, r.output
    assert "[metric] direction" in r.output and "[/x] [bold]up" in r.output
    assert "Traceback" not in r.output and r.exception is None or isinstance(r.exception, SystemExit)


def test_program_and_budget_flag_are_checked(quad_track):
    from typer.testing import CliRunner

    from overnight.cli import app

    d = quad_track()
    r = CliRunner().invoke(app, ["run", str(d), "--budget", "inf", "--max-experiments", "1"])
    assert r.exit_code == 2 and "--budget must be a positive number" in r.output
    (d / "program.md").write_bytes(b"# caf\xe9\n")
    r = CliRunner().invoke(app, ["status", str(d)])
    assert r.exit_code == 2 and "not UTF-8" in r.output and "Traceback" not in r.output
