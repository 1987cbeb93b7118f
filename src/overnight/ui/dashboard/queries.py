"""What the dashboard asks the ledger, memoised on the ledger file's stat; the SQL is in `storage.queries`."""

from __future__ import annotations

import threading
import time
from typing import Any

from overnight.execution import fingerprint
from overnight.storage import queries as q
from overnight.storage.ledger import Ledger

LIST_COLUMNS = q.LIST_COLUMNS
DESCRIPTION_CHARS = q.DESCRIPTION_CHARS
clean, list_rows, experiment_detail, idea_dict = q.clean, q.list_rows, q.experiment_detail, q.idea_dict


class _Memo:
    """Answers that only change when the ledger file does: a poll of an idle ledger costs two stat() calls."""

    MAX_AGE = 10.0  # recompute anyway now and then, in case a write did not touch the files' stat

    def __init__(self) -> None:
        self.items: dict[tuple, tuple[tuple, float, Any]] = {}
        self.lock = threading.Lock()

    def get(self, ledger: Ledger, key: tuple, make: Any) -> Any:
        sig = q.file_signature(ledger)
        full = (id(ledger), *key)
        hit = self.items.get(full)
        now = time.monotonic()
        if sig is not None and hit is not None and hit[0] == sig and now - hit[1] < self.MAX_AGE:
            return hit[2]
        value = make()
        if sig is not None:
            with self.lock:
                if len(self.items) > 256:
                    self.items.clear()
                self.items[full] = (sig, now, value)
        return value


_memo = _Memo()


def resolve_tag(ledger: Ledger, tag: str | None) -> str | None:
    return tag or _memo.get(ledger, ("current_tag",), lambda: ledger.get("current_tag"))


def version(ledger: Ledger, tag: str | None) -> str:
    """A fingerprint of everything the pages show; it changes when anything they show changes."""
    return _memo.get(ledger, ("version", tag), lambda: q.version(ledger, tag))


def noise(platforms: list[dict[str, Any]], head_key: str | None) -> dict[str, Any] | None:
    """The headline noise floor: the head's platform if it was measured there, else the most measured one,
    in the words `overnight status` uses; every platform's estimate is listed beside it."""
    if not platforms:
        return None
    main = next((p for p in platforms if p["key"] == head_key), platforms[0])
    named = [{**p, "name": _name(p)} for p in platforms]
    main_named = next(p for p in named if p["key"] == main["key"])
    return {"sd": main["sd"], "platform": main_named["name"],
            "source": f"{main['runs']} runs of {main['versions']} kept version(s) on {main_named['name']}",
            "platforms": named}


def _name(p: dict[str, Any]) -> str:
    try:
        return fingerprint.describe(p["platform"])
    except (KeyError, TypeError):  # a platform recorded without the usual fields
        return p["key"] or "?"


def summary(ledger: Ledger, tag: str | None, minimize: bool) -> dict[str, Any]:
    s = q.summary(ledger, tag, minimize)
    s["noise"] = noise(s.pop("noise_platforms"), s.pop("head_platform"))
    return s
