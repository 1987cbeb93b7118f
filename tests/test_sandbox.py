"""The bubblewrap sandbox, for real: what a run can and cannot see, write, reach or read."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from overnight.execution import sandbox
from overnight.execution.process import MARKER

needs_bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")


@pytest.fixture
def state(tmp_path: Path) -> dict[str, Path]:
    """A track-like state folder: two worktrees, artifacts, public and held-out data, a ledger."""
    s = tmp_path / "track" / ".overnight"
    paths = {"wt": s / "worktrees" / "a", "other": s / "worktrees" / "b", "art": s / "runs" / "1" / "0" / "artifacts",
             "public": s / "data" / "public", "heldout": s / "data" / "heldout"}
    for p in paths.values():
        p.mkdir(parents=True)
    (paths["heldout"] / "answers.txt").write_text("the held-out labels\n")
    (paths["public"] / "train.txt").write_text("public data\n")
    (paths["other"] / "secret.py").write_text("x = 1\n")
    (s / "ledger.db").write_text("ledger")
    paths["state"] = s
    return paths


def run_in(state: dict[str, Path], command: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = sandbox.wrap(command, workdir=state["wt"], writable=[state["wt"], state["art"]],
                        readonly=[state["public"]])
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=state["wt"],
                          env=sandbox.clean_env(env if env is not None else dict(os.environ)))


def test_missing_bwrap_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(sandbox.shutil, "which", lambda name: None)
    monkeypatch.setattr(sandbox.Path, "exists", lambda self: False)
    with pytest.raises(sandbox.SandboxError, match="apt-get install bubblewrap"):
        sandbox.wrap("true", workdir=tmp_path, writable=[tmp_path], readonly=[])


def test_env_scrubbed_of_secrets():
    env = sandbox.clean_env({"OPENAI_API_KEY": "sk", "GITHUB_TOKEN": "t", "DB_PASSWORD": "p", "MY_SECRET": "s",
                             "AWS_ACCESS_KEY_ID": "a", "PATH": "/usr/bin", MARKER: "m", "LANG": "C.UTF-8"})
    assert env == {"PATH": "/usr/bin", MARKER: "m", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp"}


@needs_bwrap
def test_sandbox_works_here():
    assert sandbox.check() == ""


@needs_bwrap
def test_filesystem_view(state):
    res = run_in(state, "ls -a ../; cat ../../data/public/train.txt; echo ok > out.txt; echo art > "
                        f"{state['art']}/a.txt; python -c 'import sys; print(\"python\", sys.version_info[0])'")
    assert res.returncode == 0, res.stderr
    assert "public data" in res.stdout and "python 3" in res.stdout
    assert "b" not in res.stdout.split()  # the other worktree is not mounted
    assert (state["wt"] / "out.txt").read_text() == "ok\n" and (state["art"] / "a.txt").exists()


@needs_bwrap
@pytest.mark.parametrize("path_key,name", [("heldout", "answers.txt"), ("other", "secret.py"), ("state", "ledger.db")])
def test_hidden_paths(state, path_key, name):
    res = run_in(state, f"cat {state[path_key] / name}")
    assert res.returncode != 0 and "No such file" in res.stderr


@needs_bwrap
@needs_bwrap
def test_credential_files_are_blanked(state):
    if not Path("/etc/shadow").exists():
        pytest.skip("no /etc/shadow here")
    res = run_in(state, "cat /etc/shadow; ls /etc/ssh 2>&1 | wc -l")
    assert "root:" not in res.stdout


def test_home_is_not_visible(state):
    home = Path.home()
    res = run_in(state, f"ls -a {home}")
    assert not ({".bashrc", ".profile", ".ssh", ".cache"} & set(res.stdout.split()))


@needs_bwrap
def test_writes_outside_do_not_land(state, tmp_path):
    target = tmp_path / "escaped.txt"
    res = run_in(state, f"echo x > {target}; echo y > /usr/escaped.txt; echo z > {state['heldout']}/poison")
    assert "Read-only" in res.stderr
    assert not target.exists() and not Path("/usr/escaped.txt").exists()
    assert not (state["heldout"] / "poison").exists()


@needs_bwrap
def test_no_network(state):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        res = run_in(state, f"python -c \"import socket; socket.create_connection(('127.0.0.1', {port}), 2); "
                            "print('connected')\"")
    finally:
        server.close()
    assert "connected" not in res.stdout and res.returncode != 0


@needs_bwrap
def test_limits_and_secrets(state):
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-xyz", "HF_TOKEN": "hf_abc"}
    res = run_in(state, "env; cat /proc/self/limits", env)
    assert "sk-ant-xyz" not in res.stdout and "hf_abc" not in res.stdout
    limits = {line[:26].strip(): line[26:].split() for line in res.stdout.splitlines() if line.startswith("Max ")}
    assert limits["Max processes"][0] == str(sandbox.MAX_PROCESSES)
    assert limits["Max file size"][0] == str(sandbox.MAX_FILE_BYTES)


@needs_bwrap
def test_a_python_install_under_tmp_stays_visible(state, tmp_path, monkeypatch):
    # A venv under /tmp (a CI clone, say) must survive the sandbox's private /tmp.
    root = tmp_path / "venv"
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "marker").write_text("venv here\n")
    monkeypatch.setattr(sandbox, "_python_roots", lambda: [root])
    res = run_in(state, f"cat {root}/bin/marker")
    assert res.returncode == 0 and res.stdout == "venv here\n", res.stderr


def test_env_is_an_allow_list():
    leaky = {"DATABASE_URL": "postgres://u:pw@db", "REDIS_URL": "redis://:pw@r", "SENTRY_DSN": "https://k@s/1",
             "PIP_INDEX_URL": "https://u:pw@pypi/simple", "GH_PAT": "ghp_x", "CI_JOB_JWT": "eyJ", "DEPLOY_PASS": "pw",
             "OVERNIGHT_HUB_TOKEN": "t", "LC_ALL": "C", "CUDA_VISIBLE_DEVICES": "0", "MY_SETTING": "1"}
    env = sandbox.clean_env(leaky)
    assert env == {"LC_ALL": "C", "CUDA_VISIBLE_DEVICES": "0", "HOME": "/tmp", "TMPDIR": "/tmp"}
    assert sandbox.clean_env(leaky, ["MY_SETTING"])["MY_SETTING"] == "1"  # a track's [run] pass_env


@needs_bwrap
def test_host_interfaces_and_kernel_symbols_are_hidden(state):
    physical = [str(p.resolve()) for p in Path("/sys/class/net").iterdir()
                if not str(p.resolve()).startswith("/sys/devices/virtual")] if Path("/sys/class/net").is_dir() else []
    seen = "".join(f"test -e {p} && echo seen {p}; " for p in physical)
    res = run_in(state, f"ls -A /sys/class/net | wc -w; {seen}wc -c < /proc/kallsyms 2>/dev/null || echo 0")
    assert res.stdout.split() == ["0", "0"], res.stdout
