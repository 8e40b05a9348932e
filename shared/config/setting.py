"""One setting, declared once: `setting(env, default, kind, doc)` is a dataclass field that also
carries its environment variable, how its text is parsed and range-checked, and its line of doc.

`Settings` is built from these fields, and so are `ENV_VARS`, `from_env` and the README's
configuration table (`python -m shared.config.table`): a name, default or range is written in
one place only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

SETTING = "doppel.setting"  # The key of a field's `Setting` in its metadata.
T = TypeVar("T")


@dataclass(frozen=True)
class Kind(Generic[T]):
    """How a variable's text becomes a value: `parse` raises ValueError saying what is expected;
    `values` says it for the docs; `format` writes a value back as the variable's text. Typed, so
    mypy checks a declaration's default and annotation against its kind."""

    parse: Callable[[str], T]
    values: str = ""
    format: Callable[[T], str] = str


@dataclass(frozen=True)
class Setting:
    """A field's declaration: its environment variable, kind, doc and (for the docs, when the
    default is computed at run time) how the default reads."""

    env: str
    kind: Kind[Any]
    doc: str
    secret: bool = False
    shown_default: str = ""


def setting(
    env: str,
    default: T,
    kind: Kind[T],
    doc: str,
    *,
    secret: bool = False,
    shown_default: str = "",
) -> T:
    """A `Settings` field read from `env`. A secret is never shown in repr or in errors."""
    declared = Setting(env, kind, doc, secret, shown_default)
    return field(default=default, repr=not secret, metadata={SETTING: declared})


def number_text(value: float) -> str:
    """A number as a user writes it: 8388608, 0.15, 2.5; infinity is `off`."""
    if math.isinf(value):
        return "off"
    return str(int(value)) if value == int(value) else str(value)


def _range_text(low: float | None, high: float | None, above: float | None = None) -> str:
    if above is not None:
        return f"more than {number_text(above)}"
    if low is not None and high is not None:
        return f"{number_text(low)} to {number_text(high)}"
    if low is not None:
        return f"{number_text(low)} or more"
    return "any"


def integer(low: int | None = None, high: int | None = None, *, step: int = 1) -> Kind[int]:
    """A whole number in [low, high] (either end open when None), a multiple of `step`."""
    values = _range_text(low, high) + (f", a multiple of {step}" if step != 1 else "")

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise ValueError(f"expected a whole number ({values}), got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high) or value % step:
            raise ValueError(f"must be {values}: {value}")
        return value

    return Kind(parse, values)


def number(
    low: float | None = None, high: float | None = None, *, above: float | None = None
) -> Kind[float]:
    """A finite number in [low, high], or more than `above`."""
    values = _range_text(low, high, above)

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number ({values}), got {text!r}") from None
        inside = (
            math.isfinite(value)
            and (low is None or value >= low)
            and (high is None or value <= high)
            and (above is None or value > above)
        )
        if not inside:
            raise ValueError(f"must be {values}: {value}")
        return value

    return Kind(parse, values, repr)


def choice(*options: str) -> Kind[str]:
    """One of `options` (case and surrounding spaces ignored)."""
    values = " or ".join(options)

    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in options:
            raise ValueError(f"expected {values}: {text!r}")
        return value

    return Kind(parse, values)


def _flag(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


TEXT = Kind(str)
FLAG = Kind(_flag, "true or false", lambda value: "true" if value else "false")
PORT = integer(0, 65535)
COUNT = integer(1)  # At least one.
AMOUNT = integer(0)  # 0 or more; 0 usually means "none" or "no cap".
POSITIVE = number(above=0)
SECONDS = POSITIVE  # A duration: more than 0.
MONEY = number(0)
