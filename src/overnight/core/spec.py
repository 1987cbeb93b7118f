"""The spec: `overnight.toml` validated into pydantic models.

Every error names the file, the key and what was expected, so a user can fix
it without reading the code.
"""

from __future__ import annotations

import math
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

SPEC_FILE = "overnight.toml"
PROGRAM_FILE = "program.md"


class SpecError(Exception):
    """A spec that cannot be used; the message is meant for the user as is."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `budget_seconds = inf` is not a budget


class TrackSection(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    editable: list[str] = Field(min_length=1)
    # Files git does not carry (datasets, tokenizers, checkpoints): globs, linked read-only into every run.
    inputs: list[str] = []

    @field_validator("inputs")
    @classmethod
    def _relative_inputs(cls, value: list[str]) -> list[str]:
        for pattern in value:
            if not pattern.strip() or pattern.startswith("/") or ".." in Path(pattern).parts:
                raise ValueError(f"{pattern!r} must be a path or glob relative to the track folder")
        return value


class PrepareSection(_Strict):
    command: str = Field(min_length=1)
    timeout_seconds: float = Field(default=1800, gt=0)


class RunSection(_Strict):
    command: str = Field(min_length=1)
    budget_seconds: float = Field(default=300, gt=0)
    timeout_seconds: float | None = Field(default=None, gt=0)
    smoke_command: str | None = None
    # A fixed amount of work instead of wall time, so machine load cannot become noise: passed to the
    # command as OVERNIGHT_BUDGET_STEPS; budget_seconds then only sizes the timeout.
    budget_steps: int | None = Field(default=None, gt=0)
    log_cap_mb: float = Field(default=20, gt=0)
    sandbox: Literal["none", "bubblewrap"] = "none"
    pass_env: list[str] = []  # environment names a sandboxed run keeps besides the allow-list (docs/integrity.md)
    max_processes: int | None = Field(default=None, ge=1)  # default in the sandbox: 4096
    max_memory_gb: float | None = Field(default=None, gt=0)  # default in the sandbox: 90% of the machine's memory

    @model_validator(mode="after")
    def _default_timeout(self) -> RunSection:
        if self.timeout_seconds is None:
            # Generous by default: the budget is the script's job, the timeout is the harness's.
            self.timeout_seconds = max(2 * self.budget_seconds, self.budget_seconds + 60)
        if self.timeout_seconds < self.budget_seconds:
            raise ValueError("timeout_seconds must be >= budget_seconds")
        return self


class EvaluateSection(_Strict):
    command: str = Field(min_length=1)
    timeout_seconds: float = Field(default=600, gt=0)


class MetricSection(_Strict):
    name: str = Field(pattern=r"^[A-Za-z_][\w./-]*$")
    direction: Literal["minimize", "maximize"] = "minimize"
    # A regex with one group read from the output (last match wins); default: `name: value` lines.
    pattern: str | None = None

    @field_validator("pattern")
    @classmethod
    def _one_group(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            groups = re.compile(value, re.MULTILINE).groups
        except re.error as e:
            raise ValueError(f"not a valid regular expression: {e}") from None
        if groups != 1:
            raise ValueError(f"needs exactly one (group) around the number, found {groups}")
        return value

    def read(self, text: str) -> float | None:
        """The metric from `pattern`'s last match in `text` (None: no match or not a number)."""
        assert self.pattern is not None
        value = None
        for m in re.finditer(self.pattern, text, re.MULTILINE):
            value = m.group(1)
        try:
            return None if value is None else float(value)
        except ValueError:
            return None


class Guard(_Strict):
    metric: str
    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _has_bound(self) -> Guard:
        if self.min is None and self.max is None:
            raise ValueError("a guard needs `min` or `max`")
        return self

    def violation(self, measurements: dict[str, float]) -> str | None:
        value = measurements.get(self.metric)
        if value is None or not math.isfinite(value):  # fail closed: not printing the line must not pass
            return f"guard {self.metric} not measured ({'no line' if value is None else value})"
        if self.max is not None and value > self.max:
            return f"guard {self.metric} <= {self.max:g} violated ({value:g})"
        if self.min is not None and value < self.min:
            return f"guard {self.metric} >= {self.min:g} violated ({value:g})"
        return None


class SearchParam(_Strict):
    file: str
    name: str = Field(pattern=r"^[A-Za-z_]\w*$")
    low: float | None = None
    high: float | None = None
    log: bool = False
    int: bool = False
    step: float | None = None
    choices: list[Any] | None = None

    @model_validator(mode="after")
    def _range_or_choices(self) -> SearchParam:
        if self.choices is not None:
            if not self.choices:
                raise ValueError("`choices` must not be empty")
            if self.low is not None or self.high is not None:
                raise ValueError("use either `choices` or `low`/`high`, not both")
        elif self.low is None or self.high is None:
            raise ValueError("needs `low` and `high` (or `choices`)")
        elif self.low >= self.high:
            raise ValueError(f"`low` ({self.low}) must be below `high` ({self.high})")
        elif self.log and self.low <= 0:
            raise ValueError("`log = true` needs `low` > 0")
        elif self.step is not None and self.step <= 0:
            raise ValueError(f"`step` ({self.step}) must be above 0")
        elif self.int and not all(float(v).is_integer() for v in (self.low, self.high, self.step or 1)):
            raise ValueError(f"`int = true` needs whole `low`, `high` and `step` (got {self.low}, {self.high}, "
                             f"{self.step}): the walk would step outside them")
        return self


class PolicySection(_Strict):
    """How keep/discard is decided; see docs/integrity.md for the noise rule's design."""

    rule: Literal["greedy", "noise"] = "noise"
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    min_effect: float | None = Field(default=None, ge=0)  # None: 0.05 x the pooled noise floor
    baseline_runs: int = Field(default=3, ge=1, le=100)
    max_runs: int = Field(default=5, ge=1, le=100)
    simplicity: bool = True
    night_alpha: float | None = Field(default=None, gt=0, lt=0.5)  # replication: docs/noise.md

    @model_validator(mode="after")
    def _noise_needs_runs(self) -> PolicySection:
        if self.rule == "noise" and self.baseline_runs < 2:
            raise ValueError("the noise rule needs `baseline_runs` >= 2 to measure the noise floor")
        return self


class Spec(_Strict):
    track: TrackSection
    prepare: PrepareSection | None = None
    run: RunSection
    evaluate: EvaluateSection | None = None
    metric: MetricSection
    policy: PolicySection = PolicySection()
    guard: list[Guard] = []
    search: list[SearchParam] = []

    @field_validator("policy", mode="before")
    @classmethod
    def _policy_shorthand(cls, value: Any) -> Any:
        """`policy = "greedy"` at the top level is short for `[policy] rule = "greedy"`."""
        return {"rule": value} if isinstance(value, str) else value

    @property
    def minimize(self) -> bool:
        return self.metric.direction == "minimize"

    def better(self, a: float, b: float) -> bool:
        """True when metric value `a` is strictly better than `b`."""
        return a < b if self.minimize else a > b


def _location(loc: tuple[Any, ...]) -> str:
    """('run', 'budget_seconds') -> '[run] budget_seconds'; ('search', 1, 'low') -> '[[search]] #2 low'."""
    if not loc:
        return "top level"
    head, *rest = loc
    if rest and isinstance(rest[0], int):
        table = f"[[{head}]] #{rest[0] + 1}"
        rest = rest[1:]
    else:
        table = f"[{head}]" if rest else ""
        if not rest:
            return f"key `{head}`"
    key = ".".join(str(r) for r in rest)
    return f"{table} {key}".strip()


def _explain(err: ValidationError, path: Path) -> str:
    lines = [f"{path}: invalid spec"]
    for e in err.errors():
        where = _location(tuple(e["loc"]))
        kind = e["type"]
        if kind == "extra_forbidden":
            msg = "unknown key (check the spelling; see the spec reference in the README)"
        elif kind == "missing":
            msg = "required key is missing"
        else:
            got = e.get("input")
            msg = e["msg"]
            if got is not None and not isinstance(got, dict):
                msg += f" (got {got!r})"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


# `; more` stays; a quoted string is one piece of the value, whatever it holds (`"a;b"`, `"#1"`)
ASSIGN_RE = (r"^(?P<lhs>{name}\s*(?::[^=]+)?=\s*)"
             r"(?P<value>(?:'(?:\\.|[^'\\\n])*'|\"(?:\\.|[^\"\\\n])*\"|[^#;\n'\"])*?)"
             r"(?P<tail>\s*(?:[#;].*)?)$")


def constant_pattern(name: str) -> re.Pattern[str]:
    """A module-level single-line assignment `NAME = literal  # comment`."""
    return re.compile(ASSIGN_RE.format(name=re.escape(name)), re.MULTILINE)


def frozen_files(spec: Spec, track_dir: Path) -> list[str]:
    """Files no candidate may edit whatever the globs say: the spec, the program, the prepare and
    evaluate commands' own files (their words that name a file in the track), the state folder."""
    import shlex

    files = [SPEC_FILE, PROGRAM_FILE, ".overnight/ledger.db"]
    for section in (spec.prepare, spec.evaluate):
        if section is None:
            continue
        try:
            words = shlex.split(section.command)
        except ValueError:
            words = section.command.split()
        for w in words:
            f = Path(w)
            if not f.is_absolute() and ".." not in f.parts and (track_dir / f).is_file():
                files.append(f.as_posix())
    return files


def _check_files(spec: Spec, track_dir: Path, path: Path) -> None:
    from overnight.git.repo import matches_any  # local: repo imports spec-free helpers only

    problems = []
    frozen = frozen_files(spec, track_dir)
    for i, pattern in enumerate(spec.track.editable):
        covered = [f for f in frozen if matches_any(f, [pattern])]
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            problems.append(f"  [track] editable #{i + 1} {pattern!r}: must be relative to the track folder")
        elif covered:
            problems.append(f"  [track] editable #{i + 1} {pattern!r}: covers {', '.join(covered)}, which must "
                            "stay frozen (the spec, program.md, the prepare and evaluate files); name the files to edit")
        elif not any(track_dir.glob(pattern)):
            problems.append(f"  [track] editable #{i + 1} {pattern!r}: matches no file in {track_dir}")
    for i, p in enumerate(spec.search):
        f = track_dir / p.file
        where = f"  [[search]] #{i + 1} ({p.name})"
        first = next(j for j, q in enumerate(spec.search) if q.name == p.name)
        if first < i:  # the study knows a constant by its name: two would be tuned as one
            problems.append(f"{where}: the name is already [[search]] #{first + 1}'s (in {spec.search[first].file}): "
                            "each constant needs its own name")
        if not f.is_file():
            problems.append(f"{where}: file {p.file!r} does not exist")
            continue
        if not matches_any(p.file, spec.track.editable):
            problems.append(f"{where}: file {p.file!r} is not editable (add it to [track] editable)")
        hits = constant_pattern(p.name).findall(f.read_text(errors="replace"))
        if len(hits) != 1:
            problems.append(
                f"{where}: expected exactly one top-level line `{p.name} = <value>` in {p.file}, found {len(hits)}"
            )
    if problems:
        raise SpecError(f"{path}: invalid spec\n" + "\n".join(problems))


def load_spec(track_dir: Path) -> Spec:
    """Read and validate `<track_dir>/overnight.toml`; raise SpecError with a readable message."""
    path = track_dir / SPEC_FILE
    if not path.is_file():
        raise SpecError(f"{path}: no spec here. Run `overnight init {track_dir}` to write one.")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise SpecError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start}); save it as UTF-8") from None
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    try:
        spec = Spec.model_validate(data)
    except ValidationError as e:
        raise SpecError(_explain(e, path)) from None
    _check_files(spec, track_dir, path)
    return spec
