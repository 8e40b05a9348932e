"""Render admission: how many calls the scene service takes in, and how many render at once.

`RenderGate` bounds two things:

- **admitted calls**: at most `workers + queue` render calls are inside the service at once
  (validating, waiting for a render thread, rendering); one more is refused at once with
  `Overloaded`, which the service answers RESOURCE_EXHAUSTED with trailing metadata
  `retry-after-ms`. Memory held by requests is bounded by this, not by DOPPEL_MAX_CONCURRENT_RPCS.
- **render threads**: threaded renders (PDF, FDX, HTML and large requests) run on the gate's own
  pool of `workers` threads. A render holds its slot until its thread really finishes: one the
  caller stopped waiting for (its time cap or deadline passed) keeps the slot, so abandoned renders
  can never add up to more threads than `workers`, and later calls queue behind them (bounded as
  above) instead of piling more work onto the CPUs.

Defaults: `RENDER_WORKERS` is the number of CPUs this process may run on (rendering is CPU work);
`RENDER_QUEUE` is max(32, 2 x workers): enough for two script replicas at the default
DOPPEL_MAX_CONCURRENT_EPISODES (16) finishing their episodes at the same moment (the script does
not retry a refused render, it returns the episode with `render_error`), small enough that at most
`workers + queue` requests (each at most 16 MiB on the wire) are held at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import os
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

T = TypeVar("T")
A = TypeVar("A")


def _cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # Not on Linux.
        return max(1, os.cpu_count() or 1)


RENDER_WORKERS = _cpus()
RENDER_QUEUE = max(32, 2 * RENDER_WORKERS)
RETRY_AFTER_MS_RANGE = (100, 30_000)
INITIAL_CALL_SECONDS = 1.0  # The retry hint's guess of a call's time before any has finished.


class Overloaded(Exception):
    """The gate is full: `limit` calls are admitted; try again in `retry_after_ms`."""

    def __init__(self, limit: int, retry_after_ms: int) -> None:
        super().__init__(f"{limit} renders are running or waiting on this replica")
        self.limit = limit
        self.retry_after_ms = retry_after_ms


class Admission:
    """One admitted call; leaving (the `with` block's end) frees its place."""

    def __init__(self, gate: RenderGate) -> None:
        self._gate = gate
        self._started = time.monotonic()

    def __enter__(self) -> Admission:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._gate._leave(time.monotonic() - self._started)


class RenderGate:
    """At most `workers + queue` calls admitted, at most `workers` render threads busy."""

    def __init__(self, workers: int = RENDER_WORKERS, queue: int = RENDER_QUEUE) -> None:
        if workers < 1 or queue < 0:
            raise ValueError("a render gate needs at least one worker and a queue of 0 or more")
        self.workers = workers
        self.queue = queue
        self.limit = workers + queue
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="scene-render"
        )
        self._slots = asyncio.Semaphore(workers)
        self._admitted = 0
        self._busy = 0
        self._typical_seconds = INITIAL_CALL_SECONDS  # Moving average of an admitted call's time.

    @property
    def admitted(self) -> int:
        """Calls inside the service now (validating, waiting or rendering)."""
        return self._admitted

    @property
    def busy(self) -> int:
        """Render threads at work now, abandoned ones included."""
        return self._busy

    def admit(self) -> Admission:
        """A place for one call (use it in a `with` at once), or `Overloaded` when all
        `workers + queue` places are taken."""
        if self._admitted >= self.limit:
            raise Overloaded(self.limit, self.retry_after_ms())
        self._admitted += 1
        return Admission(self)

    def retry_after_ms(self) -> int:
        """About when a place frees: `limit` calls each taking the typical time leave, on
        average, one every typical / limit seconds (100 ms to 30 s)."""
        low, high = RETRY_AFTER_MS_RANGE
        return int(min(high, max(low, 1000 * self._typical_seconds / self.limit)))

    def _leave(self, seconds: float) -> None:
        self._admitted -= 1
        self._typical_seconds = 0.8 * self._typical_seconds + 0.2 * seconds

    async def run(self, function: Callable[[A], T], argument: A, timeout: float) -> T:
        """`function(argument)` on a render thread, once one of the `workers` slots is free.
        Waiting and rendering together are capped at `timeout` seconds (TimeoutError); a thread
        that outlives the cap keeps its slot until it finishes."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            await self._slots.acquire()
            try:
                future = self._executor.submit(contextvars.copy_context().run, function, argument)
            except BaseException:
                self._slots.release()
                raise
            self._busy += 1
            future.add_done_callback(lambda _: self._thread_done(loop))
            return await asyncio.wrap_future(future)

    def _thread_done(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called on the render thread (or at once if the future is already done)."""
        # RuntimeError: the loop is closed, so the server is gone and nobody waits for a slot.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._free_slot)

    def _free_slot(self) -> None:
        self._busy -= 1
        self._slots.release()

    def close(self) -> None:
        """Stops the render threads after their current render; queued renders are dropped."""
        self._executor.shutdown(wait=False, cancel_futures=True)
