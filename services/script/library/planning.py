"""Shows, series and batch jobs: what the season and batch features build on.

A user's shows sit beside the bundled catalog; a series carries the season feature's state under
a version, so two writers cannot both update what they read; batch jobs record provider batches
from submission to result.
"""

from __future__ import annotations

import re
import secrets
from typing import Any

from sqlalchemy import and_, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from doppelganger.v1 import episode_pb2
from services.script.library.database import Database, clip, uninterrupted
from services.script.library.errors import Conflict, InvalidArgument, NotFound
from services.script.library.models import (
    BATCH_STATUSES,
    ID,
    PENDING_BATCH_STATUSES,
    SHOW_SOURCES,
    BatchJob,
    Series,
    Show,
    utc_now,
)
from services.script.library.records import BatchRecord, SeriesRecord, ShowRecord

SHOW_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_KEY_NOISE = re.compile(r"[^a-z0-9]+")
_ARTICLES = frozenset({"the", "a", "an"})
_SHOW = list(Show.__table__.c)
_SERIES = list(Series.__table__.c)
_BATCH = list(BatchJob.__table__.c)


class PlanningStore(Database):
    """Shows, series and batch jobs (the `Library` has these and the drafts)."""

    # --- shows -----------------------------------------------------------------------------

    @uninterrupted
    async def create_show(
        self, show: episode_pb2.Show, *, replace: bool = False, source: str = "user"
    ) -> ShowRecord:
        """Adds a show; Conflict when its id is taken, unless `replace`."""
        if not SHOW_ID.match(show.id):
            raise InvalidArgument(
                f"show.id must be a slug of lowercase letters, digits and '-' (at most 100): "
                f"{show.id[:100]!r}"
            )
        if not title_key(show.title):
            raise InvalidArgument("show.title is required (letters or digits)")
        if source not in SHOW_SOURCES:
            raise InvalidArgument(f"source must be one of {', '.join(SHOW_SOURCES)}")
        now = utc_now()
        key = title_key(show.title)
        values = {
            "title": clip(show.title, 200),
            "title_key": key,
            "source": source,
            "proto": show.SerializeToString(deterministic=True),
            "updated_at": now,
        }
        with self._errors():
            async with self._write() as connection:
                exists = await connection.scalar(select(Show.created_at).where(Show.id == show.id))
                if exists is not None and not replace:
                    raise Conflict(f"show {show.id} already exists")
                namesake = await connection.scalar(
                    select(Show.id).where(Show.title_key == key, Show.id != show.id)
                )
                if namesake is not None:
                    raise Conflict(f"show {namesake} already has the title {show.title[:80]!r}")
                if exists is None:
                    await connection.execute(
                        insert(Show).values(id=show.id, created_at=now, **values)
                    )
                else:
                    await connection.execute(
                        update(Show).where(Show.id == show.id).values(**values)
                    )
                row = (await connection.execute(select(*_SHOW).where(Show.id == show.id))).one()
        return ShowRecord.from_row(row)

    async def get_show(self, show_id: str) -> ShowRecord:
        with self._errors():
            async with self._read() as connection:
                row = (
                    await connection.execute(select(*_SHOW).where(Show.id == show_id))
                ).one_or_none()
        if row is None:
            raise NotFound(f"show {show_id} not found")
        return ShowRecord.from_row(row)

    async def find_show(self, query: str) -> ShowRecord | None:
        """The show whose id or title (ignoring case, punctuation and articles) is `query`."""
        key = title_key(query)
        if not key:
            return None
        with self._errors():
            async with self._read() as connection:
                rows = (
                    await connection.execute(
                        select(*_SHOW).where((Show.id == query.strip()) | (Show.title_key == key))
                    )
                ).all()
        by_id = [row for row in rows if row.id == query.strip()]
        return ShowRecord.from_row((by_id or rows)[0]) if rows else None

    async def list_shows(self) -> list[ShowRecord]:
        with self._errors():
            async with self._read() as connection:
                rows = (
                    await connection.execute(select(*_SHOW).order_by(Show.title, Show.id))
                ).all()
        return [ShowRecord.from_row(row) for row in rows]

    # --- series ----------------------------------------------------------------------------

    @uninterrupted
    async def create_series(
        self,
        *,
        title: str,
        show_id: str,
        setting: episode_pb2.Setting,
        state: bytes = b"",
        series_id: str | None = None,
    ) -> SeriesRecord:
        """A new series at version 1; Conflict when `series_id` is taken."""
        series_id = series_id or "se-" + secrets.token_hex(10)
        if len(series_id) > ID or not title.strip() or not show_id:
            raise InvalidArgument(f"series needs an id of at most {ID} characters, title, show")
        now = utc_now()
        with self._errors():
            async with self._write() as connection:
                if await connection.scalar(select(Series.id).where(Series.id == series_id)):
                    raise Conflict(f"series {series_id} already exists")
                await connection.execute(
                    insert(Series).values(
                        id=series_id,
                        title=clip(title, 200),
                        show_id=show_id,
                        setting=setting.SerializeToString(deterministic=True),
                        state=state,
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                row = await series_row(connection, series_id)
        return SeriesRecord.from_row(row)

    async def get_series(self, series_id: str) -> SeriesRecord:
        with self._errors():
            async with self._read() as connection:
                row = await series_row(connection, series_id)
        return SeriesRecord.from_row(row)

    @uninterrupted
    async def update_series(
        self,
        series_id: str,
        *,
        expected_version: int,
        state: bytes | None = None,
        title: str | None = None,
    ) -> SeriesRecord:
        """Writes the new state only if nobody else did since `expected_version` was read:
        Conflict otherwise (read again, redo, retry). The version goes up by one."""
        changes: dict[str, Any] = {"version": Series.version + 1, "updated_at": utc_now()}
        if state is not None:
            changes["state"] = state
        if title is not None:
            changes["title"] = clip(title, 200)
        with self._errors():
            async with self._write() as connection:
                result = await connection.execute(
                    update(Series)
                    .where(and_(Series.id == series_id, Series.version == expected_version))
                    .values(**changes)
                    .returning(*_SERIES)
                )
                row = result.one_or_none()
                if row is None:
                    current = await series_row(connection, series_id)  # NotFound if gone.
                    raise Conflict(
                        f"series {series_id} is at version {current.version}, "
                        f"not {expected_version}"
                    )
        return SeriesRecord.from_row(row)

    async def list_series(self, show_id: str | None = None) -> list[SeriesRecord]:
        statement = select(*_SERIES).order_by(Series.created_at, Series.id)
        if show_id:
            statement = statement.where(Series.show_id == show_id)
        with self._errors():
            async with self._read() as connection:
                rows = (await connection.execute(statement)).all()
        return [SeriesRecord.from_row(row) for row in rows]

    # --- batch jobs ------------------------------------------------------------------------

    @uninterrupted
    async def save_batch(
        self,
        *,
        provider: str,
        request: Any,
        series_id: str | None = None,
        status: str = "queued",
        provider_batch_id: str | None = None,
        batch_id: str | None = None,
    ) -> BatchRecord:
        """Records a batch job (its request payload as JSON) before it is submitted."""
        _check_status(status)
        batch_id = batch_id or "bj-" + secrets.token_hex(10)
        now = utc_now()
        with self._errors():
            async with self._write() as connection:
                if series_id is not None:
                    await series_row(connection, series_id)
                if await connection.scalar(select(BatchJob.id).where(BatchJob.id == batch_id)):
                    raise Conflict(f"batch job {batch_id} already exists")
                await connection.execute(
                    insert(BatchJob).values(
                        id=batch_id,
                        provider=provider,
                        provider_batch_id=provider_batch_id,
                        status=status,
                        series_id=series_id,
                        request=request,
                        result=None,
                        created_at=now,
                        updated_at=now,
                    )
                )
                row = await _batch_row(connection, batch_id)
        return BatchRecord.from_row(row)

    @uninterrupted
    async def update_batch(
        self,
        batch_id: str,
        *,
        status: str | None = None,
        provider_batch_id: str | None = None,
        result: Any = None,
    ) -> BatchRecord:
        changes: dict[str, Any] = {"updated_at": utc_now()}
        if status is not None:
            _check_status(status)
            changes["status"] = status
        if provider_batch_id is not None:
            changes["provider_batch_id"] = provider_batch_id
        if result is not None:
            changes["result"] = result
        with self._errors():
            async with self._write() as connection:
                await connection.execute(
                    update(BatchJob).where(BatchJob.id == batch_id).values(**changes)
                )
                row = await _batch_row(connection, batch_id)
        return BatchRecord.from_row(row)

    async def pending_batches(self, provider: str | None = None) -> list[BatchRecord]:
        """Jobs not yet finished (queued, submitted, in progress), oldest first."""
        statement = (
            select(*_BATCH)
            .where(BatchJob.status.in_(PENDING_BATCH_STATUSES))
            .order_by(BatchJob.created_at, BatchJob.id)
        )
        if provider:
            statement = statement.where(BatchJob.provider == provider)
        with self._errors():
            async with self._read() as connection:
                rows = (await connection.execute(statement)).all()
        return [BatchRecord.from_row(row) for row in rows]


def _check_status(status: str) -> None:
    if status not in BATCH_STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(BATCH_STATUSES)}: {status!r}")


async def series_row(connection: AsyncConnection, series_id: str) -> Any:
    row = (await connection.execute(select(*_SERIES).where(Series.id == series_id))).one_or_none()
    if row is None:
        raise NotFound(f"series {series_id} not found")
    return row


async def _batch_row(connection: AsyncConnection, batch_id: str) -> Any:
    row = (await connection.execute(select(*_BATCH).where(BatchJob.id == batch_id))).one_or_none()
    if row is None:
        raise NotFound(f"batch job {batch_id} not found")
    return row


def title_key(title: str) -> str:
    """How a title is looked up: 'The Quibble Family!' and 'quibble family' are one key."""
    words = _KEY_NOISE.sub(" ", title.lower()).split()
    return clip(" ".join(w for w in words if w not in _ARTICLES), 200)
