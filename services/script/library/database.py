"""`Database`: the engine under the library, its transactions, and its errors.

Writes are one transaction each (`_write`), and a write once started runs to its end even when
its caller is cancelled (`uninterrupted`); reads are one statement each (`_read`). Database
failures come out as the exceptions of `errors.py`, with the URL's password redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from typing import Any, ParamSpec, Self, TypeVar

from sqlalchemy import exc
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.script.library.engine import create_engine, display_url, reader, redact, writer
from services.script.library.errors import LibraryError, Unavailable
from services.script.library.migrations import ensure_schema

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def uninterrupted(write: Callable[P, Awaitable[R]]) -> Callable[P, Coroutine[Any, Any, R]]:
    """The write runs in a task of its own and to its end; a caller cancelled meanwhile gets its
    CancelledError once the write is done. Cancelling aiosqlite in the middle of a statement can
    orphan the connection with SQLite's write lock held until garbage collection: every other
    writer then waits out the busy timeout and fails "database is locked" (seen in CI after a
    batch poller was stopped mid-write; 4 in 1500 cancelled writes in a loop, 0 with this)."""

    @functools.wraps(write)
    async def run(*args: P.args, **kwargs: P.kwargs) -> R:
        task = asyncio.ensure_future(write(*args, **kwargs))
        cancelled: asyncio.CancelledError | None = None
        while True:
            try:
                result = await asyncio.shield(task)
            except asyncio.CancelledError as error:
                if task.done():
                    raise
                cancelled = error  # Wait for the write; the cancel is raised after it.
            except BaseException as failure:
                if cancelled is not None:  # The cancel still wins: the caller is going away.
                    raise cancelled from failure
                raise
            else:
                break
        if cancelled is not None:
            raise cancelled
        return result

    return run


class Database:
    """One database. Build with `open`; `close` when done."""

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._reader = reader(engine)
        self._url = url
        # SQLite has one writer at a time; queueing ours here is faster than the busy handler,
        # which sleeps in steps of up to 100 ms. Other processes still wait on the busy timeout.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    async def open(cls, url: URL, *, migrate: str = "") -> Self:
        """Connects, and migrates or checks the schema (migrations.ensure_schema)."""
        engine = create_engine(url)
        library = cls(engine, url)
        try:
            with library._errors():
                await ensure_schema(engine, url, migrate)
        except BaseException:
            await engine.dispose()
            raise
        log.info("library: %s", display_url(url))
        return library

    @property
    def backend(self) -> str:
        return self._engine.dialect.name

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    def __repr__(self) -> str:
        return f"Library({display_url(self._url)})"

    async def close(self) -> None:
        """Closes every pooled connection (safe to call twice)."""
        await self._engine.dispose()

    @contextlib.asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """One write transaction: committed when the block ends, rolled back if it raises."""
        async with contextlib.AsyncExitStack() as stack:
            if self._write_turn is not None:
                await stack.enter_async_context(self._write_turn)
            yield await stack.enter_async_context(self._writer.begin())

    def _read(self) -> AsyncConnection:
        """A connection for reads of one statement each (autocommit on PostgreSQL)."""
        return self._reader.connect()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        """Database failures as Unavailable or LibraryError, the password redacted."""
        try:
            yield
        except LibraryError:
            raise
        except (exc.OperationalError, exc.InterfaceError, exc.TimeoutError) as error:
            reason = redact(str(getattr(error, "orig", None) or error), self._url)[:300]
            raise Unavailable(f"library database unavailable: {reason}") from None
        except (OSError, TimeoutError) as error:
            reason = redact(f"{type(error).__name__}: {error}", self._url)[:300]
            raise Unavailable(f"library database unavailable: {reason}") from None
        except exc.DBAPIError as error:
            reason = redact(str(error.orig or error), self._url)[:300]
            if error.statement is None:  # Failed before any statement: connecting, logging in.
                raise Unavailable(f"library database unavailable: {reason}") from None
            raise LibraryError(f"library database error: {reason}") from None
        except exc.SQLAlchemyError as error:
            reason = redact(str(getattr(error, "orig", None) or error), self._url)[:300]
            raise LibraryError(f"library database error: {reason}") from None


def clip(text: str, limit: int) -> str:
    """`text` cut to a column's length (PostgreSQL refuses longer text; SQLite would keep it)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
