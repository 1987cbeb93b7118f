"""The contributor side: fetch the chain head, run the local loop, submit what it kept."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from overnight.execution import fingerprint
from overnight.git.repo import git
from overnight.hub.client import HubClient, HubClientError
from overnight.track import Track

SUBMITTED_KEY = "hub_submitted"


def fetch(client: HubClient, name: str, work: Path) -> dict[str, Any]:
    """Make `work` a checkout of the track's chain head (cloned from the hub's bundle); returns the track info."""
    info = client.track(name)
    work.mkdir(parents=True, exist_ok=True)
    if not (work / ".git").exists():
        git(work, "init", "-q")
    with tempfile.TemporaryDirectory() as tmp:
        bundle = client.bundle(name, Path(tmp) / "head.bundle")
        git(work, "fetch", "-q", str(bundle), "+refs/bundles/*:refs/hub/*")
    git(work, "checkout", "-q", "--force", "--detach", info["head"])
    return info


def publish(client: HubClient, track_dir: Path) -> dict[str, Any]:
    """Admin: host the track at `track_dir` (the root of its git repo) on the hub, its HEAD as the base."""
    track = Track(track_dir)
    if track.repo.rel:
        raise ValueError(f"{track_dir} must be the root of its git repository to be hosted on a hub")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "track.bundle"
        git(track.dir, "bundle", "create", "-q", str(out), "HEAD")
        spec = (track.dir / "overnight.toml").read_text()
        return client.create_track(track.name, spec, track.program, out.read_bytes())


def idempotency_key(track: str, parent: str, commit: str) -> str:
    """Deterministic: the same experiment submitted twice (a retry, a rerun) is the same submission."""
    return hashlib.sha256(f"{track}:{parent}:{commit}".encode()).hexdigest()[:40]


def submit_kept(client: HubClient, track: Track, tag: str, info: dict[str, Any],
                say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """Submit every kept experiment of `tag` not submitted yet, as a patch against the chain head."""
    ledger = track.ledger
    exps = ledger.experiments(tag=tag)
    base = next((e for e in exps if e.meta.get("baseline")), None)
    done: dict[str, Any] = ledger.get(SUBMITTED_KEY, {})
    results = []
    for exp in exps:
        if exp.status != "keep" or exp.meta.get("baseline") or not exp.commit or exp.commit in done:
            continue
        runs = [r for r in ledger.runs(exp.id) if r.status == "ok" and r.metric is not None]
        body = {
            "parent": info["head"], "patch": track.repo.diff(info["head"], exp.commit),
            "description": exp.description, "claimed_metric": exp.metric,
            "claimed_head": base.metric if base else None, "claimed_runs": [r.metric for r in runs],
            "platform": fingerprint.fingerprint(), "log_tail": (runs[-1].tail if runs else "")[-8000:],
            "idempotency_key": idempotency_key(info["name"], info["head"], exp.commit),
        }
        try:
            res = client.submit(info["name"], body)
        except HubClientError as e:
            res = {"status": "refused", "reason": e.detail, "http": e.status}
        say(f"#{exp.id} {exp.description[:60]}: {res['status']} {res.get('reason', '')}".rstrip())
        done[exp.commit] = res
        ledger.put(SUBMITTED_KEY, done)
        results.append(res)
    return results


def contribute(client: HubClient, name: str, work: Path, make_proposer: Callable[[Track, str], Any],
               max_experiments: int | None = None, hours: float | None = None,
               say: Callable[[str], None] = print) -> list[dict[str, Any]]:
    """One round: fetch the head, run the loop from it, submit what was kept."""
    from overnight.loop import Limits, Loop

    info = fetch(client, name, work)
    track = Track(work)
    # The chain head is other contributors' code: it runs in the sandbox whatever the hosted spec says
    # (without bubblewrap the loop stops with how to install it, never runs it bare).
    track.spec.run.sandbox = "bubblewrap"
    tag = f"hub-{info['head'][:12]}"  # a new chain head starts a fresh local branch
    loop = Loop(track, make_proposer(track, tag), tag=tag, limits=Limits(max_experiments, hours))
    loop.set_deadline()
    loop.run()
    return submit_kept(client, track, tag, info, say)
