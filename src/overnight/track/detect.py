"""What `overnight init` reads off a repo it has never seen: tunable constants, the step knob,
the prepare script, the data git ignores, and the metric in a probe run's output."""

from __future__ import annotations

import ast
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from overnight.core.spec import constant_pattern
from overnight.git.repo import git

# Constants that set how much work a run does: the budget, not a hyperparameter to search.
STEP_KNOBS = ("max_iters", "max_steps", "num_steps", "n_steps", "total_steps", "train_steps", "num_iterations",
              "iterations", "steps", "max_iter", "n_iters", "num_iters", "epochs", "num_epochs")
EVAL_KNOBS = ("eval_interval", "eval_every", "val_every", "val_interval", "eval_freq")
SKIP = re.compile(r"(iters?|interval|every|freq|steps?|epochs?|seed|log\w*|save\w*|wandb\w*|compile|device|dtype|"
                  r"backend|checkpoint\w*|_only|workers|verbose|debug)$|^(eval|log|wandb|save|out|init)_", re.I)
MAXIMIZE = re.compile(r"acc|accuracy|score|reward|bleu|f1|auc|map|precision|recall|return|win", re.I)
NUMBER = r"([-+]?\d*\.?\d+(?:[eE][-+]?\d+)?)"
DATA_SKIP_DIRS = {"__pycache__", "venv", "env", "node_modules", "out", "wandb", "logs", "runs", "build", "dist"}


@dataclass
class Constant:
    file: str
    name: str
    value: int | float | bool | str


def constants(track_dir: Path, files: list[str]) -> list[Constant]:
    """Top-level single-line `NAME = literal` assignments the optuna proposer can rewrite."""
    found = []
    for rel in files:
        path = track_dir / rel
        if path.suffix != ".py" or not path.is_file():
            continue
        text = path.read_text(errors="replace")
        try:
            tree = ast.parse(text)
        except SyntaxError:
            continue
        for node in tree.body:
            if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)
                    and isinstance(node.value, ast.Constant) and node.lineno == node.end_lineno):
                continue
            name, value = node.targets[0].id, node.value.value
            if isinstance(value, int | float | str) and len(constant_pattern(name).findall(text)) == 1:
                found.append(Constant(rel, name, value))
    return found


def step_knob(consts: list[Constant]) -> Constant | None:
    for knob in STEP_KNOBS:
        hit = next((c for c in consts if c.name.lower() == knob and type(c.value) is int and c.value > 0), None)
        if hit:
            return hit
    return None


def eval_knob(consts: list[Constant]) -> Constant | None:
    return next((c for c in consts if c.name.lower() in EVAL_KNOBS and type(c.value) is int), None)


def override_style(track_dir: Path, file: str, name: str) -> str | None:
    """How the command line sets a constant: nanoGPT's configurator (`--k=v`) or an argparse flag."""
    text = (track_dir / file).read_text(errors="replace")
    if "configurator" in text and (track_dir / "configurator.py").is_file():
        return "--{name}=$OVERNIGHT_BUDGET_STEPS"
    if re.search(rf"""["']--{re.escape(name)}["']""", text):
        return "--{name} $OVERNIGHT_BUDGET_STEPS"
    return None


def search_entry(c: Constant) -> dict | None:
    """A [[search]] range around the current value, or None for what is not a tunable number."""
    v = c.value
    if SKIP.search(c.name) or isinstance(v, str):
        return None
    if isinstance(v, bool):
        return {"choices": [False, True]}
    if isinstance(v, int):
        return {"low": max(1, v // 2), "high": max(2 * v, v + 2), "int": True} if v >= 1 else None
    if not math.isfinite(v) or v < 0:
        return None
    if v == 0:
        return {"low": 0.0, "high": 0.5} if "drop" in c.name.lower() else None
    low = v / 3
    high = v * 3 if v * 3 < 1 or v >= 1 else 1 - (1 - v) / 3  # stay below 1 for betas, momenta, ratios
    return {"low": low, "high": high, "log": True} if high / low > 4 else {"low": low, "high": high}


def prepare_command(track_dir: Path, consts: list[Constant]) -> str | None:
    """`python prepare.py`, or the data/<dataset>/prepare.py that the script's `dataset` names."""
    if (track_dir / "prepare.py").is_file():
        return "python prepare.py"
    scripts = sorted(track_dir.glob("data/*/prepare.py"))
    dataset = next((c.value for c in consts if c.name.lower() == "dataset" and isinstance(c.value, str)), None)
    chosen = next((s for s in scripts if s.parent.name == dataset), None) or (scripts[0] if len(scripts) == 1 else None)
    return f"python {chosen.relative_to(track_dir).as_posix()}" if chosen else None


def ignored_data(track_dir: Path) -> list[str]:
    """Globs for the files git ignores that look like run inputs (data, not caches or outputs)."""
    out = git(track_dir, "ls-files", "--others", "--ignored", "--exclude-standard", "--", ".", check=False)
    globs: list[str] = []
    for line in out.splitlines():
        rel = Path(line)
        parts = rel.parts
        if (not parts or any(p.startswith(".") or p in DATA_SKIP_DIRS for p in parts)
                or rel.suffix in (".pyc", ".log", ".png", ".tsv", ".swp")):
            continue
        glob = (rel.parent / f"*{rel.suffix}").as_posix() if rel.suffix else rel.as_posix()
        if glob not in globs:
            globs.append(glob)
    return sorted(globs)


@dataclass
class MetricGuess:
    name: str
    pattern: str | None
    direction: str
    value: float
    matches: int
    others: list[str] = field(default_factory=list)


def _words_pattern(words: str) -> str:
    return r"\b" + r"\s+".join(re.escape(w) for w in words.split()) + r"[:=]?\s*" + NUMBER


def guess_metric(output: str) -> MetricGuess | None:
    """The likeliest metric in what a run printed: validation losses first, then any loss or score."""
    from overnight.core import measurements

    seen: dict[str, tuple[float, int]] = {}  # lowercased words -> (last value, count)
    spelled: dict[str, str] = {}  # lowercased words -> as printed, for the pattern
    plain = measurements.parse(output)
    for m in re.finditer(r"([A-Za-z][\w./-]*(?:[ \t]+[A-Za-z][\w./-]*){0,2})[ \t]*[:=]?[ \t]*" + NUMBER, output):
        printed = re.sub(r"^(step|iter|epoch)\s+", "", m.group(1).strip(), flags=re.I)
        words = printed.lower()
        if words in ("step", "iter", "epoch"):
            continue
        seen[words] = (float(m.group(2)), seen.get(words, (0.0, 0))[1] + 1)
        spelled[words] = printed

    def score(name: str) -> tuple[int, int]:
        s = 0
        if re.search(r"\b(val|valid|validation|test|eval|dev)\b|^val_|_val\b", name):
            s += 4
        if re.search(r"loss|bpb|ppl|perplexity|error|acc|accuracy|score|bleu|f1|reward", name):
            s += 3
        if re.search(r"time|ms|lr|mfu|step|tok|second|memory|mem", name):
            s -= 5
        return s, seen[name][1]

    if not seen:
        return None
    best = max(seen, key=score)
    if score(best)[0] <= 0:
        return None
    name = re.sub(r"\W+", "_", best).strip("_")
    direction = "maximize" if MAXIMIZE.search(best) and not re.search(r"loss|error", best) else "minimize"
    others = [n for n in seen if n != best][:6]
    if name in plain and best == name:  # the `name: value` default already reads it: no pattern needed
        return MetricGuess(name, None, direction, plain[name], seen[best][1], others)
    pattern = _words_pattern(spelled[best])
    values = [float(v) for v in re.findall(pattern, output, re.MULTILINE)]
    if not values:
        return None
    return MetricGuess(name, pattern, direction, values[-1], len(values), others)
