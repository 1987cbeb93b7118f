"""`overnight bench swarm`: verifier compute vs contributed compute in a simulated swarm with liars.

Simulated: the contributors' and verifiers' time (one run per tick each) and the metric (the real
noisy-quadratic evaluator, in-process, with fresh seeds). Real: the hub service (`overnight.hub.service.Hub`
on a SQLite file in a temp folder, with its door, group writer, queue order, leases, stale rule, chain in a
bare git repo and reputation), the keep rule (`make_policy(spec)` on the example's spec, in every local
loop; a fresh verification policy per claim in every verifier) and the verifier's judging
(`overnight.hub.judging`: settled, outcome, false_claim).

Honest contributors run the local loop: measure the fetched chain head `baseline_runs` times, propose
a random perturbation of one constant, run it until their own keep rule decides, submit each kept
candidate at once (a patch against the chain head they fetched, with the claimed metric and runs),
and refetch when the chain moves. Every one of those runs is contributed compute, so discarded local
proposals count. Liars run nothing: every `lie_every` ticks on average they submit a fabricated claim
(a gain of 1.5-4 noise sigmas) for either a null edit (a comment) or a random, unmeasured edit.
"""

from __future__ import annotations

import math
import random
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from statistics import fmean
from typing import Any

from rich.console import Console

from overnight.bench.noise import BASE_PARAMS, EXAMPLE, _internal, _load_example
from overnight.core.spec import Spec
from overnight.git.repo import GIT_ENV
from overnight.hub import reputation
from overnight.hub.judging import outcome, settled, verification_policy
from overnight.hub.service import Hub, HubError
from overnight.hub.verifier import MAX_RUNS
from overnight.judge.diff import lines_delta
from overnight.judge.policy import make_policy

NAMES = tuple(BASE_PARAMS)
FALLBACK_SPEC = """[track]\nname = "noisy-quadratic"\neditable = ["params.py"]\n[run]\ncommand = "python run.py"
[evaluate]\ncommand = "python evaluate.py"\n[metric]\nname = "loss"\ndirection = "minimize"\n"""


@dataclass
class SwarmConfig:
    contributors: int = 200
    liars: float = 0.10  # fraction of contributors that lie
    verifiers: int = 4  # verifier slots (one run per tick each)
    ticks: int = 300  # simulated time, in runs
    lie_every: float = 20.0  # a liar submits one fabricated claim per this many ticks on average
    step: float = 0.3  # the proposer's step: log-normal scale for rates, absolute for MOMENTUM
    seed: int = 0


@dataclass
class SwarmResult:
    contributed: int = 0  # runs by honest contributors (baselines and every local candidate)
    verifier: int = 0  # runs by verifiers (head measurements and re-runs)
    verifier_head: int = 0
    honest_submitted: int = 0
    honest_accepted: int = 0
    honest_rejected: int = 0
    honest_null_accepted: int = 0  # honest claims accepted whose true gain is not positive
    lies_submitted: int = 0
    lies_verified: int = 0
    lies_rejected: int = 0
    lies_in_chain: int = 0
    stale: int = 0  # closed stale or refused stale (the chain moved first): no verifier runs
    replayed: int = 0  # refused as a replay of another contributor's identical patch
    trust_resets: int = 0
    honest_false_claims: int = 0  # honest rejects counted as false claims (the rest were misses within noise)
    lies_null_in_chain: int = 0  # accepted lies whose edit is truly no better (a random edit may be a real gain)
    busy_ticks: int = 0
    by_class: dict[str, list[int]] = field(default_factory=lambda: {"new": [0, 0], "trusted": [0, 0]})
    start_loss: float = 0.0
    final_loss: float = 0.0
    chain: int = 0
    seconds: float = 0.0

    @property
    def ratio(self) -> float:
        return self.verifier / max(1, self.contributed)


def fast_loss() -> tuple[Callable[[dict, int], float], float, dict, str]:
    """The evaluator's formula in-process (no artifact file), checked against the real evaluator once."""
    found = _load_example()
    real, sigma, optimum = found or _internal()

    def loss(params: dict, seed: int) -> float:
        dist = sum(w * (params[k] - o) ** 2 for k, (o, w) in optimum.items())
        return round(dist + random.Random(seed).gauss(0.0, sigma), 6)

    for seed in (1, 2):  # the same draws as examples/noisy-quadratic/evaluate.py, or refuse to run
        if abs(loss(BASE_PARAMS, seed) - real(BASE_PARAMS, seed)) > 2e-6:
            raise RuntimeError("the swarm's loss differs from the noisy-quadratic evaluator")
    return loss, sigma, optimum, ("examples/noisy-quadratic (formula checked against evaluate.py)" if found
                                  else "internal copy of the noisy-quadratic evaluator")


def render(params: dict[str, float], note: str = "") -> str:
    return "".join(f"{k} = {params[k]!r}\n" for k in NAMES) + (f"# {note}\n" if note else "")


def patch(old: str, new: str) -> str:
    """A whole-file `git diff` of params.py (what `git apply` and the door accept)."""
    a, b = old.splitlines(), new.splitlines()
    body = "".join(f"-{x}\n" for x in a) + "".join(f"+{x}\n" for x in b)
    return (f"diff --git a/params.py b/params.py\n--- a/params.py\n+++ b/params.py\n"
            f"@@ -1,{len(a)} +1,{len(b)} @@\n{body}")


class Swarm:
    def __init__(self, cfg: SwarmConfig, folder: Path):
        self.cfg, self.rng, self.r = cfg, random.Random(cfg.seed), SwarmResult()
        self.loss, self.sigma, self.optimum, self.source = fast_loss()
        toml = EXAMPLE / "overnight.toml"
        self.spec_text = toml.read_text() if toml.is_file() else FALLBACK_SPEC
        self.spec = Spec.model_validate(tomllib.loads(self.spec_text))
        self.name = self.spec.track.name
        repo = folder / "track"
        repo.mkdir()
        (repo / "params.py").write_text(render(BASE_PARAMS))
        (repo / "overnight.toml").write_text(self.spec_text)
        env = {**GIT_ENV, "PATH": "/usr/bin:/bin:/usr/local/bin"}
        for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "base"],
                    ["bundle", "create", "-q", "../base.bundle", "HEAD"]):
            subprocess.run(["git", *cmd], cwd=repo, check=True, env=env, capture_output=True)
        self.hub = Hub(f"sqlite:///{folder / 'hub.db'}", folder / "data")
        self.hub.start()
        head = self.hub.create_track(self.name, self.spec_text, "", (folder / "base.bundle").read_bytes())["head"]
        self.params: dict[str, dict[str, float]] = {head: dict(BASE_PARAMS)}
        self.texts: dict[str, str] = {head: render(BASE_PARAMS)}  # params.py at each chain commit, as committed
        self.queue_empty = False
        self.subs: dict[int, dict[str, Any]] = {}  # submission id -> what the simulation knows about it
        n_liars = round(cfg.contributors * cfg.liars)
        self.agents: list[Any] = [Liar(self, i) if i < n_liars else Honest(self, i) for i in range(cfg.contributors)]
        self.rng.shuffle(self.agents)
        self.verifiers = [VerifierSlot(self, i) for i in range(cfg.verifiers)]

    # --- shared helpers ---------------------------------------------------------------------------
    def seed(self) -> int:
        return self.rng.getrandbits(31)

    def true_loss(self, params: dict[str, float]) -> float:
        return sum(w * (params[k] - o) ** 2 for k, (o, w) in self.optimum.items())

    def head(self) -> str:
        return self.hub.track(self.name).head

    def submit(self, who: Any, parent: str, params: dict[str, float], note: str, claimed: float,
               claimed_head: float, runs: list[float], liar: bool) -> None:
        text = render(params, note)
        body = {"parent": parent, "patch": patch(self.texts.get(parent) or render(self.params[parent]), text),
                "claimed_metric": claimed, "claimed_head": claimed_head, "claimed_runs": runs,
                "idempotency_key": f"{who.index}-{self.seed()}", "description": note or "tuned"}
        try:
            _, sub = self.hub.submit(who.caller, self.name, body)
        except HubError as e:
            if "stale" in str(e):
                self.r.stale += 1
            elif "replayed" in str(e):  # two contributors found the same edit: the hub keeps the first
                self.r.replayed += 1
            else:
                raise
            return
        gain = self.true_loss(self.params[parent]) - self.true_loss(params)
        self.subs[sub["id"]] = {"params": params, "liar": liar, "gain": gain, "text": text}
        self.queue_empty = False
        if liar:
            self.r.lies_submitted += 1
        else:
            self.r.honest_submitted += 1

    def run(self) -> SwarmResult:
        t0 = time.perf_counter()
        self.r.start_loss = self.true_loss(BASE_PARAMS)
        for _ in range(self.cfg.ticks):
            for agent in self.agents:
                agent.step()
            for v in self.verifiers:
                self.r.busy_ticks += v.step()
        self.r.final_loss = self.true_loss(self.params[self.head()])
        self.r.chain = len(self.hub.chain(self.name)) - 1
        self.r.stale += sum(1 for s in self.hub_statuses() if s == "stale")
        self.r.seconds = time.perf_counter() - t0
        return self.r

    def hub_statuses(self) -> list[str]:
        from overnight.hub.store.rows import statuses

        return statuses(self.hub.db)


class Honest:
    """A contributor running the local loop with a random-perturbation proposer."""

    def __init__(self, sim: Swarm, index: int):
        self.sim, self.index = sim, index
        self.caller = sim.hub.caller(sim.hub.create_account(f"c{index}", "contributor")["token"])
        self.policy = make_policy(sim.spec)  # one loop, one pooled noise floor
        self.rng = random.Random(sim.seed())
        self.fetched: str | None = None
        self.cand: dict[str, float] | None = None

    def propose(self) -> dict[str, float]:
        p, k, s = dict(self.best), self.rng.choice(NAMES), self.sim.cfg.step
        if k == "MOMENTUM":
            p[k] = min(0.99, max(0.0, p[k] + self.rng.gauss(0, s / 3)))
        else:
            p[k] = p[k] * math.exp(self.rng.gauss(0, s))
        return p

    def step(self) -> None:
        sim = self.sim
        if self.cand is None and self.fetched != sim.head():  # the chain moved: fetch it, measure it
            self.fetched = sim.head()
            self.base, self.best, self.base_runs = sim.params[self.fetched], sim.params[self.fetched], []
        if len(self.base_runs) < self.policy.baseline_runs:
            self.base_runs.append(sim.loss(self.base, sim.seed()))
            sim.r.contributed += 1
            self.best_runs = self.base_runs
            return
        if self.cand is None:
            self.cand, self.values = self.propose(), []
        self.values.append(sim.loss(self.cand, sim.seed()))
        sim.r.contributed += 1
        verdict = self.policy.decide(self.best_runs, self.values)
        if verdict.action == "more":
            return
        if verdict.action == "keep":
            self.best, self.best_runs = self.cand, self.values
            sim.submit(self, self.fetched, self.cand, "", fmean(self.values), fmean(self.base_runs),
                       self.values, liar=False)
        self.cand = None


class Liar:
    """Runs nothing; claims gains it does not have."""

    def __init__(self, sim: Swarm, index: int):
        self.sim, self.index = sim, index
        self.caller = sim.hub.caller(sim.hub.create_account(f"c{index}", "contributor")["token"])
        self.rng = random.Random(sim.seed())

    def step(self) -> None:
        sim = self.sim
        if self.rng.random() >= 1 / sim.cfg.lie_every:
            return
        head = sim.head()
        params = dict(sim.params[head])
        if self.rng.random() < 0.5:  # a random edit it never measured; otherwise a null edit (a comment)
            k = self.rng.choice(NAMES)
            params[k] = min(0.99, params[k] * math.exp(self.rng.gauss(0, sim.cfg.step)))
        base = sim.true_loss(sim.params[head]) + self.rng.gauss(0, sim.sigma)  # looks like a measurement
        claimed = base - self.rng.uniform(1.5, 4.0) * sim.sigma
        runs = [claimed + self.rng.gauss(0, sim.sigma) for _ in range(3)]
        sim.submit(self, head, params, f"tuned {self.rng.getrandbits(32):08x}", fmean(runs), base, runs, liar=True)


class VerifierSlot:
    """A trusted verifier: claims from the real queue, re-runs with fresh seeds, reports to the real hub."""

    def __init__(self, sim: Swarm, index: int):
        self.sim = sim
        self.caller = sim.hub.caller(sim.hub.create_account(f"verifier{index}", "verifier")["token"])
        self.head: list[float] = []  # this claim's own head runs (the verifier measures the head per claim)
        self.sub: dict[str, Any] | None = None

    def step(self) -> bool:
        sim = self.sim
        if self.sub is None:
            if sim.queue_empty:  # another slot found nothing and nothing was submitted since
                return False
            self.sub = sim.hub.claim(self.caller, sim.name)
            if self.sub is None:
                sim.queue_empty = True
                return False
            self.values: list[float] = []
            self.head = []
            self.delta = lines_delta(self.sub["patch"])
            self.trusted = self.sub["contributor_streak"] >= reputation.TRUSTED_STREAK
            self.policy = verification_policy(sim.spec, trusted=self.trusted)  # fresh: no claim shapes another
        sub = self.sub
        head = self.head
        sim.r.verifier += 1
        if len(head) < self.policy.baseline_runs:
            head.append(sim.loss(sim.params[sub["parent"]], sim.seed()))
            sim.r.verifier_head += 1
            return True
        self.values.append(sim.loss(sim.subs[sub["id"]]["params"], sim.seed()))
        verdict = self.policy.decide(head, self.values, lines_delta=self.delta)
        if not settled(verdict) and len(self.values) < MAX_RUNS:
            return True
        body = outcome(verdict, self.values, head, sim.spec, sub)
        res = sim.hub.report(self.caller, sub["id"], body)
        self._tally(sub, res, body)
        if res["status"] == "accepted":  # the new head is measured afresh: the accepted runs were selected
            sim.params[res["commit"]] = sim.subs[sub["id"]]["params"]
            sim.texts[res["commit"]] = sim.subs[sub["id"]]["text"]
        self.sub = None
        return True

    def _tally(self, sub: dict[str, Any], res: dict[str, Any], body: dict[str, Any]) -> None:
        r, known = self.sim.r, self.sim.subs[sub["id"]]
        cls = r.by_class["trusted" if self.trusted else "new"]
        cls[0], cls[1] = cls[0] + 1, cls[1] + len(self.values)
        accepted, rejected = res["status"] == "accepted", res["status"] == "rejected"
        if known["liar"]:
            r.lies_verified += 1
            r.lies_rejected += rejected
            r.lies_in_chain += accepted
            r.lies_null_in_chain += accepted and known["gain"] <= 0
        else:
            r.honest_accepted += accepted
            r.honest_rejected += rejected
            r.honest_false_claims += rejected and body.get("false_claim", True)
            r.honest_null_accepted += accepted and known["gain"] <= 0
        if rejected and sub["contributor_streak"] > 0 and body.get("false_claim", True):
            r.trust_resets += 1


def null_claims(n: int, seed: int = 0) -> dict[str, tuple[int, int, float]]:
    """False accepts of null claims (a comment, claimed as a 2-sigma gain) from a trusted and from a new
    contributor, through the real hub and verifier judging: {class: (accepted, claims, re-runs per claim)}."""
    from overnight.hub.store.rows import set_streak

    out: dict[str, tuple[int, int, float]] = {}
    with tempfile.TemporaryDirectory(prefix="overnight-bench-nulls-") as tmp:
        sim = Swarm(SwarmConfig(contributors=2, liars=0.0, verifiers=1, ticks=0, seed=seed), Path(tmp))
        slot = sim.verifiers[0]
        for who, streak, name in ((sim.agents[0], reputation.TRUSTED_STREAK, "trusted"), (sim.agents[1], 0, "new")):
            accepted = runs = 0
            for i in range(n):
                set_streak(sim.hub.db, who.caller.id, streak)  # the contributor's standing, held fixed
                head = sim.head()
                base = sim.true_loss(sim.params[head])
                claimed = base - 2 * sim.sigma
                sim.submit(who, head, sim.params[head], f"null {name} {i}", claimed, base, [claimed] * 3,
                           liar=True)
                before = sim.r.lies_in_chain
                sim.queue_empty = False
                while slot.step() and slot.sub is not None:
                    pass
                accepted += sim.r.lies_in_chain - before
                runs += len(slot.values)
            out[name] = (accepted, n, runs / max(1, n))
    return out


def simulate(cfg: SwarmConfig) -> tuple[SwarmResult, Swarm]:
    with tempfile.TemporaryDirectory(prefix="overnight-bench-swarm-") as tmp:
        sim = Swarm(cfg, Path(tmp))
        return sim.run(), sim


def main(cfg: SwarmConfig, console: Console, nulls: int = 0) -> SwarmResult:
    if nulls:
        for name, (acc, n, runs) in null_claims(nulls, cfg.seed).items():
            console.print(f"null claims from a {name} contributor: {acc} of {n} accepted ({acc / n:.2%}; target "
                          f"<= 1 %), {runs:.2f} verifier re-runs per claim")
    r, sim = simulate(cfg)
    n_liars = round(cfg.contributors * cfg.liars)
    console.print(f"swarm bench: {cfg.contributors} contributors ({n_liars} liars, a lie every {cfg.lie_every:g} "
                  f"ticks each), {cfg.verifiers} verifier slots, {cfg.ticks} ticks (1 tick = 1 run), "
                  f"proposer step {cfg.step:g}, noise sigma {sim.sigma:g}, seed {cfg.seed}")
    console.print(f"contributed compute: {r.contributed} runs; verifier compute: {r.verifier} runs "
                  f"({r.verifier_head} measuring heads); ratio [bold]{r.ratio:.1%}[/] (target <= 15%: "
                  f"{'met' if r.ratio <= 0.15 else 'MISSED'})")
    console.print(f"honest claims: {r.honest_submitted} submitted, {r.honest_accepted} accepted, "
                  f"{r.honest_rejected} rejected ({r.honest_false_claims} of them counted as false claims, the rest "
                  f"missed within noise); {r.honest_null_accepted} accepted without a true gain; trust resets "
                  f"of contributors with a streak: {r.trust_resets}")
    console.print(f"lies: {r.lies_submitted} submitted, {r.lies_verified} verified, {r.lies_rejected} rejected, "
                  f"[bold]{r.lies_in_chain} in the chain[/] ({r.lies_null_in_chain} without a true gain); stale (no verifier runs): {r.stale}; "
                  f"replays refused: {r.replayed}")
    for name, (n, runs) in r.by_class.items():
        console.print(f"verifier re-runs per claim, {name} contributors: {runs / max(1, n):.2f} over {n} claim(s)")
    console.print(f"chain: {r.chain} verified commits, true loss {r.start_loss:.4f} -> {r.final_loss:.4f}; "
                  f"verifier slots busy {r.busy_ticks / max(1, cfg.ticks * cfg.verifiers):.0%} of the time; metric from {sim.source}; "
                  f"{r.seconds:.1f}s")
    return r
