"""Held-out tuning tracks of `overnight bench search --held-out`: written by someone else after the
walk was tuned on the shipped five, to see whether it generalises (docs/search.md). Same form as
`search_tracks.TUNING`: minimize, every run adds N(0, sigma), the optimum is exact over the box."""

from __future__ import annotations

import itertools
import math
from typing import Any

from overnight.bench.search_tracks import Tuning

L10 = math.log10


def _sparse(p: dict[str, Any]) -> float:  # six constants, two matter
    return 1.0 + 0.4 * (L10(p["LR"]) - L10(2e-3)) ** 2 + 3.0 * (p["LS"] - 0.1) ** 2


SPARSE = [{"name": "LR", "low": 1e-5, "high": 1.0, "log": True}, {"name": "LS", "low": 0.0, "high": 0.3},
          {"name": "EPS", "low": 1e-10, "high": 1e-6, "log": True}, {"name": "CLIP", "low": 0.1, "high": 10.0},
          {"name": "BETA1", "low": 0.8, "high": 0.99}, {"name": "ACCUM", "low": 1, "high": 8, "int": True}]
SPARSE_START = {"LR": 3e-2, "LS": 0.0, "EPS": 1e-8, "CLIP": 1.0, "BETA1": 0.9, "ACCUM": 1}
HEAD_EFFECT = {1: 0.10, 2: 0.04, 4: 0.0, 8: 0.02}


def _ints(p: dict[str, Any]) -> float:  # deeper wants narrower; a head dimension of 128 is best
    layers, heads, width = p["LAYERS"], p["HEADS"], p["WIDTH"]
    return (1.0 + 0.02 * (layers - 8) ** 2 + 0.15 * (math.log2(width) - 9.0 - (8 - layers) / 4.0) ** 2
            + 0.03 * (math.log2(width / heads) - 7.0) ** 2 + HEAD_EFFECT[heads])


def _rosen(p: dict[str, Any]) -> float:  # a curved valley, y = x^2, in log10 LR x log10 WD
    x, y = L10(p["LR"] / 3e-4), L10(p["WD"] / 1e-3)
    return 1.0 + 0.08 * (x - 1.0) ** 2 + (y - x * x) ** 2


def _bound(p: dict[str, Any]) -> float:  # DROPOUT best at its low bound, EMA at its high one
    d = p["DROPOUT"]
    return 1.0 + 0.3 * d + 0.5 * d * d + 0.3 * (L10(p["LR"]) + 3.0) ** 2 + 1.5 * (0.999 - p["EMA"])


def _far(p: dict[str, Any]) -> float:  # LR starts 3 decades above its best, where the loss saturates
    d = L10(p["LR"]) - L10(1e-4)
    return 1.0 + 0.25 * d * d / (1 + d * d / 9) + (p["WD"] - 0.1) ** 2 + 0.2 * ((p["WARMUP"] - 500) / 1000) ** 2


SCHED_EFFECT = {"constant": 0.08, "linear": 0.03, "wsd": 0.01, "cosine": 0.0}
SCHED_WARMUP = {"constant": 0, "linear": 300, "wsd": 800, "cosine": 1500}


def _sched(p: dict[str, Any]) -> float:  # each schedule has its own best warmup
    s = p["SCHED"]
    return 1.0 + SCHED_EFFECT[s] + 0.1 * ((p["WARMUP"] - SCHED_WARMUP[s]) / 1000) ** 2 + 0.3 * (L10(p["LR"]) + 3) ** 2


def _ints_optimum() -> float:
    return min(_ints({"LAYERS": n, "HEADS": h, "WIDTH": w})
               for n, h, w in itertools.product(range(1, 13), HEAD_EFFECT, range(64, 1025)))


def _sparse_track(name: str, sigma: float) -> Tuning:
    return Tuning(name, f"6 constants, 2 matter (LR log, LS linear); sigma {sigma}", SPARSE, dict(SPARSE_START),
                  _sparse, 1.0, sigma)


HELD_OUT = [
    _sparse_track("sparse6", 0.02),
    _sparse_track("sparse6-quiet", 0.005),
    _sparse_track("sparse6-noisy", 0.1),
    Tuning("intheavy", "LAYERS int 1..12, HEADS choices 1/2/4/8, WIDTH int log 64..1024; the best width falls "
           "with depth; sigma 0.02",
           [{"name": "LAYERS", "low": 1, "high": 12, "int": True}, {"name": "HEADS", "choices": [1, 2, 4, 8]},
            {"name": "WIDTH", "low": 64, "high": 1024, "log": True, "int": True}],
           {"LAYERS": 2, "HEADS": 1, "WIDTH": 128}, _ints, _ints_optimum(), 0.02),
    Tuning("rosen", "a curved valley (y = x^2) in log10 LR x log10 WD; sigma 0.02",
           [{"name": "LR", "low": 1e-5, "high": 1.0, "log": True}, {"name": "WD", "low": 1e-6, "high": 1.0, "log": True}],
           {"LR": 1e-4, "WD": 1e-4}, _rosen, 1.0, 0.02),
    Tuning("atbound", "DROPOUT best at its low bound, EMA at its high bound, LR log; sigma 0.02",
           [{"name": "DROPOUT", "low": 0.0, "high": 0.5}, {"name": "LR", "low": 1e-5, "high": 1.0, "log": True},
            {"name": "EMA", "low": 0.9, "high": 0.999}],
           {"DROPOUT": 0.2, "LR": 3e-3, "EMA": 0.95}, _bound, 1.0, 0.02),
    Tuning("farstart", "LR starts 3 decades above its best (saturating), WD linear, WARMUP int; sigma 0.02",
           [{"name": "LR", "low": 1e-6, "high": 1.0, "log": True}, {"name": "WD", "low": 0.0, "high": 0.3},
            {"name": "WARMUP", "low": 0, "high": 5000, "int": True}],
           {"LR": 1e-1, "WD": 0.0, "WARMUP": 2000}, _far, 1.0, 0.02),
    Tuning("schedwarm", "SCHED (4 choices) x WARMUP (int): each schedule its own best warmup; LR log; sigma 0.02",
           [{"name": "SCHED", "choices": ["constant", "linear", "wsd", "cosine"]},
            {"name": "WARMUP", "low": 0, "high": 3000, "int": True}, {"name": "LR", "low": 1e-5, "high": 1.0, "log": True}],
           {"SCHED": "constant", "WARMUP": 0, "LR": 3e-3}, _sched, 1.0, 0.02),
]
