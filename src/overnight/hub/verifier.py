"""The verifier: re-run a claimed improvement in the sandbox with fresh seeds, decide with the keep rule.

Contributor code (the candidate and every chain commit) runs only under `run.sandbox = "bubblewrap"`;
`unsafe_no_sandbox` exists for tests on machines without bubblewrap and says so in its name.
"""

from __future__ import annotations

import importlib.util
import secrets
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from statistics import fmean
from typing import Any

from overnight.core.spec import Spec
from overnight.execution import fingerprint
from overnight.execution.runner import RunOutcome, execute, prepare
from overnight.git.repo import RepoError, git
from overnight.hub import reputation
from overnight.hub.client import HubClient
from overnight.hub.contribute import fetch
from overnight.judge.policy import Policy, Verdict, make_policy
from overnight.track import Track

MAX_RUNS = 10  # a policy that keeps asking for `more` is cut off here
MAX_RELEASES = 3  # consecutive verifier-side failures before the verifier stops


def lines_delta(diff: str) -> int:
    """Lines added minus removed (the keep rule may prefer simpler code)."""
    lines = diff.splitlines()
    return (sum(1 for x in lines if x.startswith("+") and not x.startswith("+++"))
            - sum(1 for x in lines if x.startswith("-") and not x.startswith("---")))


VERIFY_ALPHA = 0.01  # entering a shared chain takes the records' standard (p < 0.01), stricter than a local keep


def verification_policy(spec: Spec) -> Policy:
    """The noise-aware rule at alpha <= VERIFY_ALPHA, whatever rule the track uses locally."""
    policy = spec.policy.model_copy(update={"rule": "noise", "alpha": min(spec.policy.alpha, VERIFY_ALPHA)})
    return make_policy(spec.model_copy(update={"policy": policy}))


def settled(sub: dict[str, Any], verdict: Verdict, runs: int) -> bool:
    """Stop re-running: the rule decided, or a trusted contributor's claim is already confirmed."""
    return verdict.action != "more" or reputation.confirmed(sub.get("contributor_streak", 0), runs, verdict.stats)


def outcome(verdict: Verdict, values: list[float], head: list[float], spec: Spec, sub: dict[str, Any],
            capped: bool = False) -> dict[str, Any]:
    """The report for a finished re-run series (accept or reject, with the evidence)."""
    mean, hmean = fmean(values), fmean(head)
    gain = hmean - mean if spec.minimize else mean - hmean
    result = {"metric": mean, "head_metric": hmean, "gain": gain, "runs": values, "head_runs": head,
              "stats": {k: float(v) for k, v in verdict.stats.items()}}
    if verdict.action == "keep":
        return {**result, "outcome": "accept", "reason": verdict.reason}
    if capped and reputation.confirmed(sub.get("contributor_streak", 0), len(values), verdict.stats):
        return {**result, "outcome": "accept", "reason": f"confirmed for a trusted contributor over {len(values)} "
                f"re-run(s) (p={verdict.stats['p_value']:.3g} < {reputation.CONFIRM_P}): {verdict.reason}"}
    claimed = sub.get("claimed_metric")
    return {**result, "outcome": "reject",
            "reason": f"claimed {spec.metric.name} {claimed:.6g}, re-measured {mean:.6g} over "
                      f"{len(values)} run(s): {verdict.reason}"}


class VerifierError(Exception):
    pass


def require_sandbox() -> None:
    if importlib.util.find_spec("overnight.execution.sandbox") is None or shutil.which("bwrap") is None:
        raise VerifierError("the verifier runs contributor code only in the bubblewrap sandbox, which is not "
                            "available here (needs `bwrap` and overnight.execution.sandbox); refusing to verify")


class Verifier:
    def __init__(self, client: HubClient, work_root: Path, unsafe_no_sandbox: bool = False,
                 say: Callable[[str], None] = print):
        self.client, self.work_root, self.unsafe, self.say = client, Path(work_root), unsafe_no_sandbox, say
        self._head_cache: dict[tuple[str, str], list[float]] = {}
        self._policies: dict[tuple[str, str], Policy] = {}  # one pooled noise floor per track, as in a loop
        self.platform = fingerprint.fingerprint()
        self.seconds = 0.0  # verifier compute spent, for the cost ratio
        self.last_error = ""

    def verify_one(self, track: str | None = None) -> dict[str, Any] | None:
        """Claim, re-run and report one submission; None when the queue is empty."""
        if not self.unsafe:
            require_sandbox()
        sub = self.client.claim(track)
        if sub is None:
            return None
        t0 = time.monotonic()
        try:
            body = self._verify(sub)
        except (RepoError, VerifierError, OSError, RuntimeError) as e:  # our side failed (a SandboxError
            # included): hand it back, blame nobody
            body = {"outcome": "release", "reason": f"verifier error: {e}"}
            self.last_error = str(e)
        body.update(platform=self.platform, verifier_seconds=round(time.monotonic() - t0, 3))
        self.seconds += time.monotonic() - t0
        res = self.client.report(sub["id"], body)
        if res.get("commit") and body.get("runs"):  # the accepted runs measure the new head on this platform
            self._head_cache[(res["commit"], self.platform["key"])] = list(body["runs"])
        self.say(f"submission #{sub['id']} ({sub['track']}): {res['status']} {res.get('reason', '')}".rstrip())
        return res

    def _open(self, name: str) -> tuple[Track, dict[str, Any]]:
        info = fetch(self.client, name, self.work_root / name)
        track = Track(self.work_root / name)
        if (track.dir / "overnight.toml").read_text() != info["spec"]:
            raise VerifierError("the chain head's overnight.toml differs from the hub's spec")
        track.spec.run.sandbox = "none" if self.unsafe else "bubblewrap"
        track.ensure_state()
        prepare(track)
        # The evaluator comes from the trusted chain head (frozen files never change along the chain).
        track.repo.add_worktree(track.paths.trusted, info["head"])
        return track, info

    def _run(self, track: Track, workdir: Path, label: str, index: int) -> RunOutcome:
        run_dir = track.paths.runs / label / str(index)
        out = execute(track, workdir, run_dir, secrets.randbelow(2**31), f"{track.token}:{label}:")
        return out

    def _verify(self, sub: dict[str, Any]) -> dict[str, Any]:
        track, info = self._open(sub["track"])
        if sub["parent"] != info["head"]:
            return {"outcome": "reject", "false_claim": False, "reason": "stale: the chain head moved"}
        repo, spec = track.repo, track.spec
        policy = self._policies.setdefault((sub["track"], info["spec"]), verification_policy(spec))
        wt = repo.add_worktree(track.paths.worktrees / f"sub-{sub['id']}", sub["parent"])
        try:
            try:
                git(wt, "apply", "--whitespace=nowarn", "-", input=sub["patch"])
            except RepoError as e:
                return {"outcome": "reject", "reason": f"the patch does not apply: {e}"}
            commit = repo.commit_all(wt, f"hub submission #{sub['id']}")
            if commit is None:
                return {"outcome": "reject", "reason": "the patch changes nothing"}
            problems = repo.frozen_violations(sub["parent"], commit, spec.track.editable)
            if problems:  # the door checked the text; this checks what git actually did
                return {"outcome": "reject", "reason": "; ".join(problems)}
            head = self._head_values(track, info["head"], policy.baseline_runs)
            delta = lines_delta(repo.diff(sub["parent"], commit))
            values: list[float] = []
            verdict = None
            for i in range(MAX_RUNS):
                out = self._run(track, repo.workdir(wt), f"sub-{sub['id']}", i)
                if out.status != "ok":
                    return {"outcome": "reject", "runs": values, "head_runs": head,
                            "reason": f"re-run failed ({out.status}): {out.reason}"[:2000]}
                values.append(out.metric)
                guard = next((v for g in spec.guard if (v := g.violation(out.measurements))), None)
                if guard:
                    return {"outcome": "reject", "runs": values, "head_runs": head, "reason": guard}
                verdict = policy.decide(head, values, lines_delta=delta)
                if settled(sub, verdict, len(values)):
                    break
            assert verdict is not None
            return outcome(verdict, values, head, spec, sub, capped=verdict.action == "more")
        finally:
            repo.remove_worktree(wt)

    def _head_values(self, track: Track, head: str, n: int) -> list[float]:
        """The head measured on this platform, by this verifier, in the sandbox; cached per head."""
        key = (head, self.platform["key"])
        values = self._head_cache.setdefault(key, [])
        if len(values) >= n:
            return values
        wt = track.repo.add_worktree(track.paths.worktrees / f"head-{head[:12]}", head)
        try:
            while len(values) < n:
                out = self._run(track, track.repo.workdir(wt), f"head-{head[:12]}", len(values))
                if out.status != "ok":
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
