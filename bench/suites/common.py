"""Helpers the suites share: run N operations at a concurrency and time them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Scale:
    """How much work each suite does; `quick` keeps `make bench-check` and tests short."""

    repetitions: int
    cache_ops: int
    episodes: int
    monitor_spans: int
    monitor_rss_spans: int
    llm_latency_ms: float
    overhead_calls: int

    @classmethod
    def named(cls, quick: bool) -> Scale:
        if quick:
            return cls(3, 500, 6, 200_000, 500_000, 50.0, 100)
        return cls(5, 4000, 24, 1_000_000, 5_000_000, 200.0, 400)


async def rate(
    operation: Callable[[int], Awaitable[object]], count: int, concurrency: int
) -> float:
    """Operations per second for `count` calls of `operation(i)`, `concurrency` at a time."""
    next_index = iter(range(count))

    async def worker() -> None:
        for index in next_index:
            await operation(index)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return count / (time.perf_counter() - started)
