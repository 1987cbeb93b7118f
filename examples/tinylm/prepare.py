"""Frozen data preparation for the tinylm track.

Collects Python source text from this interpreter's standard library
(sorted *.py files, skipping test folders and site-packages) and splits it
by file, deterministically from a hash of each file's relative path, into

    $OVERNIGHT_DATA/train.bin     (~4 MB, raw bytes)
    $OVERNIGHT_HELDOUT/val.bin    (~400 KB, raw bytes; only evaluate.py reads it)

Idempotent: does nothing if both files already exist.
"""

import hashlib
import os
import sys
import sysconfig
from pathlib import Path

TRAIN_CAP = 4_000_000  # bytes
VAL_CAP = 400_000  # bytes
VAL_PERCENT = 10
SKIP_DIRS = {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
SEPARATOR = b"\n\n"


def is_val(rel: str) -> bool:
    digest = hashlib.sha256(rel.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < VAL_PERCENT


def source_files(root: Path):
    for path in sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS for part in rel.parts[:-1]):
            continue
        if not path.is_file():
            continue
        yield rel.as_posix(), path


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def main() -> int:
    try:
        data_dir = Path(os.environ["OVERNIGHT_DATA"])
        heldout_dir = Path(os.environ["OVERNIGHT_HELDOUT"])
    except KeyError as exc:
        print(f"prepare failed: environment variable {exc.args[0]} is not set", file=sys.stderr)
        return 1
    train_path = data_dir / "train.bin"
    val_path = heldout_dir / "val.bin"
    if train_path.is_file() and val_path.is_file():
        print(f"train_bytes: {train_path.stat().st_size}")
        print(f"val_bytes: {val_path.stat().st_size}")
        return 0

    root = Path(sysconfig.get_paths()["stdlib"])
    train, val = bytearray(), bytearray()
    for rel, path in source_files(root):
        if len(train) >= TRAIN_CAP and len(val) >= VAL_CAP:
            break
        bucket, cap = (val, VAL_CAP) if is_val(rel) else (train, TRAIN_CAP)
        if len(bucket) >= cap:
            continue
        try:
            text = path.read_bytes()
        except OSError:
            continue
        bucket += text + SEPARATOR
    train, val = bytes(train[:TRAIN_CAP]), bytes(val[:VAL_CAP])
    if len(train) < 200_000 or len(val) < 70_000:
        print(
            f"prepare failed: too little stdlib source under {root} "
            f"(train {len(train)} bytes, val {len(val)} bytes)",
            file=sys.stderr,
        )
        return 1

    data_dir.mkdir(parents=True, exist_ok=True)
    heldout_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(train_path, train)
    write_atomic(val_path, val)
    print(f"train_bytes: {len(train)}")
    print(f"val_bytes: {len(val)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
