"""The test kit's waiting: `eventually` returns what the predicate found, retries a failed
assertion, and fails with what it last saw; plain and async predicates, blocking form too."""

from __future__ import annotations

import itertools
import socket
from pathlib import Path

import pytest

from testkit import eventually, eventually_sync, free_port


async def test_eventually_returns_the_first_truthy_value() -> None:
    counter = itertools.count()
    assert await eventually(lambda: next(counter) >= 3 and "ready", interval=0) == "ready"


async def test_eventually_awaits_an_async_predicate() -> None:
    calls: list[int] = []

    async def third_time() -> list[int]:
        calls.append(1)
        return calls if len(calls) == 3 else []

    assert await eventually(third_time, interval=0) == [1, 1, 1]


async def test_a_failed_assertion_is_not_yet_and_at_the_deadline_the_failure() -> None:
    seen: list[int] = []

    def never() -> bool:
        seen.append(1)
        raise AssertionError(f"only {len(seen)} so far")

    with pytest.raises(AssertionError, match=r"not in 0\.05 s: the thing: only \d+ so far"):
        await eventually(never, timeout=0.05, interval=0.01, what="the thing")
    assert len(seen) > 1  # Retried, not failed at once.


async def test_a_falsy_value_at_the_deadline_names_what_was_last_seen() -> None:
    with pytest.raises(AssertionError, match=r"the queue drained \(last seen: 0\)"):
        await eventually(lambda: 0, timeout=0.02, interval=0.01, what="the queue drained")


async def test_other_errors_are_not_swallowed() -> None:
    def broken() -> bool:
        raise RuntimeError("the server died")

    with pytest.raises(RuntimeError, match="died"):
        await eventually(broken)


def test_eventually_sync_blocks_between_tries() -> None:
    counter = itertools.count()
    assert eventually_sync(lambda: next(counter) == 2, interval=0) is True
    with pytest.raises(AssertionError, match="not in"):
        eventually_sync(lambda: False, timeout=0.02, interval=0.01)


def test_free_port_is_a_bindable_loopback_port() -> None:
    port = free_port()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_free_ports_are_below_the_ephemeral_range_and_never_repeat() -> None:
    """Outbound connections take their local port from the ephemeral range; a test port from
    there could be taken by the test's own client before the child binds it."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(50)]
    assert len(set(ports)) == 50
    assert all(20_000 <= port < low for port in ports)
