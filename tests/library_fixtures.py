"""Fixtures of the library tests: one real PostgreSQL server for the session, a fresh database
(SQLite file or PostgreSQL database) per test, and a private data directory for every test, so
no test reads another's library or writes into the developer's ~/.local/share."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from services.script.library import Library
from services.script.library.engine import parse_url
from testkit.postgres import PostgresServer

DATABASE_VARIABLES = ("DOPPEL_DATA_DIR", "DOPPEL_DATABASE_URL", "DOPPEL_DATABASE_MIGRATE")


@pytest.fixture(scope="session", autouse=True)
def private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """XDG_DATA_HOME in a temporary directory for the session (servers started by module
    fixtures and child processes find their default library there), the library variables
    unset."""
    home = tmp_path_factory.mktemp("xdg-data")
    saved = {name: os.environ.get(name) for name in ("XDG_DATA_HOME", *DATABASE_VARIABLES)}
    os.environ["XDG_DATA_HOME"] = str(home)
    for name in DATABASE_VARIABLES:
        os.environ.pop(name, None)
    yield home
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(autouse=True)
def private_library(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Each test's own XDG_DATA_HOME (beside, not in, its tmp_path), so a script server a test
    starts has an empty library."""
    home = tmp_path_factory.mktemp("xdg-data")
    monkeypatch.setenv("XDG_DATA_HOME", str(home))
    return home / "doppelganger"


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One real PostgreSQL server process for the whole session."""
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[URL]:
    """An empty database of each kind: a SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        yield URL.create("sqlite+aiosqlite", database=str(tmp_path / "library.db"))
        return
    server: PostgresServer = request.getfixturevalue("postgres_server")
    name = f"test_{uuid.uuid4().hex[:16]}"
    url = parse_url(await server.create_database(name))
    yield url
    await server.drop_database(name)


@pytest.fixture
async def library(database_url: URL) -> AsyncIterator[Library]:
    """A migrated library on each kind of database."""
    opened = await Library.open(database_url, migrate="auto")
    yield opened
    await opened.close()
