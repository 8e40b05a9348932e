"""Which database, and an engine that behaves the same way on both.

`DOPPEL_DATABASE_URL` picks it: `postgresql+asyncpg://...` for deployments, or
`sqlite+aiosqlite:///path`; unset means SQLite at `$DOPPEL_DATA_DIR/library.db`. The URL's
password is never shown: `display_url` hides it, and error messages go through `redact`.

Every SQLite connection gets WAL (readers never block the writer), foreign keys, a busy timeout
and `synchronous=FULL` (a committed draft survives a power cut, not only a crash). Write
transactions begin IMMEDIATE, so two writers queue on the busy timeout instead of one failing
when it upgrades its read lock.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from services.script.library.errors import LibraryError
from shared.config import ConfigError, Settings

SQLITE_FILE = "library.db"
SQLITE_BUSY_TIMEOUT_MS = 10_000
POSTGRES_CONNECT_TIMEOUT = 10.0
POSTGRES_COMMAND_TIMEOUT = 30.0
# Execution option of the engine `writer()` returns; on SQLite its transactions begin IMMEDIATE.
WRITE_OPTION = "doppel_library_write"

_DRIVERS = {
    "sqlite": "sqlite+aiosqlite",
    "sqlite+aiosqlite": "sqlite+aiosqlite",
    "postgres": "postgresql+asyncpg",
    "postgresql": "postgresql+asyncpg",
    "postgresql+asyncpg": "postgresql+asyncpg",
}


class BadDatabaseUrl(LibraryError, ConfigError):
    """DOPPEL_DATABASE_URL cannot be used (the message never repeats the URL)."""


class DataDirError(LibraryError, ConfigError):
    """The SQLite library's directory cannot be created or written."""


def database_url(settings: Settings) -> URL:
    """The URL to use: DOPPEL_DATABASE_URL, else SQLite in the data directory."""
    if not settings.database_url:
        return URL.create("sqlite+aiosqlite", database=str(settings.data_path / SQLITE_FILE))
    return parse_url(settings.database_url)


def parse_url(text: str) -> URL:
    """A URL of one of the two supported drivers (plain `postgresql://` and `sqlite:///` get
    the async driver); BadDatabaseUrl naming only the scheme otherwise."""
    try:
        url = make_url(text)
    except (ArgumentError, ValueError):
        raise BadDatabaseUrl(
            "DOPPEL_DATABASE_URL is not a URL (expected postgresql+asyncpg://user:password@host/db "
            "or sqlite+aiosqlite:///path)"
        ) from None
    driver = _DRIVERS.get(url.drivername)
    if driver is None:
        raise BadDatabaseUrl(
            f"DOPPEL_DATABASE_URL: unsupported scheme {url.drivername!r} "
            "(expected postgresql+asyncpg:// or sqlite+aiosqlite:///)"
        )
    url = url.set(drivername=driver)
    if driver.startswith("sqlite") and not url.database:
        raise BadDatabaseUrl("DOPPEL_DATABASE_URL: SQLite needs a file path (in-memory loses data)")
    if driver.startswith("sqlite") and url.database == ":memory:":
        raise BadDatabaseUrl("DOPPEL_DATABASE_URL: SQLite needs a file path (in-memory loses data)")
    return url


def backend(url: URL) -> str:
    """`sqlite` or `postgresql`."""
    return url.get_backend_name()


def display_url(url: URL) -> str:
    """The URL with its password hidden, for logs and reprs."""
    return url.render_as_string(hide_password=True)


def redact(text: str, url: URL) -> str:
    """`text` with the URL's password (raw and as written in the URL) replaced by ***."""
    password = url.password
    if not password:
        return text
    for secret in {str(password), url.render_as_string(hide_password=False)}:
        if secret:
            text = text.replace(secret, "***")
    return text


def create_engine(url: URL) -> AsyncEngine:
    """An async engine for `url` with this module's connection settings."""
    if backend(url) == "sqlite":
        return _sqlite_engine(url)
    return create_async_engine(
        url,
        pool_size=5,
        max_overflow=5,
        pool_timeout=POSTGRES_CONNECT_TIMEOUT,
        pool_pre_ping=True,
        connect_args={
            "timeout": POSTGRES_CONNECT_TIMEOUT,
            "command_timeout": POSTGRES_COMMAND_TIMEOUT,
            "server_settings": {"application_name": "doppel-script"},
        },
    )


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (and pool), marked so its transactions take the write lock at BEGIN."""
    return engine.execution_options(**{WRITE_OPTION: True})


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for reads of one statement: on PostgreSQL in autocommit, which saves the
    BEGIN and ROLLBACK round trips; SQLite's deferred BEGIN costs nothing."""
    if engine.dialect.name == "postgresql":
        return engine.execution_options(isolation_level="AUTOCOMMIT")
    return engine


def _sqlite_engine(url: URL) -> AsyncEngine:
    if url.database:
        _writable_directory(Path(url.database).expanduser().parent)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine.sync_engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        # The driver must not BEGIN on its own; `on_begin` does, with the right lock.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # The busy timeout first: switching to WAL itself waits for other connections.
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        _enable_wal(cursor)
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(WRITE_OPTION, False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _enable_wal(cursor: Any) -> None:
    """Switches the file to WAL (a no-op once it is). Fresh connections switching at the same
    moment (replicas starting together on a new file) can get "database is locked" at once:
    SQLite returns it without waiting when waiting could deadlock. The loser tries again,
    a little later, up to the busy timeout (a rare pause of a few 10 ms, at connect only)."""
    deadline = time.monotonic() + SQLITE_BUSY_TIMEOUT_MS / 1000
    delay = 0.01
    while True:
        try:
            cursor.execute("PRAGMA journal_mode = WAL")
            return
        except Exception as exc:  # The driver's OperationalError, as adapted by SQLAlchemy.
            if "locked" not in str(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _writable_directory(directory: Path) -> None:
    """Creates the library's directory (private to this user), or says clearly why it cannot."""
    try:
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise DataDirError(
            f"the library's directory {directory} cannot be created ({exc.strerror}): set "
            "DOPPEL_DATA_DIR to a writable directory, or DOPPEL_DATABASE_URL"
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise DataDirError(
            f"the library's directory {directory} is not writable: set DOPPEL_DATA_DIR to a "
            "writable directory, or DOPPEL_DATABASE_URL"
        )
