"""steps_within: the time limit of a streamed RPC is armed only while the stream computes, so it
never cancels what the consumer (gRPC sending a message) is awaiting, and it still ends a
stream that runs too long."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from services.script.llm.caller import time_left
from services.script.time_limits import steps_within


async def _counting(step_seconds: float, count: int, closed: list[str]) -> AsyncIterator[int]:
    try:
        for index in range(count):
            await asyncio.sleep(step_seconds)
            yield index
    finally:
        closed.append("closed")


async def test_a_slow_consumer_is_not_cancelled_and_the_next_step_times_out() -> None:
    closed: list[str] = []
    handled: list[int] = []
    with pytest.raises(TimeoutError):
        async for item in steps_within(_counting(0.001, 100, closed), 0.05):
            await asyncio.sleep(0.1)  # Past the limit, in the consumer: not cancelled here.
            handled.append(item)
    # The consumer finished handling the first item; the stream's next step ran out of time.
    assert handled == [0]
    assert closed == ["closed"]


async def test_a_stream_that_runs_past_the_limit_ends_with_timeout_error() -> None:
    closed: list[str] = []
    items: list[int] = []
    with pytest.raises(TimeoutError):
        async for item in steps_within(_counting(0.02, 1000, closed), 0.2):
            items.append(item)
    assert 1 <= len(items) < 1000
    assert closed == ["closed"]


async def test_a_stream_within_the_limit_gives_every_item() -> None:
    closed: list[str] = []
    items = [item async for item in steps_within(_counting(0, 5, closed), 10)]
    assert items == [0, 1, 2, 3, 4]
    assert closed == ["closed"]


async def test_a_consumer_that_stops_early_closes_the_stream() -> None:
    closed: list[str] = []
    steps = steps_within(_counting(0, 5, closed), 10)
    async for item in steps:
        if item == 1:
            break
    await steps.aclose()  # type: ignore[attr-defined]
    assert closed == ["closed"]


async def test_llm_calls_in_the_stream_see_the_limit() -> None:
    async def reporting() -> AsyncIterator[float | None]:
        yield time_left()

    [left] = [item async for item in steps_within(reporting(), 30)]
    assert left is not None and 0 < left <= 30
