"""Time limits on the script service's work: the client's deadline or
DOPPEL_EPISODE_TIMEOUT_SECONDS, whichever comes first.

A streamed RPC must never have `asyncio.timeout` armed across its `yield`: the timer cancels the
handler's task wherever it is, and if that is gRPC sending a message, gRPC takes the
CancelledError for a client cancel and never ends the RPC (a client without a deadline waits
forever). `steps_within` arms the limit only while the producing stream itself runs.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

from services.script.llm.caller import client_deadline

T = TypeVar("T")


@contextlib.asynccontextmanager
async def within(seconds: float) -> AsyncIterator[None]:
    """The block ends with TimeoutError after `seconds`, and every LLM attempt in it is bounded
    by the same time (`client_deadline`). Only for blocks that do not yield to a consumer."""
    with client_deadline(seconds):
        async with asyncio.timeout(seconds):
            yield


async def steps_within(stream: AsyncIterator[T], seconds: float) -> AsyncIterator[T]:
    """`stream`'s items; TimeoutError if `seconds` from now pass while `stream` computes an item.
    The timer is armed only then, never while the consumer handles an item."""
    deadline = asyncio.get_running_loop().time() + seconds
    with client_deadline(seconds):
        try:
            while True:
                async with asyncio.timeout_at(deadline):
                    try:
                        item = await anext(stream)
                    except StopAsyncIteration:
                        return
                yield item
        finally:
            close = getattr(stream, "aclose", None)  # An async generator's cleanup runs now.
            if close is not None:
                await close()


def timeout_message(allowed: float) -> str:
    """The DEADLINE_EXCEEDED detail: how long was allowed and which limits set it."""
    return (
        f"not finished within {allowed:.1f} s (the client's deadline or "
        "DOPPEL_EPISODE_TIMEOUT_SECONDS)"
    )
