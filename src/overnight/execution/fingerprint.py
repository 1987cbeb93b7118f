"""The platform fingerprint: results from different hardware are never compared as if equal."""

from __future__ import annotations

import hashlib
import json
import os
import platform as _platform
import shutil
import subprocess
import sys
from functools import cache
from importlib import metadata


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return _platform.processor() or _platform.machine()


def nvidia_smi(query: str, timeout: float = 10) -> list[str]:
    """Lines of `nvidia-smi --query-…` (csv, no header, no units); [] without a GPU or on any failure."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(["nvidia-smi", query, "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=timeout).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


def _gpus() -> list[str]:
    return nvidia_smi("--query-gpu=name")


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@cache
def fingerprint() -> dict:
    gpus = _gpus()
    fp = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count() or 1,
        "machine": _platform.machine(),
        "os": _platform.system(),
        "gpu": gpus[0] if gpus else None,
        "gpu_count": len(gpus),
        "python": ".".join(map(str, sys.version_info[:3])),
        "torch": _version("torch"),
    }
    fp["key"] = key(fp)
    return fp


def key(fp: dict) -> str:
    """What must match for two results to be comparable: hardware and the numeric stack."""
    parts = {k: fp.get(k) for k in ("cpu", "cores", "gpu", "gpu_count", "python", "torch")}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:12]


def describe(fp: dict) -> str:
    hw = f"{fp['gpu_count']}x {fp['gpu']}" if fp.get("gpu") else f"{fp['cores']}x {fp['cpu']}"
    sw = f"py{fp['python']}" + (f" torch{fp['torch']}" if fp.get("torch") else "")
    return f"{hw}, {sw}"
