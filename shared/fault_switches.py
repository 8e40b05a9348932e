"""The fault switches and the `name=value,...` spec that sets them: a leaf module, so that
configuration (DOPPEL_FAULTS) can check a spec without importing the fault service."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

MAX_SWITCHES_PER_REQUEST = 16
MAX_DELAY_MS = 600_000.0


@dataclass(frozen=True)
class Switch:
    name: str
    low: float
    high: float
    doc: str


SWITCHES: tuple[Switch, ...] = (
    Switch("llm_error_rate", 0.0, 1.0, "share of LLM attempts answered with HTTP 500"),
    Switch("llm_latency_ms", 0.0, MAX_DELAY_MS, "added before every LLM attempt"),
    Switch("llm_429_storm", 0.0, 1.0, "1: every LLM attempt answered with 429"),
    Switch("cache_unavailable", 0.0, 1.0, "1: the cache service answers UNAVAILABLE"),
    Switch("render_delay_ms", 0.0, MAX_DELAY_MS, "added before every render"),
    Switch("monitor_unreachable", 0.0, 1.0, "1: telemetry exports are dropped and counted"),
)
BY_NAME = {switch.name: switch for switch in SWITCHES}
STORM_RETRY_AFTER_MS = 25  # What an injected 429 asks for: short, so storms stay testable.


class FaultSpecError(ValueError):
    """A switch name or value that cannot be used; the message names it and the limit."""


def check_switch(name: str, value: float) -> float:
    switch = BY_NAME.get(name)
    if switch is None:
        raise FaultSpecError(f"unknown fault {name!r}; known: {', '.join(BY_NAME)}")
    if not switch.low <= value <= switch.high:
        raise FaultSpecError(f"{name} must be between {switch.low:g} and {switch.high:g}")
    return value


def parse_spec(text: str) -> dict[str, float]:
    """`name=value,...` (a bare name means 1) into checked switch values."""
    values: dict[str, float] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, raw = item.partition("=")
        try:
            value = float(raw) if sep else 1.0
        except ValueError:
            raise FaultSpecError(f"{name.strip()}: not a number: {raw!r}") from None
        values[name.strip()] = check_switch(name.strip(), value)
    return values


def spec_of(values: Mapping[str, float]) -> str:
    return ",".join(f"{name}={value:g}" for name, value in values.items())
