"""Retry policy for LLM calls: what is retried, how long to wait, and what the provider asked for.

Retried: 408, 409, 429, 500 and above (529 "overloaded" included), timeouts and connection
errors; nothing else (a 400 or 401 will not get better). The SDKs' own retries are off. The delay
before attempt n+1 is "full jitter" (uniform between 0 and min(max, base * 2**(n-1))), but never
less than what the provider asked for in `retry-after-ms` or `retry-after`.

`pause_from_headers` reads the provider's rate-limit state from any response: when Anthropic says
no requests (or tokens) remain until a reset time (`anthropic-ratelimit-*-remaining` = 0,
`...-reset` in RFC 3339), or OpenAI says the same (`x-ratelimit-remaining-*`, `x-ratelimit-reset-*`
as durations like `1s` or `6m0s`), the limiter pauses until then.
"""

from __future__ import annotations

import email.utils
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.config import DEFAULTS

RETRYABLE_STATUSES = frozenset({408, 409, 429})
ANTHROPIC_LIMITS = ("requests", "tokens", "input-tokens", "output-tokens")
OPENAI_LIMITS = ("requests", "tokens")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def is_retryable_status(status: int) -> bool:
    return status in RETRYABLE_STATUSES or status >= 500


@dataclass
class RetryPolicy:
    """Attempts and backoff of one call; `rng` is injectable so tests can pin the jitter."""

    max_attempts: int = DEFAULTS.llm_max_attempts
    base_seconds: float = DEFAULTS.llm_backoff_seconds
    max_seconds: float = DEFAULTS.llm_max_backoff_seconds
    max_wait_seconds: float = DEFAULTS.llm_max_wait_seconds
    max_queue_seconds: float = DEFAULTS.llm_max_queue_seconds  # For a client-side rate-limit slot.
    rng: random.Random = field(default_factory=random.Random)

    def backoff(self, attempt: int) -> float:
        """Full jitter after failed attempt `attempt` (1-based)."""
        cap = min(self.max_seconds, self.base_seconds * 2 ** (attempt - 1))
        return self.rng.uniform(0.0, cap)

    def delay(self, attempt: int, asked: float | None) -> float:
        """The wait before the next attempt: the jittered backoff, at least what was asked."""
        return max(asked or 0.0, self.backoff(attempt))


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == name), None)
    return value.strip() if value is not None else None


def retry_after_seconds(headers: Mapping[str, str], now: datetime | None = None) -> float | None:
    """What `retry-after-ms`, else `retry-after` (seconds or an HTTP date), asks for."""
    millis = _header(headers, "retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000.0)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _rfc3339_seconds(value: str, now: datetime) -> float | None:
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - now).total_seconds())


def _duration_seconds(value: str) -> float | None:
    """`1s`, `6m0s`, `250ms`, `1h2m3.5s` (OpenAI's reset headers)."""
    parts = _DURATION_PART.findall(value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(number) * scale[unit] for number, unit in parts)


def _exhausted(headers: Mapping[str, str], name: str) -> bool:
    remaining = _header(headers, name)
    try:
        return remaining is not None and float(remaining) <= 0
    except ValueError:
        return False


def pause_from_headers(headers: Mapping[str, str], now: datetime | None = None) -> float:
    """Seconds until the provider's exhausted limits reset (0 when nothing is exhausted)."""
    now = now or datetime.now(UTC)
    pause = 0.0
    for kind in ANTHROPIC_LIMITS:
        reset = _header(headers, f"anthropic-ratelimit-{kind}-reset")
        if reset and _exhausted(headers, f"anthropic-ratelimit-{kind}-remaining"):
            pause = max(pause, _rfc3339_seconds(reset, now) or 0.0)
    for kind in OPENAI_LIMITS:
        reset = _header(headers, f"x-ratelimit-reset-{kind}")
        if reset and _exhausted(headers, f"x-ratelimit-remaining-{kind}"):
            pause = max(pause, _duration_seconds(reset) or 0.0)
    return pause
