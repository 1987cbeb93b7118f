"""Plain data and rules, no I/O: the spec, status vocabulary, measurement parsing."""
