"""The bubblewrap sandbox for coding-agent CLIs: the network stays, the filesystem goes.

An agent CLI needs its API, so the network namespace is shared; everything else is
private. It sees the system read-only, its own installation read-only, its worktree and
a per-proposal folder (the prompt, its private logs) writable, and under $HOME only its
own config and cache folders: not the track's `.overnight` state (ledger, held-out data,
other worktrees), not the repository's git dir, not the rest of the home folder.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Sequence
from pathlib import Path

from overnight.execution.sandbox import SYSTEM_DIRS, SandboxError, _python_roots, _tool, system_binds

INSTALL_HINT = ("bubblewrap (`bwrap`) is not installed, and --sandbox asks for the agent CLI to run in it. "
                "Install it: `sudo apt-get install bubblewrap` (Debian/Ubuntu), `sudo dnf install bubblewrap` "
                "(Fedora), then run again; overnight never runs a sandboxed agent without the sandbox.")


FALLBACK = ("/usr/bin/bwrap", "/bin/bwrap")
RESOLVER_FILES = ("/etc/resolv.conf", "/etc/hosts")  # where distributions put it, when PATH is bare


def require() -> None:
    """Raise SandboxError saying how to install bwrap when it is missing."""
    if shutil.which("bwrap") is None and not any(Path(p).exists() for p in FALLBACK):
        raise SandboxError(INSTALL_HINT)


def _is_system(p: Path) -> bool:
    return any(p == Path(d) or Path(d) in p.parents for d in SYSTEM_DIRS)


def install_roots(executable: str, path_env: str) -> list[Path]:
    """The folders a CLI runs from: its npm prefix or virtualenv (and that venv's Python), else its folder."""
    found = shutil.which(executable, path=path_env)
    if found is None:
        return []
    roots: list[Path] = []
    for p in {Path(found).absolute(), Path(found).resolve()}:
        for anc in p.parents:
            if anc.name == "node_modules":
                roots.append(anc.parent)
                break
            cfg = anc / "pyvenv.cfg"
            if cfg.is_file():
                roots.append(anc)
                for line in cfg.read_text(errors="replace").splitlines():
                    key, _, value = line.partition("=")
                    if key.strip() == "home" and value.strip():
                        roots.append(Path(value.strip()).resolve().parent)
                break
        else:
            roots.append(p.parent)
    return [r for r in dict.fromkeys(roots) if not _is_system(r) and r != Path("/")]


def first_program(command: str) -> str | None:
    """The program a shell command starts (after `VAR=value` assignments), or None."""
    try:
        words = shlex.split(command)
    except ValueError:
        return None
    for w in words:
        if "=" in w and not w.startswith(("/", ".")) and w.split("=", 1)[0].isidentifier():
            continue
        return None if w in ("(", "{", "exec", "env") else w
    return None


def wrap(command: str, *, workdir: Path, writable: list[Path], readonly: list[Path], home: Path,
         home_paths: list[Path], sealed: Sequence[Path] = (), hidden: Sequence[Path] = ()) -> list[str]:
    """The argv that runs the shell `command` in `workdir` with the network but a minimal filesystem.

    `home_paths` (under `home`) are the CLI's own config folders: bound writable, created when missing
    (a file that does not exist yet is left out; the CLI writes it into the throwaway home). `sealed`
    files inside the writable paths are bound read-only over them; `hidden` folders (the track's state,
    the git dir) are emptied even where a bound parent (a track under /opt) would show them.
    """
    bwrap = _tool("bwrap")
    argv = [bwrap, "--unshare-all", "--share-net", "--die-with-parent", "--new-session", "--cap-drop", "ALL"]
    argv += system_binds()  # /etc by allow-list, like a run's sandbox
    # Private /tmp and home first: the binds below (a worktree under /tmp, a config under ~) go on top.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    if not _is_system(home) and home != Path("/"):
        argv += ["--tmpfs", str(home)]
    for p in hidden:
        argv += ["--tmpfs", str(Path(p).resolve())]
    for root in _python_roots():
        argv += ["--ro-bind-try", str(root), str(root)]
    for f in RESOLVER_FILES:  # a resolv.conf linked into /run (systemd-resolved): its target, or no DNS
        real = Path(f).resolve()
        if real != Path(f) and real.exists() and not _is_system(real):
            argv += ["--ro-bind", str(real.parent), str(real.parent)]
    for p in readonly:
        argv += ["--ro-bind-try", str(Path(p).resolve()), str(Path(p).resolve())]
    for p in home_paths:
        if not p.exists() and not p.suffix and not p.name.endswith(".json"):
            p.mkdir(parents=True, exist_ok=True)  # kept between proposals: logins, caches
        if p.exists():
            argv += ["--bind", str(p), str(p)]
    for p in writable:
        Path(p).mkdir(parents=True, exist_ok=True)
        argv += ["--bind", str(Path(p).resolve()), str(Path(p).resolve())]
    for p in sealed:
        argv += ["--ro-bind", str(Path(p).resolve()), str(Path(p).resolve())]
    argv += ["--setenv", "TMPDIR", "/tmp", "--chdir", str(Path(workdir).resolve())]
    argv += ["--", "/bin/sh", "-c", command]
    return argv


def config_paths(home: Path, names: tuple[str, ...], env_vars: tuple[str, ...], env: dict[str, str]) -> list[Path]:
    """The CLI's own config locations: the `names` under home, and folders the environment moves them to."""
    out = [home / n for n in names]
    out += [Path(env[v]) for v in env_vars if env.get(v)]
    return [p for p in dict.fromkeys(out) if p != home and p != Path("/")]


def home_of(env: dict[str, str]) -> Path:
    return Path(env.get("HOME") or os.path.expanduser("~"))
