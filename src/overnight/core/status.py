"""The one status vocabulary: what an experiment, a run or a hub submission can end as.

`Status` is a `StrEnum`, so a member compares equal to its string and is stored as it in
every database; code writes `Status.KEEP`, never the bare word.
"""

from __future__ import annotations

from enum import StrEnum


class Status(StrEnum):
    # decided by the judge
    KEEP = "keep"
    DISCARD = "discard"
    # a run that produced no usable metric
    CRASH = "crash"
    TIMEOUT = "timeout"
    OOM = "oom"
    NAN = "nan"
    NO_METRIC = "no_metric"
    # a candidate that never ran
    INVALID = "invalid"
    NO_CHANGE = "no_change"
    ERROR = "error"
    # not yet decided
    RUNNING = "running"
    INTERRUPTED = "interrupted"
    # a run's own outcome when it produced a metric
    OK = "ok"


DECIDED = frozenset({Status.KEEP, Status.DISCARD})
RUN_FAILURES = frozenset({Status.CRASH, Status.TIMEOUT, Status.OOM, Status.NAN, Status.NO_METRIC})
NEVER_RAN = frozenset({Status.INVALID, Status.NO_CHANGE, Status.ERROR})
FINAL = DECIDED | RUN_FAILURES | NEVER_RAN
PENDING = frozenset({Status.RUNNING, Status.INTERRUPTED})
