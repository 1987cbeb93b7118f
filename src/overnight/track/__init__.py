"""A track on disk: its folder, spec, program, git repo, state folder and ledger."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from overnight.core.spec import PROGRAM_FILE, Spec, SpecError, load_spec
from overnight.git.repo import Repo
from overnight.storage.ledger import Ledger

STATE_DIR = ".overnight"


@dataclass
class TrackPaths:
    state: Path

    @property
    def worktrees(self) -> Path:
        return self.state / "worktrees"

    @property
    def trusted(self) -> Path:
        return self.state / "trusted"

    @property
    def runs(self) -> Path:
        return self.state / "runs"

    @property
    def data(self) -> Path:
        return self.state / "data" / "public"

    @property
    def heldout(self) -> Path:
        return self.state / "data" / "heldout"

    @property
    def lock(self) -> Path:
        return self.state / "loop.lock"


class Track:
    """Opening a track validates its spec; nothing is written until `state()` is asked for."""

    def __init__(self, path: Path | str):
        self.dir = Path(path).resolve()
        self.spec: Spec = load_spec(self.dir)
        self.paths = TrackPaths(self.dir / STATE_DIR)
        self.program  # noqa: B018 - a program.md that is not UTF-8 is refused when the track opens, not mid-night

    @cached_property
    def repo(self) -> Repo:
        return Repo(self.dir)

    @cached_property
    def ledger(self) -> Ledger:
        self.ensure_state()
        return Ledger.for_track(self.paths.state)

    @property
    def name(self) -> str:
        return self.spec.track.name

    @property
    def program(self) -> str:
        p = self.dir / PROGRAM_FILE
        if not p.is_file():
            return ""
        try:
            return p.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise SpecError(f"{p}: not UTF-8 text (byte {e.start}); save program.md as UTF-8") from None

    def inputs(self) -> list[Path]:
        """`[track] inputs` resolved and checked (raises InputsError naming the glob)."""
        from overnight.track.inputs import resolve

        return resolve(self.dir, self.spec.track.inputs, self.repo.root) if self.spec.track.inputs else []

    def ensure_state(self) -> None:
        state = self.paths.state
        state.mkdir(parents=True, exist_ok=True)
        ignore = state / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# overnight's state: never committed\n*\n")  # self-ignoring folder
        for d in (self.paths.worktrees, self.paths.runs, self.paths.data, self.paths.heldout):
            d.mkdir(parents=True, exist_ok=True)

    @cached_property
    def token(self) -> str:
        """A stable id for this track's processes (found by env after a crash of the loop)."""
        tok = self.ledger.get("track_token")
        if tok is None:
            tok = uuid.uuid4().hex[:12]
            self.ledger.put("track_token", tok)
        return tok

    def base_env(self) -> dict[str, str]:
        env = dict(os.environ)
        for k in list(env):
            if k.startswith("OVERNIGHT_"):
                del env[k]
        # `python` in a spec means the interpreter overnight runs on, even from an unactivated venv.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "/usr/bin:/bin")])
        env["OVERNIGHT_DATA"] = str(self.paths.data)
        env["PYTHONUNBUFFERED"] = "1"
        return env
