"""The Optuna proposer's sampler side: which sampler, when it takes a turn from the walk, and how its
point is made new (a point the study holds is asked again; a finite box is enumerated to its end)."""

from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Callable
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from overnight.core.spec import SearchParam
from overnight.core.status import Status
from overnight.proposers.base import StopProposing
from overnight.proposers.space import distance, grid

STARTUP = 8  # TPE's random start-up trials (walk moves and told heads count toward them)
RESAMPLE = 10  # asks before the sampler may repeat a point the study already holds
STALL = 3  # decided experiments without a keep after which the walk and the sampler take turns
# (chosen with `overnight bench search`: the walk alone never leaves a categorical choice whose
# continuous constants are tuned for it; the sampler alone is lost in a narrow valley; docs/search.md)


def make_sampler(kind: str = "gp", seed: int | None = None, strict: bool = False) -> optuna.samplers.BaseSampler:
    """A Gaussian process by default (`overnight bench search`, docs/search.md: at 30 experiments it
    beats TPE on 9 of 13 tuning tracks); TPE where torch, which the GP needs, is not installed
    (`strict`: an error instead)."""
    if kind == "gp":
        try:
            import torch  # noqa: F401  (Optuna's GP sampler runs on it)
        except ImportError:
            if strict:
                raise ValueError("the gp sampler needs torch: pip install torch") from None
            kind = "tpe"
        else:
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=STARTUP)
    if kind == "tpe":
        return optuna.samplers.TPESampler(n_startup_trials=STARTUP, multivariate=True, seed=seed)
    if kind == "tpe-independent":
        return optuna.samplers.TPESampler(n_startup_trials=STARTUP, multivariate=False, seed=seed)
    if kind == "cmaes":
        try:
            import cmaes  # noqa: F401  (optional: Optuna's CMA-ES needs it)
        except ImportError:
            raise ValueError("the cmaes sampler needs the cmaes package: pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(n_startup_trials=STARTUP, seed=seed, warn_independent_sampling=False)
    if kind == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {kind!r}: gp, tpe, tpe-independent, cmaes or random")


def stalled(trials: list[FrozenTrial]) -> bool:
    """The sampler's turn: STALL or more decisions since the last keep, and the last proposal was the walk's."""
    proposed = [t for t in trials if not t.user_attrs.get("orphan") and not t.user_attrs.get("head")]
    since = 0
    for t in reversed([t for t in proposed if "status" in t.user_attrs]):
        if t.user_attrs["status"] == Status.KEEP:
            break
        since += 1
    return since >= STALL and "move" in proposed[-1].user_attrs


def sample(study: optuna.Study, dists: dict[str, BaseDistribution], params: list[SearchParam],
           key: Callable[[dict[str, Any]], Any], tried: set[Any], head: dict[str, Any],
           values: Callable[[], dict[Any, float]]) -> optuna.Trial:
    """The sampler's point; one the study already holds is asked again (a few times at most). In a
    finite box the untried point nearest the head instead, and when none is left, the end."""
    box = grid(params)
    for _ in range(1 if box is not None else RESAMPLE - 1):
        trial = study.ask(dists)
        if key(trial.params) not in tried:
            return trial
        trial.set_user_attr("orphan", True)  # never ran: not a tried point
        study.tell(trial, state=TrialState.FAIL)
    if box is None:
        return study.ask(dists)
    left = [x for x in box if key(x) not in tried]
    if left:
        point, move = min(left, key=lambda x: distance(params, x, head)), "(untried)"
    else:
        point, move = _second_look(study, box, key, head, values()), "(again)"
    if point is None:
        raise StopProposing(f"all {len(box)} points of the [[search]] box have been measured, and none left "
                            "measured better than the head: nothing left to propose (widen a range or add "
                            "constants to search further)")
    study.enqueue_trial(point, user_attrs={"move": move})
    return study.ask(dists)


def _second_look(study: optuna.Study, box: list[dict[str, Any]], key: Callable[[dict[str, Any]], Any],
                 head: dict[str, Any], values: dict[Any, float]) -> dict[str, Any] | None:
    """A finite box measured to its end: the point measured better than the head (`values`: lower is
    better) without being kept, proposed once more (a fresh decision on fresh runs). None: the box is
    done (a proposal still waiting that a new head sends back reopens the loop's proposing)."""
    asked = Counter(key(t.params) for t in study.get_trials(deepcopy=False)
                    if not t.user_attrs.get("orphan") and not t.user_attrs.get("head"))
    bar = values.get(key(head))
    better = [(values[key(x)], i) for i, x in enumerate(box)
              if bar is not None and key(x) in values and values[key(x)] < bar and asked[key(x)] < 2]
    return box[min(better)[1]] if better else None
