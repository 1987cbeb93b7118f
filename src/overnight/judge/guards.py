"""Guards: bounds on secondary measurements that turn any keep into a discard."""

from __future__ import annotations

from overnight.core.spec import Spec


def guard_violation(spec: Spec, measurements: dict[str, float]) -> str | None:
    """The first guard the measurements break, as a sentence, or None."""
    return next((v for g in spec.guard if (v := g.violation(measurements))), None)
