"""Editable constants for the noisy-quadratic track.

Each constant is a module-level single-line assignment so the Optuna
proposer can rewrite it. The evaluator only ever sees these values through
the params.json artifact written by run.py.
"""

LEARNING_RATE = 0.01  # the evaluator knows the best value; you do not
MOMENTUM = 0.5
WARMUP_STEPS = 40
WEIGHT_DECAY = 0.2
