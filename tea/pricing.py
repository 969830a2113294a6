"""The GenAI price table (a TOML file the user edits; the shipped default is tea/data/prices.toml):
per model, the price of 1 000 input and 1 000 output tokens, from which an event's ``cost`` follows."""
from __future__ import annotations

import logging
import math
import os
import shutil
import tomllib
from importlib import resources
from typing import Any

from tea.errors import ConfigError

log = logging.getLogger(__name__)
FILE_NAME = "prices.toml"
MAX_MODELS = 10_000


def default_path() -> str:
    return str(resources.files("tea").joinpath("data", FILE_NAME))


class PriceTable:
    """``lookup(model)`` → (input, output) per 1 000 tokens, or None: the model's own entry, else the
    longest entry its name starts with."""

    def __init__(self, prices: dict[str, tuple[float, float]], path: str | None = None) -> None:
        self.prices = prices
        self.path = path
        self._by_length = sorted(prices, key=len, reverse=True)
        self._found: dict[str, tuple[float, float] | None] = {}

    def lookup(self, model: str) -> tuple[float, float] | None:
        found = self._found.get(model, False)
        if found is False:
            found = self.prices.get(model)
            if found is None:
                found = next((self.prices[k] for k in self._by_length if model.startswith(k)), None)
            if len(self._found) < MAX_MODELS:  # (bounded: model names come from clients)
                self._found[model] = found
        return found  # type: ignore[return-value]

    def cost(self, model: str, input_tokens: int | None, output_tokens: int | None) -> float | None:
        """What the tokens cost; the arithmetic tea/_otlpfast.c repeats step by step (same float)."""
        price = self.lookup(model)
        if price is None or (input_tokens is None and output_tokens is None):
            return None
        total = 0.0
        if input_tokens is not None:
            total += input_tokens * price[0] / 1000
        if output_tokens is not None:
            total += output_tokens * price[1] / 1000
        return total

    @classmethod
    def parse(cls, text: str, path: str) -> "PriceTable":
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"invalid price table {path}: {exc}") from None
        models = document.get("models", {})
        if not isinstance(models, dict):
            raise ConfigError(f"invalid price table {path}: [models] must be a table of model = {{ input, output }}")
        prices = {}
        for model, entry in models.items():
            prices[str(model)] = (_price(entry, "input", model, path), _price(entry, "output", model, path))
        return cls(prices, path)

    @classmethod
    def load(cls, path: str | None, data_dir: str) -> "PriceTable":
        """The table at ``path``; without one, <data_dir>/prices.toml, written from the shipped default
        the first time (so there is a file to edit), or the shipped default itself if it cannot be."""
        if path is None:
            path = os.path.join(data_dir, FILE_NAME)
            if not os.path.exists(path):
                try:
                    os.makedirs(data_dir, exist_ok=True)
                    shutil.copyfile(default_path(), path)
                except OSError as exc:
                    log.warning("cannot write the default price table to %s (%s); using the shipped one", path, exc)
                    path = default_path()
        try:
            with open(path, encoding="utf-8") as fh:
                text = fh.read()
        except OSError as exc:
            raise ConfigError(f"invalid genai.price_table={path!r}: {exc.strerror or exc}") from None
        return cls.parse(text, path)


def _price(entry: Any, key: str, model: str, path: str) -> float:
    value = entry.get(key) if isinstance(entry, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise ConfigError(f"invalid price table {path}: models.{model!r}.{key} must be a number >= 0 "
                          "(the price of 1 000 tokens)")
    return float(value)
