"""The verifier: re-run a claimed improvement in the sandbox with fresh seeds, decide with the keep rule.

Contributor code (the candidate and every chain commit) runs only under `run.sandbox = "bubblewrap"`;
`unsafe_no_sandbox` exists for tests on machines without bubblewrap and says so in its name. The
verifier's token never reaches a child process (see `cli/hub.py verify`). Judging is in `judging.py`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import secrets
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from overnight.execution import fingerprint
from overnight.execution.runner import RunOutcome, execute, prepare
from overnight.git.repo import RepoError, git
from overnight.hub.client import HubClient, HubClientError, HubUnavailable
from overnight.hub.contribute import fetch
from overnight.hub.door import DoorError, check_patch
from overnight.hub.judging import outcome, sane, settled, verification_policy
from overnight.judge.diff import lines_delta
from overnight.judge.guards import guard_violation
from overnight.track import Track

MAX_RUNS = 10  # a policy that keeps asking for `more` is cut off here
MAX_RELEASES = 3  # consecutive verifier-side failures (on different submissions) before the verifier stops
BACKOFF_MAX = 60.0  # seconds between tries while the hub is unreachable


class VerifierError(Exception):
    pass


def require_sandbox() -> None:
    if importlib.util.find_spec("overnight.execution.sandbox") is None or shutil.which("bwrap") is None:
        raise VerifierError("the verifier runs contributor code only in the bubblewrap sandbox, which is not "
                            "available here (needs `bwrap` and overnight.execution.sandbox); refusing to verify")


class _Heartbeat:
    """Keeps a lease alive while its submission is re-run; a verifier that dies stops renewing it."""

    def __init__(self, client: HubClient, sub_id: int, every: float):
        self.client, self.sub_id, self.every = client, sub_id, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"heartbeat-{sub_id}", daemon=True)

    def _loop(self) -> None:
        own = None  # its own connection: the verifier's client is busy in the other thread
        while not self.stop.wait(self.every):
            own = own or self.client.clone()
            with contextlib.suppress(HubClientError):  # the hub is down or the lease is gone: the report says
                own.heartbeat(self.sub_id)
        if own is not None:
            own.close()

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(5)


class Verifier:
    def __init__(self, client: HubClient, work_root: Path, unsafe_no_sandbox: bool = False,
                 say: Callable[[str], None] = print, give_up_after: float | None = None):
        self.client, self.work_root, self.unsafe, self.say = client, Path(work_root), unsafe_no_sandbox, say
        self.give_up_after = give_up_after  # seconds of an unreachable hub before stopping (None: never)
        self.platform = fingerprint.fingerprint()
        self.seconds = 0.0  # verifier compute spent, for the cost ratio
        self.last_error = ""

    # --- talking to the hub -------------------------------------------------------------------------
    def _patiently(self, what: str, call: Callable[[], Any], deadline: float | None) -> Any:
        """`call()`, retried with backoff while the hub is unreachable, one clear line per wait."""
        wait = 1.0
        while True:
            try:
                return call()
            except HubUnavailable as e:
                if deadline is not None and time.monotonic() + wait > deadline:
                    raise VerifierError(f"{what}: gave up, {e}") from None
                self.say(f"{what}: {e}; retrying in {wait:.0f} s")
                time.sleep(wait)
                wait = min(BACKOFF_MAX, wait * 2)

    def _deadline(self, seconds: float | None) -> float | None:
        return None if seconds is None else time.monotonic() + seconds

    def verify_one(self, track: str | None = None) -> dict[str, Any] | None:
        """Claim, re-run and report one submission; None when the queue is empty."""
        if not self.unsafe:
            require_sandbox()
        sub = self._patiently("claiming work", lambda: self.client.claim(track), self._deadline(self.give_up_after))
        if sub is None:
            return None
        lease = float(sub.get("lease_seconds") or 300.0)
        t0 = time.monotonic()
        with _Heartbeat(self.client, sub["id"], max(0.2, lease / 4)):
            try:
                body = self._verify(sub)
            except Exception as e:  # noqa: BLE001 - our side failed (sandbox, git, disk): hand it back, blame nobody
                body = {"outcome": "release", "reason": f"verifier error: {type(e).__name__}: {e}"[:2000]}
                self.last_error = str(e)
        body.update(platform=self.platform, verifier_seconds=round(time.monotonic() - t0, 3))
        self.seconds += time.monotonic() - t0
        try:  # reports are idempotent: re-sending after a lost answer records it once
            res = self._patiently(f"reporting submission #{sub['id']}", lambda: self.client.report(sub["id"], body),
                                  self._deadline(max(lease, self.give_up_after or 0.0)))
        except HubClientError as e:
            self.say(f"submission #{sub['id']}: report refused ({e}); the work is lost, the queue moves on")
            return {"id": sub["id"], "status": "lost", "reason": str(e)}
        self.say(f"submission #{sub['id']} ({sub['track']}): {res['status']} {res.get('reason', '')}".rstrip())
        return res

    # --- re-running ---------------------------------------------------------------------------------
    def _open(self, name: str) -> tuple[Track, dict[str, Any]]:
        info = fetch(self.client, name, self.work_root / name)
        # Prepare and the sealed evaluator run from the track's base: the chain changed only editable files
        # since, contributor code that must never run in a trusted step (an evaluator may import it).
        info["base"] = self.client.chain(name)[0]["commit"]
        git(self.work_root / name, "checkout", "-q", "--force", "--detach", info["base"])
        track = Track(self.work_root / name)
        if (track.dir / "overnight.toml").read_text() != info["spec"]:
            raise VerifierError("the chain head's overnight.toml differs from the hub's spec")
        if track.spec.evaluate is None:
            raise VerifierError("the track has no [evaluate] command: a hub track is graded by its sealed evaluator")
        track.spec.run.sandbox = "none" if self.unsafe else "bubblewrap"
        track.ensure_state()
        prepare(track)
        track.repo.add_worktree(track.paths.trusted, info["base"])
        return track, info

    def _run(self, track: Track, workdir: Path, label: str, index: int) -> RunOutcome:
        run_dir = track.paths.runs / label / str(index)
        return execute(track, workdir, run_dir, secrets.randbelow(2**31), f"{track.token}:{label}:")

    def _verify(self, sub: dict[str, Any]) -> dict[str, Any]:
        track, info = self._open(sub["track"])
        if sub["parent"] != info["head"]:
            return {"outcome": "reject", "false_claim": False, "reason": "stale: the chain head moved"}
        repo, spec = track.repo, track.spec
        try:  # the hub's door ran on another machine: check again, the way git apply reads the patch
            check_patch(sub["patch"], spec.track.editable)
        except DoorError as e:
            return {"outcome": "reject", "reason": f"refused: {e.reason}"}
        policy = verification_policy(spec, trusted=bool(sub.get("contributor_trusted")))  # fresh per claim
        wt = repo.add_worktree(track.paths.worktrees / f"sub-{sub['id']}", sub["parent"])
        try:
            try:  # --index: ignored paths are committed (and so checked) too
                git(wt, "apply", "--index", "--whitespace=nowarn", "-", input=sub["patch"])
            except RepoError as e:
                return {"outcome": "reject", "reason": f"the patch does not apply: {e}"}
            commit = repo.commit_all(wt, f"hub submission #{sub['id']}")
            if commit is None:
                return {"outcome": "reject", "reason": "the patch changes nothing"}
            problems = repo.frozen_violations(sub["parent"], commit, spec.track.editable)
            if problems:  # the door checked the text; this checks what git actually did
                return {"outcome": "reject", "reason": "; ".join(problems)}
            head = self._head_values(track, info["head"], policy.baseline_runs, sub["id"])
            delta = lines_delta(repo.diff(sub["parent"], commit))
            values: list[float] = []
            verdict = None
            for i in range(MAX_RUNS):
                out = self._run(track, repo.workdir(wt), f"sub-{sub['id']}", i)
                if out.status != "ok":
                    return {"outcome": "reject", "runs": values, "head_runs": head,
                            "reason": f"re-run failed ({out.status}): {out.reason}"[:2000]}
                if not sane(out.metric):
                    return {"outcome": "reject", "runs": values, "head_runs": head,
                            "reason": f"re-run printed {spec.metric.name} {out.metric!r}: not a finite number "
                                      "of sane magnitude"}
                values.append(out.metric)
                guard = guard_violation(spec, out.measurements)
                if guard:
                    return {"outcome": "reject", "runs": values, "head_runs": head, "reason": guard}
                verdict = policy.decide(head, values, lines_delta=delta)
                if settled(verdict):
                    break
            assert verdict is not None
            return outcome(verdict, values, head, spec, sub)
        finally:
            repo.remove_worktree(wt)

    def _head_values(self, track: Track, head: str, n: int, sub_id: int) -> list[float]:
        """The head measured for this claim alone, on this platform, by this verifier, in the sandbox, just
        before the claim's re-runs: fresh runs (never the runs that got it accepted: those were selected for
        looking good), and never another claim's (machines drift; one unlucky head draw must not serve many)."""
        values: list[float] = []
        wt = track.repo.add_worktree(track.paths.worktrees / f"sub-{sub_id}-head", head)
        try:
            while len(values) < n:
                out = self._run(track, track.repo.workdir(wt), f"sub-{sub_id}-head", len(values))
                if out.status != "ok" or not sane(out.metric):
                    raise VerifierError(f"the chain head fails on this platform ({out.status}): {out.reason}")
                values.append(out.metric)
        finally:
            track.repo.remove_worktree(wt)
        return values

    def run(self, track: str | None = None, once: bool = False, poll: float = 10.0,
            max_items: int | None = None) -> int:
        """Verify until the queue is empty (once) or forever; returns how many were verified."""
        n = released = 0
        while max_items is None or n < max_items:
            res = self.verify_one(track)
            if res is None:
                if once:
                    break
                time.sleep(poll)
                continue
            if res.get("status") == "pending":  # handed back: our side failed, not the contributor's
                released += 1
                if released >= MAX_RELEASES:  # a broken verifier must stop, not spin on the queue
                    raise VerifierError(f"{released} verifications in a row failed on this verifier; "
                                        f"last: {self.last_error}")
                continue
            released = 0
            n += 1
        return n
