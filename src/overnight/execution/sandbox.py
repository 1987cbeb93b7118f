"""The bubblewrap sandbox for untrusted runs, smoke checks and evaluators (and agent CLIs).

Inside: a read-only system (/usr, /bin, /lib*, /etc, the Python installation), a private /tmp
and /dev, no network (own network namespace; the host's interfaces are hidden from /sys too),
own PID/IPC/UTS namespaces, no capabilities, kernel symbols and modules blanked, and writable
only the paths given (the worktree and its artifacts folder). Nothing else is mounted: not the
user's home, not the track's `.overnight` state (ledger, other worktrees, held-out data),
unless a path under it is passed explicitly. The environment is an allow-list (`ALLOWED_ENV`
plus a track's `[run] pass_env`). Processes and file sizes are capped with prlimit, and the
process count and memory by the run's cgroup (which binds root too; see limits.py). A missing
bwrap is an error, never a silent run without a sandbox.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import sys
from pathlib import Path

from overnight.execution.process import MARKER

SYSTEM_DIRS = ["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/opt", "/sys"]  # /etc: see below
MAX_PROCESSES = 4096  # RLIMIT_NPROC counts all of the user's processes, not only the sandbox's
MAX_FILE_BYTES = 16 * 2**30  # a single file a run may write (checkpoints fit; a disk-filling loop stops)
# Names a sandboxed process may inherit; everything else (DATABASE_URL, *_PASS, GH_PAT, ...) is dropped.
ALLOWED_ENV = ["PATH", "LANG", "LANGUAGE", "LC_*", "TERM", "TZ", "COLUMNS", "LINES", "PYTHONUNBUFFERED",
               "PYTHONHASHSEED", "PYTHONDONTWRITEBYTECODE", "VIRTUAL_ENV", "LD_LIBRARY_PATH", "OVERNIGHT_*",
               "CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "NVIDIA_VISIBLE_DEVICES", "NVIDIA_DRIVER_CAPABILITIES",
               "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
               "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS", "TORCH_NUM_THREADS", "TOKENIZERS_PARALLELISM",
               "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "TORCH_FORCE_WEIGHTS_ONLY_LOAD"]
# Host facts a candidate has no business reading: network interfaces, kernel symbols and modules.
# (/sys/module stays: GPU drivers' user-space libraries read it.)
HIDDEN_DIRS = ["/sys/class/net", "/sys/devices/virtual/net", "/sys/kernel", "/sys/firmware", "/sys/fs/bpf"]
HIDDEN_FILES = ["/proc/kallsyms", "/proc/modules", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                "/proc/sys/kernel/random/boot_id"]
SECRET_PATTERNS = ["*_API_KEY", "*API_KEY*", "*TOKEN*", "*SECRET*", "*PASSWORD*", "*PASSWD*", "*CREDENTIAL*",
                   "*_KEY", "AWS_*", "SSH_*", "GPG_*", "*_AUTH*", "*COOKIE*", "*SESSION*"]
# /etc is shown by allow-list: it holds other programs' credentials in places no list can name (pip.conf,
# npmrc, apt/auth.conf.d, kubernetes/admin.conf, gitlab-runner/config.toml, wireguard/, letsencrypt/, ...).
# What runs need: the linker, users and names, time, certificates, locales, alternatives (cc, awk), GPU
# vendor files, Python's and perl's own config, fonts.
ETC_ALLOWED = ["ld.so.cache", "ld.so.conf", "ld.so.conf.d", "ld.so.preload", "passwd", "group", "nsswitch.conf",
               "hosts", "host.conf", "hostname", "resolv.conf", "gai.conf", "protocols", "services", "networks",
               "localtime", "timezone", "ssl/certs", "ssl/openssl.cnf", "ca-certificates", "ca-certificates.conf",
               "pki/tls/certs", "pki/ca-trust", "crypto-policies", "alternatives", "os-release", "lsb-release",
               "debian_version", "redhat-release", "system-release", "python3*", "perl", "fonts", "mime.types",
               "mailcap", "magic", "magic.mime", "locale.alias", "locale.conf", "locale.gen", "default/locale",
               "OpenCL", "vulkan", "nvidia", "glvnd", "egl", "gitconfig", "inputrc", "terminfo", "shells",
               "matplotlibrc", "ImageMagick-*", "java-*", "R", "texmf"]
KEEP = {MARKER}  # the harness's own run marker is not a secret and finds strays after a crash
INSTALL_HINT = ("bubblewrap (`bwrap`) is not installed, and this track asks for a sandbox "
                "([run] sandbox = \"bubblewrap\" or --sandbox). Install it: `sudo apt-get install bubblewrap` "
                "(Debian/Ubuntu), `sudo dnf install bubblewrap` (Fedora), then run again. overnight never "
                "runs a sandboxed track without the sandbox.")


class SandboxError(RuntimeError):
    """The sandbox cannot be set up; the message says what to install or fix."""


def is_secret(name: str) -> bool:
    up = name.upper()
    return up not in KEEP and any(fnmatch.fnmatchcase(up, p) for p in SECRET_PATTERNS)


def allowed(name: str, extra: list[str] | tuple[str, ...] = ()) -> bool:
    """On the allow-list (and not secret-looking), or named by the track itself in `[run] pass_env`."""
    if name in extra:
        return True
    up = name.upper()
    return any(fnmatch.fnmatchcase(up, p) for p in ALLOWED_ENV) and not is_secret(name)


def clean_env(env: dict[str, str], extra: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The allow-listed part of `env`, with HOME and TMPDIR pointing into the sandbox's private /tmp."""
    out = {k: v for k, v in env.items() if allowed(k, extra)}
    out.update(HOME="/tmp", TMPDIR="/tmp")
    return out


def _python_roots() -> list[Path]:
    """The running Python's installation and venv, which a `python ...` run command needs. A Python
    installed into the home folder itself (`./configure --prefix=$HOME`, an in-tree build run from
    ~/cpython) shows only its own folders, never the home around them (~/.ssh, ~/.aws, ~/.netrc)."""
    roots = {Path(sys.prefix), Path(sys.base_prefix), Path(sys.executable).resolve().parent.parent}
    home = Path(os.path.expanduser("~")).resolve()
    out: set[Path] = set()
    for r in roots:
        if str(r) in ("/", "/usr"):
            continue
        if r == home or r in home.parents:
            exe = Path(sys.executable).resolve().parent
            out |= {p for p in (r / "bin", r / "lib", r / "lib64", r / "include") if p.is_dir()}
            out |= {exe} if home in exe.parents else set()
        else:
            out.add(r)
    return sorted(out)


def _interface_dirs() -> list[str]:
    """Where each host network interface really lives in /sys (a physical NIC is under its PCI device)."""
    net = Path("/sys/class/net")
    try:
        return sorted({str(p.resolve().parent) for p in net.iterdir() if not str(p.resolve()).startswith("/sys/devices/virtual")})
    except OSError:
        return []


def _tool(name: str) -> str:
    path = shutil.which(name) or next((p for p in (f"/usr/bin/{name}", f"/bin/{name}") if Path(p).exists()), None)
    if path is None:
        raise SandboxError(INSTALL_HINT if name == "bwrap" else
                           f"`{name}` is missing (it is part of util-linux: `sudo apt-get install util-linux`)")
    return path


def require() -> None:
    """Raise SandboxError (saying how to install) when bwrap or prlimit is missing."""
    _tool("bwrap")
    _tool("prlimit")


def system_binds() -> list[str]:
    """bwrap arguments showing the system read-only: the system folders whole, /etc by its allow-list."""
    argv: list[str] = []
    for d in SYSTEM_DIRS:
        if d != "/etc":
            argv += ["--ro-bind-try", d, d]
    etc = Path("/etc")
    for entry in sorted({p for pattern in ETC_ALLOWED for p in etc.glob(pattern)}):
        argv += ["--ro-bind-try", str(entry), str(entry)]
    return argv


def _bound(p: Path) -> bool:
    """Whether `p` lies strictly inside a folder the sandbox shows whole (a system folder, the Python roots)."""
    roots = [Path(d) for d in SYSTEM_DIRS] + _python_roots()
    return any(r in p.parents for r in roots)


def wrap(command: str, *, workdir: Path, writable: list[Path], readonly: list[Path],
         hidden: list[Path] = (), max_processes: int = MAX_PROCESSES, private: list[Path] = ()) -> list[str]:
    """The argv that runs the shell `command` in `workdir` inside the sandbox (`readonly` after `writable`).

    `private` folders (the track's repository and git dir: its state, ledger, held-out data) are emptied
    before anything is bound, so a track kept under /opt is not shown whole by the system binds; the
    paths given in `writable` and `readonly` are then bound over the empty folder."""
    bwrap, prlimit = _tool("bwrap"), _tool("prlimit")
    argv = [bwrap, "--unshare-all", "--die-with-parent", "--new-session", "--cap-drop", "ALL", *system_binds()]
    # The private /tmp comes before the binds below: a venv or worktree under /tmp must stay visible.
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    for p in private:
        if _bound(Path(p).resolve()):
            argv += ["--tmpfs", str(Path(p).resolve())]
    for d in HIDDEN_DIRS + _interface_dirs():
        if Path(d).is_dir():
            argv += ["--tmpfs", d]
    for f in HIDDEN_FILES:
        if Path(f).is_file():
            argv += ["--ro-bind", "/dev/null", f]
    for root in _python_roots():
        argv += ["--ro-bind-try", str(root), str(root)]
    for dev in sorted(Path("/dev").glob("nvidia*")) + [Path("/dev/dri")]:  # GPUs stay usable
        if dev.exists():
            argv += ["--dev-bind", str(dev), str(dev)]
    for p in writable:
        Path(p).mkdir(parents=True, exist_ok=True)
        argv += ["--bind", str(Path(p).resolve()), str(Path(p).resolve())]
    for p in readonly:  # after the writable ones: a read-only path inside a writable one stays read-only
        argv += ["--ro-bind-try", str(Path(p).resolve()), str(Path(p).resolve())]
    for p in hidden:  # under a writable or readable path, yet not to be seen (e.g. the repo's git dir)
        if Path(p).exists():
            argv += ["--tmpfs", str(Path(p).resolve())] if Path(p).is_dir() else ["--ro-bind", "/dev/null", str(p)]
    argv += ["--chdir", str(Path(workdir).resolve())]
    argv += ["--", prlimit, f"--nproc={max_processes}", f"--fsize={MAX_FILE_BYTES}", "--", "/bin/sh", "-c", command]
    return argv


def check() -> str:
    """Run a trivial command in the sandbox; '' when it works, else why not (for diagnostics)."""
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        try:
            argv = wrap("true", workdir=Path(d), writable=[Path(d)], readonly=[])
        except SandboxError as e:
            return str(e)
        res = subprocess.run(argv, capture_output=True, text=True, timeout=30)
        return "" if res.returncode == 0 else f"bwrap failed ({res.returncode}): {res.stderr.strip()}"
