"""overnight's own benchmarks: each prints what it measured, side by side in one run."""
