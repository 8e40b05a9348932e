"""Fixtures shared by every test: a real Redis server process, settings for servers on port 0,
and the in-process stack (cache, scene and script servers) built from them by `testkit`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from shared.config import Settings
from shared.redis_server import RedisServer
from testkit import InProcessStack, in_process_stack, loopback_settings
from tests.library_fixtures import (  # noqa: F401  Registered here; two are autouse.
    database_url,
    library,
    postgres_server,
    private_data_home,
    private_library,
)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One real redis-server process for the whole session."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def empty_redis() -> Iterator[RedisServer]:
    """A redis-server of this test's own: nothing another test cached (scenes, episode leases)
    is in it, so a test that must see work really done needs no never-repeated seed."""
    with RedisServer() as server:
        yield server


@pytest.fixture
def settings() -> Settings:
    """Settings for in-process servers: every port 0 (the OS picks), telemetry off."""
    return loopback_settings()


@pytest.fixture
async def stack(settings: Settings, redis_server: RedisServer) -> AsyncIterator[InProcessStack]:
    """This test's own cache, scene and script servers (its script service on the test's empty
    library), on the session's Redis. For a stack with other settings or a given library, call
    `testkit.in_process_stack` in the test."""
    async with in_process_stack(settings.with_changes(redis_url=redis_server.url)) as started:
        yield started


@pytest.fixture(scope="session")
async def shared_stack(redis_server: RedisServer) -> AsyncIterator[InProcessStack]:
    """One cache, scene and script stack for the whole session, for tests that only write and
    read their own episodes (unique requests) and assert nothing about the library as a whole
    or the cache's counters. Its library is the session's (private_data_home, autouse, is set
    up before it)."""
    async with in_process_stack(loopback_settings(redis_url=redis_server.url)) as started:
        yield started
