"""Polling with a deadline, the one way tests wait for something that happens elsewhere (a
timer, another process, a server's background task): never a bare sleep.

The predicate is called until it returns a truthy value, which is returned. A predicate may also
assert: an AssertionError counts as "not yet" and, at the deadline, is what the test fails with
(as temporalio's `assert_eventually`), so the failure says what was last seen.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, cast, overload

T = TypeVar("T")

DEFAULT_TIMEOUT = 10.0
DEFAULT_INTERVAL = 0.02


class _Deadline:
    def __init__(self, timeout: float) -> None:
        self.end = time.monotonic() + timeout

    def passed(self) -> bool:
        return time.monotonic() >= self.end


def _fail(what: str, timeout: float, last: object, error: AssertionError | None) -> AssertionError:
    if error is not None:
        return AssertionError(f"not in {timeout:g} s: {what or 'condition'}: {error}")
    return AssertionError(f"not in {timeout:g} s: {what or 'condition'} (last seen: {last!r})")


@overload
async def eventually(
    predicate: Callable[[], Awaitable[T]],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    predicate: Callable[[], T],
    *,
    timeout: float = ...,
    interval: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    predicate: Callable[[], T | Awaitable[T]],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    what: str = "",
) -> T:
    """Awaits until `predicate()` (a function or a coroutine function) returns a truthy value
    and returns it; raises AssertionError naming `what` after `timeout` seconds."""
    deadline = _Deadline(timeout)
    while True:
        error: AssertionError | None = None
        last: object = None
        try:
            result = predicate()
            value = cast(T, await result if inspect.isawaitable(result) else result)
            if value:
                return value
            last = value
        except AssertionError as failed:
            error = failed
        if deadline.passed():
            raise _fail(what, timeout, last, error)
        await asyncio.sleep(interval)


def eventually_sync(
    predicate: Callable[[], T],
    *,
    timeout: float = DEFAULT_TIMEOUT,
    interval: float = DEFAULT_INTERVAL,
    what: str = "",
) -> T:
    """`eventually` for code outside an event loop: blocks between calls."""
    deadline = _Deadline(timeout)
    while True:
        error: AssertionError | None = None
        last: object = None
        try:
            value = predicate()
            if value:
                return value
            last = value
        except AssertionError as failed:
            error = failed
        if deadline.passed():
            raise _fail(what, timeout, last, error)
        time.sleep(interval)
