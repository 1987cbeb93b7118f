"""Frozen problem definition: the hidden optimum, weights and noise level.

Only run.py/evaluate.py (trusted, frozen) read this file. Agents must not
edit it; the point of the track is to find the optimum by experiment.
"""

# Standard deviation of the Gaussian evaluation noise.
SIGMA = 0.05

# name -> (optimum, weight). loss = sum_i weight_i * (x_i - optimum_i) ** 2
# Weights are chosen so that each coordinate contributes O(1) at the
# baseline in params.py, whatever its natural scale.
OPTIMUM = {
    "LEARNING_RATE": (0.003, 10000.0),
    "MOMENTUM": (0.9, 4.0),
    "WARMUP_STEPS": (100, 0.0001),
    "WEIGHT_DECAY": (0.01, 10.0),
}
