"""The local quadratic model behind the Optuna walk's `(model)` move: where it says the bottom is,
what it refuses to say, and a real loop that lands near a far optimum in one move."""

from __future__ import annotations

import random

from test_optuna import run, track_with

from overnight.proposers.surrogate import model_minimum


def bowl(x: list[float]) -> float:
    return 3 * (x[0] - 0.3) ** 2 + 1 * (x[1] - 0.6) ** 2 + 2 * (x[0] - 0.3) * (x[1] - 0.6)


def test_a_noisy_bowl_is_found_from_points_around_the_head():
    rng = random.Random(0)
    head = [0.5, 0.5]
    pts = [[min(1, max(0, h + rng.uniform(-0.3, 0.3))) for h in head] for _ in range(20)]
    vals = [bowl(p) + rng.gauss(0, 0.002) for p in pts]
    found = model_minimum(pts, vals, head)
    assert found is not None
    (x, y), gain = found
    assert abs(x - 0.3) < 0.05 and abs(y - 0.6) < 0.05, found  # cross term included
    assert abs(gain - (bowl(head) - bowl([x, y]))) < 0.01


def test_the_step_stays_near_the_points_it_was_fitted_on():
    head = [0.9, 0.5]
    pts = [[0.9 + dx, 0.5 + dy] for dx in (-0.05, 0, 0.05) for dy in (-0.05, 0, 0.05)]
    vals = [(p[0] - 0.1) ** 2 + (p[1] - 0.5) ** 2 for p in pts]  # the bottom is far away, at x = 0.1
    (x, _), _ = model_minimum(pts, vals, head)
    assert 0.9 - 1.5 * 0.05 - 1e-9 <= x < 0.9  # it goes that way, no further than 1.5x the points' spread


def test_an_axis_seen_at_two_values_is_not_moved_and_no_data_no_model():
    head = [0.5, 0.5]
    pts = [[0.5 + dx, y] for dx in (-0.2, -0.1, 0, 0.1, 0.2) for y in (0.5, 0.7)]
    vals = [(p[0] - 0.4) ** 2 + 0.3 * p[1] for p in pts]
    (x, y), _ = model_minimum(pts, vals, head)
    assert abs(x - 0.4) < 1e-6 and y == 0.5  # linear in y as far as two values tell: held at the head
    assert model_minimum(pts[:2], vals[:2], head) is None
    hill = [-(p[0] - 0.5) ** 2 for p in pts]
    assert model_minimum(pts, hill, head) is None  # curved the wrong way: no bottom to propose


def test_values_from_hostile_runs_give_no_model_rather_than_an_error():
    """A candidate prints its own metric on a track without an evaluator: overflowing, NaN or flat values."""
    rng = random.Random(1)
    pts = [[rng.random(), rng.random()] for _ in range(20)]
    for vals in ([1e308 * (-1) ** i for i in range(20)], [float("nan")] * 5 + [1.0] * 15, [0.0] * 20,
                 [float("inf")] + [bowl(p) for p in pts[1:]]):
        found = model_minimum(pts, vals, [0.5, 0.5])
        assert found is None or all(0.0 <= v <= 1.0 for v in found[0]), (vals[:3], found)


def test_a_real_loop_jumps_to_a_far_optimum_with_the_model(tmp_path):
    # The optimum sits at LR = 3e-4, WD = 0.31 from LR = 0.05, WD = 0.05: the ring walk creeps by x2 and
    # quarter-range steps; the model, once the walk has three values on an axis, lands near it in one move.
    search = ('[[search]]\nfile = "params.py"\nname = "LR"\nlow = 1e-5\nhigh = 1.0\nlog = true\n'
              '[[search]]\nfile = "params.py"\nname = "WD"\nlow = 0.0\nhigh = 1.0\n')
    track = track_with(tmp_path, "LR = 0.05\nWD = 0.05\n",
                       "(__import__('math').log10(LR / 3e-4)) ** 2 + 4 * (WD - 0.31) ** 2", search)
    exps = run(track, 10)
    model = [e for e in exps if e.meta.get("move") == "(model)"]
    assert model, [(e.description, e.status) for e in exps]
    best = min(e.metric for e in exps if e.status == "keep")
    assert best < 0.01, [(e.description, e.metric, e.status) for e in exps]  # the walk alone: 1.04 after 10
    assert any(e.status == "keep" and e.metric == best for e in model)


def test_a_head_outside_the_box_is_not_taught_at_the_clipped_point(tmp_path):
    """An attacker's find: LR = 5.0 with a box up to 1.0 was taught at LR = 1.0 with the value measured at 5.0, and
    the model fitted that wrong point and proposed upwards."""
    from overnight.proposers.optuna import OptunaProposer
    from overnight.track import Track

    search = '[[search]]\nfile = "params.py"\nname = "LR"\nlow = 1e-4\nhigh = 1.0\nlog = true\n'
    track = track_with(tmp_path, "LR = 5.0\n", "(__import__('math').log10(LR / 0.01)) ** 2", search)
    exps = run(track, 6)
    told = [t.params for t in OptunaProposer(Track(track.dir), "t").study.trials if t.user_attrs.get("head")]
    assert {"LR": 1.0} not in told
    assert all(e.status == "keep" for e in exps if e.meta.get("move") == "(model)"), [
        (e.description, e.status) for e in exps]


def test_a_grid_whose_high_is_off_the_grid_is_never_left(tmp_path):
    """Found in review: 0..1 with step 0.35 had X = 1.0 proposed (snap clamped to `high`, off the grid)."""
    search = '[[search]]\nfile = "params.py"\nname = "X"\nlow = 0.0\nhigh = 1.0\nstep = 0.35\n'
    track = track_with(tmp_path, "X = 0.35\n", "(X - 0.9) ** 2", search)
    exps = run(track, 4)
    xs = {float(e.description.split("=")[1]) for e in exps if e.description.startswith("X=")}
    assert xs and all(abs(x / 0.35 - round(x / 0.35)) < 1e-6 for x in xs), xs
