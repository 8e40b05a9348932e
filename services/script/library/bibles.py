"""Series as the season feature keeps them: a `doppelganger.v1.Series` and its versioned bible.

The series row holds what does not change between episodes (show, setting, cast, relationships,
seed, title: the Series proto without its bible) in `state`; every version of the bible is a row
of `series_bibles`. Creating a series writes both in one transaction (bible version 1, empty);
`update_bible` bumps the series' version only if nobody else did since it was read and writes the
new bible under that version, in one transaction, so a season's continuity pass adds each
episode atomically and two passes over one series cannot both win.
"""

from __future__ import annotations

import secrets
from typing import Any

from google.protobuf.message import DecodeError
from sqlalchemy import and_, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from doppelganger.v1 import series_pb2
from services.script.library import pages
from services.script.library.database import Database, clip, uninterrupted
from services.script.library.errors import Conflict, InvalidArgument, NotFound
from services.script.library.models import ID, Series, SeriesBible, UtcDateTime, utc_now
from services.script.library.records import Page

_SERIES = list(Series.__table__.c)


class BibleStore(Database):
    """Series with their bibles (the `Library` has these beside everything else)."""

    @uninterrupted
    async def create_series_record(self, series: series_pb2.Series) -> series_pb2.Series:
        """Stores a new series (its id made when empty) with an empty bible at version 1."""
        series_id = series.id or "se-" + secrets.token_hex(10)
        if len(series_id) > ID:
            raise InvalidArgument(f"series.id must be at most {ID} characters")
        if not series.title.strip() or not series.show.id:
            raise InvalidArgument("a series needs a title and a show")
        header = _header(series)
        now = utc_now()
        with self._errors():
            async with self._write() as connection:
                if await connection.scalar(select(Series.id).where(Series.id == series_id)):
                    raise Conflict(f"series {series_id} already exists")
                await connection.execute(
                    insert(Series).values(
                        id=series_id,
                        title=clip(series.title, 200),
                        show_id=clip(series.show.id, 100),
                        setting=series.setting.SerializeToString(deterministic=True),
                        state=header,
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                await _insert_bible(connection, series_id, 1, 0, series.bible)
                return await _series(connection, series_id)

    async def get_series_record(self, series_id: str) -> series_pb2.Series:
        """The series with the bible of its current version; NotFound otherwise."""
        with self._errors():
            async with self._read() as connection:
                return await _series(connection, series_id)

    async def get_bible(self, series_id: str, version: int) -> series_pb2.Bible:
        """The bible as it was at `version` of the series; NotFound when there is none."""
        with self._errors():
            async with self._read() as connection:
                data = await connection.scalar(
                    select(SeriesBible.proto).where(
                        and_(SeriesBible.series_id == series_id, SeriesBible.version == version)
                    )
                )
        if data is None:
            raise NotFound(f"series {series_id} has no bible at version {version}")
        return series_pb2.Bible.FromString(bytes(data))

    async def list_series_records(
        self, page_size: int = 0, page_token: str = "", *, show_id: str = ""
    ) -> Page[series_pb2.Series]:
        """Series newest first (keyset-paginated on (created_at, id)), each with its bible."""
        size = pages.check_page_size(page_size)
        query = pages.fingerprint("series", show_id)
        cursor = pages.decode(page_token, query)
        statement = select(Series.id, Series.created_at)
        if show_id:
            statement = statement.where(Series.show_id == show_id)
        if cursor is not None:
            after = tuple_(literal(cursor.created_at, UtcDateTime()), literal(cursor.id))
            statement = statement.where(tuple_(Series.created_at, Series.id) < after)
        statement = statement.order_by(Series.created_at.desc(), Series.id.desc())
        with self._errors():
            async with self._read() as connection:
                rows = (await connection.execute(statement.limit(size + 1))).all()
                items = [await _series(connection, row.id) for row in rows[:size]]
        token = ""
        if len(rows) > size:
            last = rows[size - 1]
            token = pages.encode(pages.Cursor(last.created_at, last.id), query)
        return Page(items, token)

    @uninterrupted
    async def update_bible(
        self,
        series_id: str,
        bible: series_pb2.Bible,
        *,
        expected_version: int,
        episode_number: int = 0,
    ) -> series_pb2.Series:
        """Writes `bible` as the series' next version, if the series is still at
        `expected_version` (Conflict otherwise: read again, redo, retry). One transaction."""
        with self._errors():
            async with self._write() as connection:
                result = await connection.execute(
                    update(Series)
                    .where(and_(Series.id == series_id, Series.version == expected_version))
                    .values(version=Series.version + 1, updated_at=utc_now())
                    .returning(Series.version)
                )
                version = result.scalar_one_or_none()
                if version is None:
                    current = await _row(connection, series_id)  # NotFound if gone.
                    raise Conflict(
                        f"series {series_id} is at version {current.version}, "
                        f"not {expected_version}"
                    )
                await _insert_bible(connection, series_id, version, episode_number, bible)
                return await _series(connection, series_id)


def _header(series: series_pb2.Series) -> bytes:
    """The series without what the database keeps in columns and rows of its own."""
    header = series_pb2.Series()
    header.CopyFrom(series)
    for name in ("id", "bible", "version", "created_at", "updated_at"):
        header.ClearField(name)
    return header.SerializeToString(deterministic=True)


async def _insert_bible(
    connection: AsyncConnection,
    series_id: str,
    version: int,
    episode_number: int,
    bible: series_pb2.Bible,
) -> None:
    await connection.execute(
        insert(SeriesBible).values(
            series_id=series_id,
            version=version,
            episode_number=episode_number,
            proto=bible.SerializeToString(deterministic=True),
            created_at=utc_now(),
        )
    )


async def _row(connection: AsyncConnection, series_id: str) -> Any:
    row = (await connection.execute(select(*_SERIES).where(Series.id == series_id))).one_or_none()
    if row is None:
        raise NotFound(f"series {series_id} not found")
    return row


async def _series(connection: AsyncConnection, series_id: str) -> series_pb2.Series:
    """The Series proto: the row's header and columns, and the bible of its version (a series
    made by PlanningStore.create_series has no bible rows: an empty bible)."""
    row = await _row(connection, series_id)
    series = series_pb2.Series()
    try:
        series.ParseFromString(bytes(row.state))
    except DecodeError:  # Not a Series header: keep the columns only.
        series = series_pb2.Series()
    series.id = row.id
    series.title = row.title
    series.version = row.version
    if not series.show.id:
        series.show.id = row.show_id
    if not series.HasField("setting"):
        series.setting.ParseFromString(bytes(row.setting))
    series.created_at.FromDatetime(row.created_at)
    series.updated_at.FromDatetime(row.updated_at)
    data = await connection.scalar(
        select(SeriesBible.proto)
        .where(SeriesBible.series_id == series_id)
        .order_by(SeriesBible.version.desc())
        .limit(1)
    )
    if data is not None:
        series.bible.ParseFromString(bytes(data))
    return series
