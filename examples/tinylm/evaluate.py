"""Frozen evaluator for the tinylm track.

Loads the self-contained model written by train.py ($OVERNIGHT_ARTIFACTS/
model.json + the torch.export program it names; train.py is never imported)
and computes bits per byte on a fixed prefix of $OVERNIGHT_HELDOUT/val.bin,
in non-overlapping windows of the model's context length. Before scoring it
checks that the model is causal (predictions at a position must not depend
on later bytes), otherwise it could read the answers from its input.

The artifact is hostile input: torch.export.load falls back to a full unpickle
of parts of the archive, which would run code the candidate put there inside
this trusted process. TORCH_FORCE_WEIGHTS_ONLY_LOAD makes every torch.load in
the process a weights-only load (tensors and plain containers, no code), so a
pickle with code is refused as an invalid artifact.

Prints `val_bpb: <float>`; exits 1 with a one-line reason on stderr if the
artifact is missing or invalid.
"""

import json
import math
import os
import sys
import time
from pathlib import Path

STARTED = time.perf_counter()  # eval_seconds counts importing torch: most of this process's time
os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"  # before torch is imported: no unpickling of artifacts

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

EVAL_BYTES = 32_768  # fixed prefix of val.bin that is scored
VOCAB_SIZE = 256
MAX_CONTEXT = 4096
BATCH = 32
CAUSAL_TOLERANCE = 1e-3


class EvalError(Exception):
    pass


def load_model(art_dir: Path):
    meta_path = art_dir / "model.json"
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError:
        raise EvalError(f"missing artifact {meta_path}") from None
    except (OSError, ValueError) as exc:
        raise EvalError(f"unreadable {meta_path}: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != "torch.export":
        raise EvalError('model.json must have "format": "torch.export"')
    context = meta.get("context")
    if isinstance(context, bool) or not isinstance(context, int) or not 2 <= context <= MAX_CONTEXT:
        raise EvalError(f"model.json context must be an int in [2, {MAX_CONTEXT}], got {context!r}")
    if meta.get("vocab_size") != VOCAB_SIZE:
        raise EvalError(f"model.json vocab_size must be {VOCAB_SIZE}")
    name = meta.get("model_file")
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".pt2"):
        raise EvalError("model.json model_file must be a plain file name ending in .pt2")
    model_path = art_dir / name
    if not model_path.is_file():
        raise EvalError(f"missing artifact {model_path}")
    try:
        model = torch.export.load(str(model_path)).module()
    except Exception as exc:  # any load failure is an invalid artifact
        raise EvalError(f"cannot load {name}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    return model, context


def forward(model, x):
    try:
        with torch.no_grad():
            logits = model(x)
    except Exception as exc:  # a crashing model is an invalid artifact
        raise EvalError(
            f"model failed on input {tuple(x.shape)}: {type(exc).__name__}".splitlines()[0]
        ) from None
    if not isinstance(logits, torch.Tensor) or logits.shape != (*x.shape, VOCAB_SIZE):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise EvalError(f"model output must have shape {(*x.shape, VOCAB_SIZE)}, got {got}")
    logits = logits.float()
    if not torch.isfinite(logits).all():
        raise EvalError("model produced non-finite logits")
    return logits


def check_causal(model, windows):
    """Predictions up to position t must not change when bytes after t change."""
    x = windows[:8]
    other = windows.roll(1, dims=0)[:8]
    context = x.shape[1]
    base = forward(model, x)
    for t in sorted({0, context // 4, context // 2, context - 2}):
        probe = x.clone()
        probe[:, t + 1 :] = other[:, t + 1 :]
        diff = (forward(model, probe)[:, : t + 1] - base[:, : t + 1]).abs().max().item()
        if diff > CAUSAL_TOLERANCE:
            raise EvalError(f"model is not causal: output at position {t} depends on later bytes")


def main() -> int:
    torch.set_num_threads(1)  # threads contend on a loaded machine; the metric does not depend on the count
    try:
        art_dir = Path(os.environ["OVERNIGHT_ARTIFACTS"])
        val_path = Path(os.environ["OVERNIGHT_HELDOUT"]) / "val.bin"
    except KeyError as exc:
        print(f"evaluation failed: environment variable {exc.args[0]} is not set", file=sys.stderr)
        return 1
    torch.manual_seed(0)
    try:
        model, context = load_model(art_dir)
        data = val_path.read_bytes()[:EVAL_BYTES]
        if len(data) < EVAL_BYTES:
            raise EvalError(f"{val_path} holds fewer than {EVAL_BYTES} bytes")
        data = torch.frombuffer(bytearray(data), dtype=torch.uint8).long()
        n_windows = (len(data) - 1) // context
        if n_windows < 8:
            raise EvalError(f"context {context} is too long for {EVAL_BYTES} evaluation bytes")
        used = n_windows * context
        inputs = data[:used].view(n_windows, context)
        targets = data[1 : used + 1].view(n_windows, context)
        check_causal(model, inputs)
        total_nats = 0.0
        for i in range(0, n_windows, BATCH):
            logits = forward(model, inputs[i : i + BATCH])
            total_nats += F.cross_entropy(
                logits.reshape(-1, VOCAB_SIZE), targets[i : i + BATCH].reshape(-1), reduction="sum"
            ).item()
    except EvalError as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    bpb = total_nats / used / math.log(2)
    if not math.isfinite(bpb):
        print("evaluation failed: non-finite val_bpb", file=sys.stderr)
        return 1
    print(f"eval_bytes: {used}")
    print(f"eval_seconds: {time.perf_counter() - STARTED:.2f}")
    print(f"val_bpb: {bpb:.6f}")
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # skips the interpreter's teardown of torch: about 1 s per process, twice per run
