import json
import subprocess
import tomllib
from pathlib import Path

from conftest import git, make_repo
from typer.testing import CliRunner

from overnight.cli import app
from overnight.core.spec import load_spec

runner = CliRunner()
GREEDY = '[policy]\nrule = "greedy"\n'

AUTORESEARCH = {
    "train.py": "LR = 0.01\nprint('val_bpb:          0.997900')\nprint('peak_vram_mb:     45060.2')\n",
    "prepare.py": "print('prepared')\n",
    "program.md": "# autoresearch\nagent instructions\n",
    "pyproject.toml": "[project]\nname = 'autoresearch'\nversion = '0'\n",
}


def test_init_detects_autoresearch(tmp_path: Path):
    d = make_repo(tmp_path / "ar", AUTORESEARCH)
    r = runner.invoke(app, ["init", str(d), "--from-autoresearch"])
    assert r.exit_code == 0, r.output
    spec = load_spec(d)
    assert spec.track.editable == ["train.py"]
    assert spec.metric.name == "val_bpb" and spec.metric.direction == "minimize"
    assert spec.run.budget_seconds == 300 and spec.prepare is not None
    assert (d / "program.md").read_text().startswith("# autoresearch")  # the user's program is kept
    again = runner.invoke(app, ["init", str(d), "--from-autoresearch"])
    assert again.exit_code == 2 and "--force" in again.output


def test_init_plain_folder_writes_spec_program_and_git(tmp_path: Path):
    d = tmp_path / "proj"
    d.mkdir()
    (d / "main.py").write_text("print('acc: 0.5')\n")
    r = runner.invoke(app, ["init", str(d), "--metric", "acc", "--direction", "maximize", "--budget", "30"])
    assert r.exit_code == 0, r.output
    data = tomllib.loads((d / "overnight.toml").read_text())
    assert data["track"]["editable"] == ["main.py"] and data["run"]["command"] == "python main.py"
    assert data["metric"] == {"name": "acc", "direction": "maximize"}
    program = (d / "program.md").read_text()
    assert "acc" in program and "`main.py`" in program and "Never stop" in program
    assert (d / ".git").is_dir()


def test_init_without_editable_file_is_a_clear_error(tmp_path: Path):
    r = runner.invoke(app, ["init", str(tmp_path)])
    assert r.exit_code == 2 and "--editable" in r.output


def test_run_results_plot_status(quad_track, tmp_path: Path):
    d = quad_track(spec_extra=GREEDY)
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "6"])
    assert r.exit_code == 0, r.output
    state = d / ".overnight"
    assert (state / "results.tsv").is_file() and (state / "progress.png").stat().st_size > 10_000
    assert str(state / "results.tsv") in " ".join(r.output.split())  # said where, not left loose in the repo
    assert git(d, "status", "--porcelain") == ""
    r = runner.invoke(app, ["results", str(d), "--format", "json"])
    rows = json.loads(r.output)
    assert len(rows) == 6 and rows[0]["description"] == "baseline"
    assert all("runs" in row and row["platform"]["key"] for row in rows)
    r = runner.invoke(app, ["results", str(d)])
    tsv_rows = r.output.strip().splitlines()
    assert len(tsv_rows) == 7
    assert tsv_rows[1:] == (state / "results.tsv").read_text().strip().splitlines()[1:]
    out = tmp_path / "p.png"
    r = runner.invoke(app, ["plot", str(d), "-o", str(out)])
    assert r.exit_code == 0 and out.read_bytes()[:4] == b"\x89PNG"
    r = runner.invoke(app, ["status", str(d)])
    assert r.exit_code == 0 and "6 experiments" in r.output and "baseline score" in r.output


def test_ideas_queue_roundtrip(quad_track):
    d = quad_track()
    assert runner.invoke(app, ["ideas", "add", "try a smaller X", str(d)]).exit_code == 0
    r = runner.invoke(app, ["ideas", "list", str(d)])
    assert "try a smaller X" in r.output
    assert runner.invoke(app, ["ideas", "drop", "1", str(d)]).exit_code == 0
    assert "try a smaller X" not in runner.invoke(app, ["ideas", "list", str(d)]).output
    assert runner.invoke(app, ["ideas", "drop", "9", str(d)]).exit_code == 1


def test_messages_print_user_text_and_section_names_literally(quad_track):
    # No [[search]] entries: the optuna proposer's error names the section; Rich must not eat it.
    d = quad_track(spec="[track]\nname = \"quad\"\neditable = [\"params.py\"]\n[run]\ncommand = \"{python} run.py\"\n"
                        "budget_seconds = 5\n[metric]\nname = \"score\"\n")
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "1"])
    assert r.exit_code != 0 and "[[search]]" in r.output, r.output


def test_crashed_baseline_is_reported_not_no_experiments(quad_track):
    d = quad_track(files={"run.py": "import sys\nsys.exit('[bold]no data[/] here')\n"})
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "1"])
    assert r.exit_code == 1
    out = " ".join(r.output.split())
    assert "no experiments yet" not in out
    assert "none kept" in out and "[bold]no data[/] here" in out and "run.log" in out
    r = runner.invoke(app, ["status", str(d)])
    assert "no experiments yet" not in r.output and "none kept" in r.output


def test_failing_prepare_is_one_line_in_the_cli(quad_track):
    d = quad_track(spec_extra='[prepare]\ncommand = "python -c \\"import tokenizer_that_is_missing\\""\n')
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "1"])
    assert r.exit_code == 1
    assert "Traceback" not in r.output and "ModuleNotFoundError" in r.output and "prepare.log" in r.output
    errors = [line for line in r.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "exited with 1" in errors[0]


def test_plot_counts_from_one_with_integer_ticks_a_noise_band_and_no_warnings(quad_track, recwarn):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.collections import PolyCollection
    from matplotlib.ticker import MaxNLocator

    from overnight.report.plot import figure
    from overnight.report.results import noise_sd
    from overnight.track import Track

    d = quad_track(sigma=0.5)
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "2"])
    assert r.exit_code == 0, r.output
    track = Track(d)
    exps = track.ledger.experiments()
    sd = noise_sd(track.ledger, exps)
    assert sd is not None and sd > 0
    fig = figure(plt, MaxNLocator, exps, "score", True, "t", sd)
    ax = fig.axes[0]
    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() and t >= 1 for t in ticks)
    assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the noise band
    assert min(ax.collections[0].get_offsets()[:, 0]) == 1  # the baseline is experiment 1, as in `#`
    plt.close(fig)
    assert not [w for w in recwarn if "matplotlib" in str(w.filename)]


def test_init_proposes_search_ranges_and_explains_the_budget(tmp_path: Path):
    d = make_repo(tmp_path / "p", {
        "train.py": "import os\nLR = 0.01\nWIDTH = 64\nUSE_BIAS = True\nNAME = 'x'\nSEED = 3\nLOG_EVERY = 10\n"
                    "budget = float(os.environ['OVERNIGHT_BUDGET_SECONDS'])\nprint('val_acc: 0.5')\n",
    })
    r = runner.invoke(app, ["init", str(d), "--probe", "--budget", "5"])
    assert r.exit_code == 0, r.output
    text = (d / "overnight.toml").read_text()
    spec = load_spec(d)  # what init wrote is a valid spec the optuna proposer can use
    by_name = {s.name: s for s in spec.search}
    assert set(by_name) == {"LR", "WIDTH", "USE_BIAS"}
    assert by_name["LR"].low < 0.01 < by_name["LR"].high and by_name["LR"].log
    assert by_name["WIDTH"].int and by_name["WIDTH"].low < 64 < by_name["WIDTH"].high
    assert by_name["USE_BIAS"].choices == [False, True]
    assert spec.metric.name == "val_acc" and spec.metric.direction == "maximize" and spec.metric.pattern is None
    assert "OVERNIGHT_BUDGET_SECONDS" in text and "/bin/sh" in text  # the contract, in the spec itself
    assert "[[search]]" in r.output  # printed literally, not eaten as markup


def test_init_probe_failure_is_one_line_with_the_log(tmp_path: Path):
    d = make_repo(tmp_path / "p", {"train.py": "raise SystemExit('needs data/train.bin')\n"})
    r = runner.invoke(app, ["init", str(d), "--probe"])
    assert r.exit_code == 2 and "needs data/train.bin" in r.output and "probe.log" in r.output
    assert not (d / "overnight.toml").exists()


def test_init_pattern_flag_is_checked_against_the_probe(tmp_path: Path):
    d = make_repo(tmp_path / "p", {"train.py": "print('epoch 3 | top1 = 71.5 %')\n"})
    r = runner.invoke(app, ["init", str(d), "--probe", "--metric", "top1", "--pattern", r"top1 = (\d+\.\d+)",
                            "--direction", "maximize"])
    assert r.exit_code == 0, r.output
    assert "top1 = 71.5" in " ".join(r.output.split())
    assert load_spec(d).metric.read("top1 = 2.5\ntop1 = 3.5") == 3.5
    bad = make_repo(tmp_path / "q", {"train.py": "print('nothing')\n"})
    r = runner.invoke(app, ["init", str(bad), "--probe", "--metric", "top1", "--pattern", r"top1 = (\d+)"])
    assert r.exit_code == 2 and "no top1 matching" in r.output


def test_moved_base_branch_is_said_and_rebase_remeasures_the_head_there(quad_track):
    d = quad_track(spec_extra=GREEDY)
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "4"])
    assert r.exit_code == 0, r.output
    from overnight.track import Track

    before = Track(d).ledger.experiments()
    tip = git(d, "rev-parse", "overnight/quad").strip()
    assert any(e.status == "keep" and e.commit == tip for e in before[1:])  # something was kept
    # The user commits a fix on their own branch: a new file the research branch lacks.
    (d / "NOTES.md").write_text("a fix\n")
    git(d, "add", "NOTES.md")
    git(d, "commit", "-qm", "user fix")
    user_head = git(d, "rev-parse", "HEAD").strip()
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "1"])
    out = " ".join(r.output.split())
    assert "1 commit(s) that the research branch overnight/quad lacks" in out and "--rebase" in out
    # Said, not done: the branch still builds on the old base (this run's own keep may have advanced it).
    tip = git(d, "rev-parse", "overnight/quad").strip()
    assert subprocess.run(["git", "merge-base", "--is-ancestor", user_head, tip], cwd=d).returncode == 1
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "1", "--rebase"])
    assert r.exit_code == 0, r.output
    new_tip = git(d, "rev-parse", "overnight/quad").strip()
    assert new_tip != tip and git(d, "merge-base", "--is-ancestor", user_head, new_tip) == ""
    # The same kept changes, now on the user's commit: the tree differs from the old tip only by the fix
    # (and by this run's own keep, if it made one after the rebase: only the editable file).
    assert set(git(d, "diff", "--name-only", tip, new_tip).split()) - {"params.py"} == {"NOTES.md"}
    track = Track(d)
    rebased = [e for e in track.ledger.experiments() if e.proposer == "rebase"]
    assert len(rebased) == 1 and rebased[0].status == "keep" and rebased[0].commit == new_tip
    assert len(track.ledger.runs(rebased[0].id)) >= 1  # measured afresh on the new base
    r = runner.invoke(app, ["run", str(d), "--max-experiments", "1"])
    assert "lacks" not in r.output


def test_help_prints_section_names_literally():
    r = runner.invoke(app, ["init", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0 and "[[search]]" in r.output


def test_init_on_a_nanogpt_layout_with_a_config_file(tmp_path: Path):
    """nanoGPT is run as `python train.py config/x.py`: the config names the dataset, the knob still gets fixed."""
    from conftest import EXAMPLES

    d = make_repo(tmp_path / "ng", {
        "train.py": "dataset = 'openwebtext'\nmax_iters = 600000\neval_interval = 2000\nlearning_rate = 6e-4\n"
                    "exec(open('configurator.py').read())\n",
        "configurator.py": (EXAMPLES / "minigpt" / "configurator.py").read_text(),
        "config/train_small.py": "dataset = 'small'\nmax_iters = 50\n",
        "data/openwebtext/prepare.py": "raise SystemExit('downloads 54 GB')\n",
        "data/small/prepare.py": "print('ok')\n",
    })
    r = runner.invoke(app, ["init", str(d), "--command", "python train.py config/train_small.py", "--metric", "val"])
    assert r.exit_code == 0, r.output
    spec = load_spec(d)
    assert spec.prepare is not None and spec.prepare.command == "python data/small/prepare.py"
    assert spec.run.command == ("python train.py config/train_small.py --max_iters=$OVERNIGHT_BUDGET_STEPS "
                                "--eval_interval=$OVERNIGHT_BUDGET_STEPS")
    assert spec.run.budget_steps == 50 and {s.name for s in spec.search} == {"learning_rate"}
