"""The rolling-window limiter: never more than the limit in any window, fair, pausable."""

from __future__ import annotations

import asyncio
import time

import pytest

from services.script.llm.ratelimit import RateLimits, WindowLimiter

LONG = 30.0  # A window no test outlives: grants then depend only on what finishes.


def test_per_minute_limits_are_scaled_to_the_window() -> None:
    limiter = WindowLimiter.per_minute(60, 100_000, window=2.0)
    assert (limiter.requests, limiter.tokens, limiter.window) == (2, 3333, 2.0)
    assert WindowLimiter.per_minute(50, 100_000).requests == 50
    assert WindowLimiter.per_minute(10, 10, window=1.0).requests == 1  # never below one


def test_limiters_are_shared_per_provider_and_model() -> None:
    limits = RateLimits(50, 100_000, 60.0)
    assert limits.limiter("anthropic", "m") is limits.limiter("anthropic", "m")
    assert limits.limiter("anthropic", "m") is not limits.limiter("openai", "m")


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
