"""Dollars per token: a built-in price table, overridable per track or per shell.

Prices are US dollars per million tokens (input, output), matched by the longest
model-name prefix. Overrides, later wins: `<track>/.overnight/prices.toml`, then
the file or inline JSON named by `$OVERNIGHT_PRICES`. A model with no price costs
0 (local servers), so `--max-cost` never stops it.
"""

from __future__ import annotations

import json
import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# (input, output) $/Mtok, public list prices; override when they change.
DEFAULT_PRICES: dict[str, tuple[float, float]] = {
    "gpt-4o-mini": (0.15, 0.60),
    "gpt-4o": (2.50, 10.00),
    "gpt-4.1-nano": (0.10, 0.40),
    "gpt-4.1-mini": (0.40, 1.60),
    "gpt-4.1": (2.00, 8.00),
    "gpt-5-nano": (0.05, 0.40),
    "gpt-5-mini": (0.25, 2.00),
    "gpt-5": (1.25, 10.00),
    "o3-mini": (1.10, 4.40),
    "o4-mini": (1.10, 4.40),
    "o3": (2.00, 8.00),
    "claude-3-5-haiku": (0.80, 4.00),
    "claude-haiku-4": (1.00, 5.00),
    "claude-3-7-sonnet": (3.00, 15.00),
    "claude-sonnet-4": (3.00, 15.00),
    "claude-opus-4": (15.00, 75.00),
    "claude-opus-4-5": (5.00, 25.00),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-pro": (1.25, 10.00),
}


class PriceError(Exception):
    """An override file that cannot be read; the message names the file."""


@dataclass(frozen=True)
class Price:
    input: float  # $ per million input tokens
    output: float  # $ per million output tokens

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        return (tokens_in * self.input + tokens_out * self.output) / 1e6


FREE = Price(0.0, 0.0)


def _parse_table(data: dict[str, Any], where: str) -> dict[str, tuple[float, float]]:
    """Accept `"model" = [in, out]` or `"model" = {input = .., output = ..}`, optionally under [prices]."""
    data = data.get("prices", data)
    out: dict[str, tuple[float, float]] = {}
    for model, value in data.items():
        try:
            if isinstance(value, dict):
                out[model] = (float(value["input"]), float(value["output"]))
            else:
                a, b = value
                out[model] = (float(a), float(b))
        except (KeyError, TypeError, ValueError):
            raise PriceError(f"{where}: price for {model!r} must be [input, output] in $/Mtok "
                             f"or {{input = .., output = ..}}, got {value!r}") from None
    return out


def load_overrides(state_dir: Path | None = None, env: dict[str, str] | None = None) -> dict[str, tuple[float, float]]:
    env = os.environ if env is None else env
    table: dict[str, tuple[float, float]] = {}
    if state_dir is not None and (state_dir / "prices.toml").is_file():
        f = state_dir / "prices.toml"
        try:
            table.update(_parse_table(tomllib.loads(f.read_text()), str(f)))
        except tomllib.TOMLDecodeError as e:
            raise PriceError(f"{f}: not valid TOML: {e}") from None
    raw = env.get("OVERNIGHT_PRICES", "").strip()
    if raw:
        try:
            if raw.startswith("{"):
                data = json.loads(raw)
            elif raw.endswith(".json"):
                data = json.loads(Path(raw).read_text())
            else:
                data = tomllib.loads(Path(raw).read_text())
        except (OSError, ValueError) as e:
            raise PriceError(f"$OVERNIGHT_PRICES ({raw[:80]}): {e}") from None
        table.update(_parse_table(data, "$OVERNIGHT_PRICES"))
    return table


class PriceTable:
    def __init__(self, overrides: dict[str, tuple[float, float]] | None = None):
        self.table = {**DEFAULT_PRICES, **(overrides or {})}

    @classmethod
    def for_state(cls, state_dir: Path | None) -> PriceTable:
        return cls(load_overrides(state_dir))

    def price(self, model: str) -> Price:
        """Exact name first, then the longest prefix (dated snapshots share their family's price)."""
        if model in self.table:
            return Price(*self.table[model])
        name = model.split("/")[-1]  # openrouter-style "openai/gpt-4o"
        best = max((k for k in self.table if name.startswith(k)), key=len, default=None)
        return Price(*self.table[best]) if best else FREE

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        return self.price(model).cost(tokens_in, tokens_out)
