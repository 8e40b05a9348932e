"""Retry policy and provider headers: what is retried, full-jitter backoff, retry-after forms."""

from __future__ import annotations

import email.utils
import random
from datetime import UTC, datetime, timedelta

import pytest

from services.script.llm.retry import (
    RetryPolicy,
    is_retryable_status,
    pause_from_headers,
    retry_after_seconds,
)

NOW = datetime(2026, 11, 3, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(400, False), (401, False), (403, False), (404, False), (408, True), (409, True),
     (429, True), (500, True), (503, True), (529, True)],
)  # fmt: skip
def test_retryable_statuses(status: int, retryable: bool) -> None:
    assert is_retryable_status(status) is retryable


def test_full_jitter_stays_under_a_doubling_capped_ceiling() -> None:
    policy = RetryPolicy(base_seconds=0.5, max_seconds=4.0, rng=random.Random(3))
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (9, 4.0)]:
        delays = [policy.backoff(attempt) for _ in range(300)]
        assert all(0.0 <= d <= ceiling for d in delays)
        # Full jitter spreads over the whole range, not just near the ceiling.
        assert min(delays) < 0.2 * ceiling and max(delays) > 0.8 * ceiling


def test_delay_is_never_shorter_than_what_the_provider_asked() -> None:
    policy = RetryPolicy(base_seconds=0.5, max_seconds=1.0, rng=random.Random(1))
    assert all(policy.delay(1, 2.5) == 2.5 for _ in range(50))
    assert all(0 <= policy.delay(1, None) <= 0.5 for _ in range(50))


def test_retry_after_ms_wins_over_retry_after() -> None:
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5


def test_retry_after_in_seconds_and_as_an_http_date() -> None:
    assert retry_after_seconds({"retry-after": "7"}) == 7.0
    date = email.utils.format_datetime(NOW + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds({"Retry-After": date}, now=NOW) == pytest.approx(30.0)
    past = email.utils.format_datetime(NOW - timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds({"retry-after": past}, now=NOW) == 0.0


def test_unreadable_or_missing_retry_after_gives_none() -> None:
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None


def test_anthropic_headers_pause_until_the_exhausted_limit_resets() -> None:
    reset = (NOW + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    later = (NOW + timedelta(seconds=40)).isoformat()
    headers = {
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-remaining": "5000",  # not exhausted: its reset is ignored
        "anthropic-ratelimit-tokens-reset": later,
    }
    assert pause_from_headers(headers, now=NOW) == pytest.approx(12.0)
    headers["anthropic-ratelimit-tokens-remaining"] = "0"
    assert pause_from_headers(headers, now=NOW) == pytest.approx(40.0)


def test_remaining_requests_mean_no_pause() -> None:
    reset = (NOW + timedelta(seconds=12)).isoformat()
    headers = {
        "anthropic-ratelimit-requests-remaining": "3",
        "anthropic-ratelimit-requests-reset": reset,
    }
    assert pause_from_headers(headers, now=NOW) == 0.0


def test_openai_reset_durations() -> None:
    headers = {"x-ratelimit-remaining-requests": "0", "x-ratelimit-reset-requests": "1m2.5s"}
    assert pause_from_headers(headers) == pytest.approx(62.5)
    headers = {"x-ratelimit-remaining-tokens": "0", "x-ratelimit-reset-tokens": "250ms"}
    assert pause_from_headers(headers) == pytest.approx(0.25)
