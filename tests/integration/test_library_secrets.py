"""The database URL's password never shows: not in reprs, logs or errors, whatever goes wrong
(a refused password, a dead port, a URL that does not parse), against the real PostgreSQL."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from services.script.library import Unavailable, open_library
from services.script.library.engine import BadDatabaseUrl, display_url, parse_url
from shared.config import Settings
from testkit import free_port
from testkit.postgres import PostgresServer

SECRET = "s3cret-Pa55word"


async def test_a_refused_password_is_unavailable_and_never_shown(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = postgres_server.url().replace(postgres_server.password, SECRET)
    with pytest.raises(Unavailable) as refused:
        await open_library(Settings(database_url=url))
    assert "password authentication failed" in str(refused.value)
    assert SECRET not in str(refused.value) and SECRET not in repr(refused.value)
    assert SECRET not in caplog.text


async def test_a_dead_port_is_unavailable_and_never_shown(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"postgresql+asyncpg://doppel:{SECRET}@127.0.0.1:{free_port()}/library"
    with pytest.raises(Unavailable) as refused:
        await open_library(Settings(database_url=url))
    assert SECRET not in str(refused.value)
    assert SECRET not in caplog.text


async def test_reprs_and_logs_of_a_working_library_hide_the_password(
    postgres_server: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    settings = Settings(database_url=postgres_server.url(), database_migrate="auto")
    library = await open_library(settings)
    try:
        assert postgres_server.password not in repr(library)
        assert "***" in repr(library)
        assert postgres_server.password not in repr(settings)
        assert postgres_server.password not in display_url(parse_url(settings.database_url))
    finally:
        await library.close()
    assert "library: postgresql+asyncpg://doppel:***@" in caplog.text
    assert postgres_server.password not in caplog.text


@pytest.mark.parametrize(
    "url",
    [
        f"mysql://doppel:{SECRET}@db/library",
        f"postgresql+asyncpg://doppel:{SECRET}@db:notaport/library",
        f"not a url {SECRET}",
        "sqlite+aiosqlite://",
    ],
)
def test_unusable_urls_are_refused_without_repeating_them(url: str) -> None:
    with pytest.raises(BadDatabaseUrl) as refused:
        parse_url(url)
    assert SECRET not in str(refused.value)
    assert "DOPPEL_DATABASE_URL" in str(refused.value)


def test_the_service_exits_2_on_a_bad_url_without_showing_it() -> None:
    env = {
        **os.environ,
        "DOPPEL_DATABASE_URL": f"mysql://doppel:{SECRET}@db/library",
        "DOPPEL_SCRIPT_PORT": str(free_port()),
        "OTEL_SDK_DISABLED": "true",
    }
    done = subprocess.run(
        [sys.executable, "-m", "services.script"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "DOPPEL_DATABASE_URL" in done.stderr
    assert SECRET not in done.stdout + done.stderr
