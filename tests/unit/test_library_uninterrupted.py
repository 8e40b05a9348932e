"""`uninterrupted`: a library write runs to its end when its caller is cancelled, and the caller
still ends cancelled (after the write), whatever the write's outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from services.script.library.database import uninterrupted


def _write(
    done: list[str], fail: bool = False
) -> Callable[[asyncio.Event], Coroutine[Any, Any, str]]:
    @uninterrupted
    async def write(gate: asyncio.Event) -> str:
        await gate.wait()
        done.append("written")
        if fail:
            raise ValueError("the write failed")
        return "stored"

    return write


async def test_a_write_returns_its_result_and_raises_its_error() -> None:
    done: list[str] = []
    gate = asyncio.Event()
    gate.set()
    assert await _write(done)(gate) == "stored"
    with pytest.raises(ValueError, match="the write failed"):
        await _write(done, fail=True)(gate)
    assert done == ["written", "written"]


@pytest.mark.parametrize("fail", [False, True])
async def test_a_cancelled_caller_waits_for_the_write_then_ends_cancelled(fail: bool) -> None:
    done: list[str] = []
    gate = asyncio.Event()
    caller = asyncio.create_task(_write(done, fail)(gate))
    await asyncio.sleep(0)
    caller.cancel()
    await asyncio.sleep(0.05)
    assert not caller.done() and done == []  # Still waiting for the write, not cut off.
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["written"]


async def test_a_caller_cancelled_twice_still_waits_for_the_write() -> None:
    done: list[str] = []
    gate = asyncio.Event()
    caller = asyncio.create_task(_write(done)(gate))
    await asyncio.sleep(0)
    for _ in range(2):
        caller.cancel()
        await asyncio.sleep(0.02)
    assert not caller.done()
    gate.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert done == ["written"]
