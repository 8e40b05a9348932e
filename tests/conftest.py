"""Fixtures shared by every test: a real Redis server process and settings for servers on port 0."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.stacks import free_port as free_port  # Re-exported: tests import it from here.
from shared.config import Settings
from shared.redis_server import RedisServer
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
def settings() -> Settings:
    """Settings for in-process servers: every port 0 (the OS picks), telemetry off."""
    return Settings(
        script_port=0,
        scene_port=0,
        cache_port=0,
        monitor_port=0,
        monitor_http_port=0,
        telemetry_disabled=True,
        grace_seconds=2.0,
    )
