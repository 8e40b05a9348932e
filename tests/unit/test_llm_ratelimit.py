"""The replica's own limiter: never more than the limit in any window, paced, fair, pausable;
and the shared limiter's local modes (no cache service)."""

from __future__ import annotations

import asyncio
import itertools
import math
import time

import pytest

from services.script.llm.budget import Usage
from services.script.llm.factory import key_fingerprint
from services.script.llm.quota import LOCAL, QueueTimeout, RateLimits, SharedLimiter
from services.script.llm.ratelimit import Limits, WindowLimiter

LONG = 30.0  # A window no test outlives: grants then depend only on what finishes.


def test_per_minute_limits_are_scaled_to_the_window() -> None:
    limiter = WindowLimiter.per_minute(60, 100_000, window=2.0)
    assert (limiter.requests, limiter.tokens, limiter.window) == (2, 3333, 2.0)
    assert WindowLimiter.per_minute(50, 100_000).requests == 50
    assert WindowLimiter.per_minute(10, 10, window=1.0).requests == 1  # never below one


def test_limiters_are_shared_per_provider_key_and_model_class() -> None:
    limits = RateLimits(Limits.per_minute(50, 100_000), None)
    limiter = limits.limiter("anthropic", "claude-sonnet-4-5", "0123abcd")
    assert limiter is limits.limiter("anthropic", "claude-sonnet-4-5-20250929", "0123abcd")
    assert limiter is not limits.limiter("anthropic", "claude-sonnet-4-5", "fedcba98")
    assert limiter is not limits.limiter("openai", "claude-sonnet-4-5", "0123abcd")
    assert limiter.name == "anthropic:0123abcd:claude-sonnet-4-5" and limiter.mode == LOCAL


def test_a_share_divides_every_limit_and_keeps_at_least_one() -> None:
    limits = Limits.per_minute(60, 90_000, 1.0, input_tokens_per_minute=600)
    assert (limits.requests, limits.tokens, limits.input_tokens, limits.output_tokens) == (
        1, 1500, 10, 0,
    )  # fmt: skip
    share = Limits(10, 1000, 1.0, 100, 0).share(3)
    assert (share.requests, share.tokens, share.input_tokens, share.output_tokens) == (
        3,
        333,
        33,
        0,
    )
    assert Limits(2, 1, 1.0).share(5).requests == 1


def test_estimates_are_capped_at_what_the_limits_can_grant() -> None:
    limits = Limits(10, 100, 1.0, input_tokens=80, output_tokens=50)
    assert limits.cap(500, 500) == (80, 20)  # input first, then the output that still fits
    assert limits.cap(10, 20) == (10, 20)
    assert Limits(10, 0, 1.0).cap(10**9, 10**9) == (10**9, 10**9)  # no token limit


def test_anthropic_cache_reads_do_not_count_against_the_limits() -> None:
    usage = Usage(input_tokens=100, output_tokens=50, cache_creation_tokens=30,
                  cache_read_tokens=1000)  # fmt: skip
    assert usage.counted(cache_reads_count=False) == (130, 50)
    assert usage.counted(cache_reads_count=True) == (1130, 50)


async def test_grants_are_paced_a_window_over_the_limit_apart() -> None:
    limiter = WindowLimiter(requests=4, tokens=10**6, window=0.4)
    permits = [await limiter.acquire(1) for _ in range(3)]
    gaps = [b.granted_at - a.granted_at for a, b in itertools.pairwise(permits)]
    assert all(gap >= 0.1 for gap in gaps), gaps
    for permit in permits:
        permit.settle()


async def test_input_and_output_tokens_have_their_own_limits() -> None:
    limiter = WindowLimiter(requests=100, tokens=10**6, window=LONG, input_tokens=100,
                            output_tokens=50)  # fmt: skip
    first = await limiter.acquire(10, 40)
    assert limiter.try_grant(10, 20) == math.inf  # 40 + 20 output in flight > 50
    first.settle(10, 5)  # It really wrote 5.
    limiter.pause_for(0)
    assert limiter.time_to_grant(10, 20) <= LONG / 100  # Only the pacing holds it now.


async def test_the_local_mode_refuses_at_once_a_wait_longer_than_allowed() -> None:
    limiter = SharedLimiter("anthropic:k:m", Limits(1, 10**6, LONG), None)
    first = await limiter.acquire(1, 0, max_wait=1.0)
    with pytest.raises(QueueTimeout):
        await limiter.acquire(1, 0, max_wait=1.0)  # One a minute: the next is a minute off.
    await first.settle(1, 0, pause_seconds=0.0)


async def test_no_window_ever_holds_more_than_the_limit() -> None:
    limiter = WindowLimiter(requests=3, tokens=10**6, window=0.15)
    spans: list[tuple[float, float]] = []

    async def request(duration: float) -> None:
        permit = await limiter.acquire(10)
        granted = time.monotonic()
        await asyncio.sleep(duration)
        spans.append((granted, time.monotonic()))
        permit.settle(10)

    await asyncio.gather(*(request(0.01 * (i % 3)) for i in range(12)))
    assert len(spans) == 12
    for granted, _ in spans:
        # Requests that were in flight, or finished less than a window before this grant.
        holding = [
            other for other in spans if other[0] < granted and other[1] > granted - limiter.window
        ]
        assert len(holding) < limiter.requests


async def test_tokens_are_held_until_settled_then_corrected_to_real_usage() -> None:
    limiter = WindowLimiter(requests=100, tokens=100, window=LONG)
    first = await limiter.acquire(60)
    second = asyncio.create_task(limiter.acquire(60))
    await asyncio.sleep(0.05)
    assert not second.done()  # 60 + 60 > 100 while the first is in flight.
    first.settle(10)  # It really used 10.
    granted = await asyncio.wait_for(second, 5)
    third = asyncio.create_task(limiter.acquire(60))
    await asyncio.sleep(0.05)
    assert not third.done()  # 10 + 60 + 60 > 100
    granted.settle(20)
    (await asyncio.wait_for(third, 5)).settle(0)


async def test_waiters_are_served_in_arrival_order() -> None:
    limiter = WindowLimiter(requests=100, tokens=100, window=LONG)
    blocker = await limiter.acquire(100)
    big = asyncio.create_task(limiter.acquire(80))
    await asyncio.sleep(0)
    small = asyncio.create_task(limiter.acquire(10))
    await asyncio.sleep(0.02)
    blocker.settle(50)  # 50 stay in the window: the big request no longer fits, the small one would
    await asyncio.sleep(0.05)
    assert not big.done() and not small.done()  # The small one does not jump the queue.
    big.cancel()
    (await asyncio.wait_for(small, 5)).settle(0)


async def test_a_pause_holds_every_grant_until_it_ends() -> None:
    limiter = WindowLimiter(requests=10, tokens=1000, window=1.0)
    paused_at = time.monotonic()
    limiter.pause_for(0.2)
    permits = await asyncio.gather(*(limiter.acquire(1) for _ in range(3)))
    assert all(p.granted_at >= paused_at + 0.2 for p in permits)
    for permit in permits:
        permit.settle()


async def test_a_request_larger_than_the_window_still_goes_alone() -> None:
    limiter = WindowLimiter(requests=5, tokens=100, window=LONG)
    permit = await asyncio.wait_for(limiter.acquire(10**9), 5)
    assert permit.tokens == 100
    permit.settle(10**9)


async def test_requests_count_from_when_they_finish() -> None:
    limiter = WindowLimiter(requests=1, tokens=1000, window=0.2)
    permit = await limiter.acquire(1)
    await asyncio.sleep(0.1)
    finished = time.monotonic()
    permit.settle(1)
    following = await limiter.acquire(1)
    assert following.granted_at >= finished + 0.2
    following.settle(1)


def test_limits_must_be_positive() -> None:
    with pytest.raises(ValueError):
        WindowLimiter(requests=0, tokens=1, window=1.0)


def test_a_quota_is_named_by_key_and_host_never_by_the_key_itself() -> None:
    key = "sk-ant-api03-secret-key-value"
    name = key_fingerprint("anthropic", key, "http://127.0.0.1:8080/r/replica-1")
    assert name == key_fingerprint("anthropic", key, "http://127.0.0.1:8080/r/replica-2")
    assert name != key_fingerprint("anthropic", key, "http://127.0.0.1:9090")
    assert name != key_fingerprint("anthropic", key + "x", "http://127.0.0.1:8080")
    assert name != key_fingerprint("openai", key, "http://127.0.0.1:8080")
    assert len(name) == 16 and key not in name and "secret" not in name


def test_mirrored_requests_leave_the_books_a_window_after_they_finish() -> None:
    now = [0.0]
    limiter = WindowLimiter(requests=2, tokens=10**6, window=1.0, clock=lambda: now[0])
    for step in range(1000):  # A shared limiter's replica records and settles, never waits.
        now[0] = step * 0.5
        limiter.record(10, 10).settle(10, 10)
    assert len(limiter._finished) <= 3  # Not a record per request ever made.
