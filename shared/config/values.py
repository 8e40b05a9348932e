"""Kinds of settings whose text is a list (`name=value,...`): parsed, checked and written back.

Each writes its default back in the syntax it parses, so the README shows defaults a user can
copy, and a test checks `parse(format(default)) == default` for every setting.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

from shared.config.setting import Kind, number_text
from shared.fault_switches import parse_spec
from shared.roles import ROLE_NAMES, Role

WRITER_NAMES = ("anthropic", "openai", "procedural")


def _items(text: str) -> Iterator[str]:
    return filter(None, (part.strip() for part in text.split(",")))


def _non_negative(text: str) -> float:
    value = float(text)
    if not value >= 0:  # NaN too.
        raise ValueError(f"must be 0 or more: {value}")
    return value


def _name_numbers(text: str) -> tuple[tuple[str, float], ...]:
    pairs = []
    for item in _items(text):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or not name.replace("_", "").isalnum() or name.lower() != name:
            raise ValueError(f"expected name=number, got {item!r}")
        pairs.append((name, float(number)))
    return tuple(pairs)


NAME_NUMBERS = Kind(
    _name_numbers,
    "name=number,... (names of lowercase letters, digits and _)",
    lambda pairs: ",".join(f"{name}={number_text(value)}" for name, value in pairs),
)


def _slow_operations(text: str) -> tuple[tuple[str, float, float], ...]:
    items = []
    for item in _items(text):
        pattern, sep, levels = item.rpartition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"expected pattern=warning:critical, got {item!r}")
        if levels.strip() == "off":
            warning = critical = float("inf")
        else:
            warning_text, colon, critical_text = levels.partition(":")
            if not colon:
                raise ValueError(f"expected warning:critical seconds or off, got {levels!r}")
            warning, critical = float(warning_text), float(critical_text)
            if not 0 < warning < critical:
                raise ValueError(f"need 0 < warning < critical in {item!r}")
        items.append((pattern.strip(), warning, critical))
    return tuple(items)


SLOW_OPERATIONS = Kind(
    _slow_operations,
    "glob=warning:critical seconds or glob=off, ...",
    lambda items: ",".join(
        f"{glob}=off"
        if math.isinf(warning)
        else f"{glob}={number_text(warning)}:{number_text(critical)}"
        for glob, warning, critical in items
    ),
)


def _silent_services(text: str) -> tuple[tuple[str, float], ...]:
    items = []
    for item in _items(text):
        pattern, sep, level = item.rpartition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"expected pattern=seconds or pattern=off, got {item!r}")
        seconds = float("inf") if level.strip() == "off" else float(level)
        if not seconds >= 10.0:  # NaN too.
            raise ValueError(f"need at least 10 seconds (or off) in {item!r}")
        items.append((pattern.strip(), seconds))
    return tuple(items)


SILENT_SERVICES = Kind(
    _silent_services,
    "glob=seconds (10 or more) or glob=off, ...",
    lambda items: ",".join(f"{glob}={number_text(seconds)}" for glob, seconds in items),
)


def _writer_chain(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in WRITER_NAMES]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"expected distinct names among {', '.join(WRITER_NAMES)}: {text!r}")
    return names


WRITER_CHAIN = Kind(_writer_chain, "distinct names among " + ", ".join(WRITER_NAMES), ",".join)


def _model_prices(text: str) -> tuple[tuple[str, float, float], ...]:
    prices = []
    for item in _items(text):
        model, sep, pair = item.partition("=")
        price_in, slash, price_out = pair.partition("/")
        if not sep or not slash or not model.strip():
            raise ValueError(f"expected model=input/output, got {item!r}")
        prices.append((model.strip(), _non_negative(price_in), _non_negative(price_out)))
    return tuple(prices)


MODEL_PRICES = Kind(
    _model_prices,
    "model=input/output,... (USD per million tokens, 0 or more)",
    lambda prices: ",".join(f"{model}={number_text(i)}/{number_text(o)}" for model, i, o in prices),
)


def _fault_spec(text: str) -> str:
    parse_spec(text)
    return text


FAULT_SPEC = Kind(_fault_spec, "name=value,... (docs/reliability.md)")


def _role(text: str) -> str:
    return Role.parse(text).label


ROLE = Kind(_role, " or ".join(ROLE_NAMES))


def _client_roles(text: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in _items(text):
        name, sep, role = item.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected certificate-name=role, got {item!r}")
        pairs.append((name.strip(), _role(role)))
    return tuple(pairs)


CLIENT_ROLES = Kind(
    _client_roles,
    "certificate-name=role,...",
    lambda pairs: ",".join(f"{name}={role}" for name, role in pairs),
)
