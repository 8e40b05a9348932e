"""`Library`: the store of record for drafts and episodes, shows, series and batch jobs.

Every write is one transaction. `save_draft` stores the draft and creates or advances its
episode together, so a crash leaves either both or neither; saving the same draft twice is a
no-op, and saving other bytes under a stored draft's id is a Conflict (drafts never change).
Errors come out as the exceptions of `errors.py`, with the database URL's password redacted.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import secrets
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

from sqlalchemy import and_, exc, false, insert, literal, select, tuple_, update
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from doppelganger.v1 import episode_pb2
from services.script.library import pages
from services.script.library.engine import create_engine, display_url, reader, redact, writer
from services.script.library.errors import (
    Conflict,
    InvalidArgument,
    LibraryError,
    NotFound,
    Unavailable,
)
from services.script.library.migrations import ensure_schema
from services.script.library.models import (
    BATCH_STATUSES,
    DRAFT_KINDS,
    ID,
    PENDING_BATCH_STATUSES,
    REVISION_KINDS,
    SHOW_SOURCES,
    BatchJob,
    Draft,
    Episode,
    Series,
    Show,
    UtcDateTime,
    utc_now,
)
from services.script.library.records import (
    BatchRecord,
    DraftInfo,
    EpisodeSummary,
    Page,
    SeriesRecord,
    ShowRecord,
)
from services.script.library.records import Draft as StoredDraft

log = logging.getLogger(__name__)

MAX_SEARCH_CHARS = 200
SHOW_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")
_DRAFT_INFO = [column for column in Draft.__table__.c if column.key != "proto"]
_EPISODE = list(Episode.__table__.c)
_SHOW = list(Show.__table__.c)
_SERIES = list(Series.__table__.c)
_BATCH = list(BatchJob.__table__.c)


class Library:
    """The library on one database. Build with `open`; `close` when done."""

    def __init__(self, engine: AsyncEngine, url: URL) -> None:
        self._engine = engine
        self._writer = writer(engine)
        self._reader = reader(engine)
        self._url = url
        # SQLite has one writer at a time; queueing ours here is faster than the busy handler,
        # which sleeps in steps of up to 100 ms. Other processes still wait on the busy timeout.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None

    @classmethod
    async def open(cls, url: URL, *, migrate: str = "") -> Library:
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

    # --- drafts and episodes -------------------------------------------------------------

    async def save_draft(
        self,
        episode: episode_pb2.Episode,
        *,
        kind: str,
        parent_id: str | None = None,
        notes: str = "",
        series_id: str | None = None,
        episode_number: int | None = None,
    ) -> DraftInfo:
        """Stores `episode` as a draft, in one transaction with its episode row: a new episode
        (its id is the draft's) without `parent_id`, else the next draft of the parent's.
        `series_id` and `episode_number` place a new episode in a series."""
        _check_draft(episode, kind, parent_id)
        data = episode.SerializeToString(deterministic=True)
        digest = hashlib.sha256(data).hexdigest()
        with self._errors():
            for attempt in range(2):
                try:
                    async with self._write() as connection:
                        stored = await _draft_info(connection, episode.id)
                        if stored is not None:
                            return _same_draft(stored, digest)
                        return await self._insert_draft(
                            connection, episode, data, digest, kind, parent_id, notes,
                            series_id, episode_number,
                        )  # fmt: skip
                except exc.IntegrityError:
                    # Another writer stored this id between our read and our insert (or a
                    # series went away): read again and answer as if we had come second.
                    if attempt:
                        raise
        raise AssertionError("unreachable")

    async def _insert_draft(
        self,
        connection: AsyncConnection,
        episode: episode_pb2.Episode,
        data: bytes,
        digest: str,
        kind: str,
        parent_id: str | None,
        notes: str,
        series_id: str | None,
        episode_number: int | None,
    ) -> DraftInfo:
        now = utc_now()
        title = _clip(episode.outline.title or "(untitled)", 300)
        search_text = f"{episode.outline.title}\n{episode.outline.logline}".lower()
        if parent_id is not None:
            parent = await _draft_info(connection, parent_id)
            if parent is None:
                raise NotFound(f"parent draft {parent_id} not found")
            episode_id = parent.episode_id
            result = await connection.execute(
                update(Episode)
                .where(Episode.id == episode_id)
                .values(
                    draft_count=Episode.draft_count + 1,
                    latest_draft_id=episode.id,
                    title=title,
                    search_text=search_text,
                    updated_at=now,
                )
                .returning(Episode.draft_count)
            )
            position = result.scalar_one()
        else:
            if series_id is not None:
                await _series_row(connection, series_id)
            episode_id, position = episode.id, 1
            await connection.execute(
                insert(Episode).values(
                    id=episode_id,
                    title=title,
                    show_id=_clip(episode.show.id, 100),
                    show_title=_clip(episode.show.title, 200),
                    setting_name=_clip(episode.setting.name or episode.setting.description, 200),
                    series_id=series_id,
                    episode_number=episode_number,
                    latest_draft_id=episode.id,
                    draft_count=1,
                    archived=False,
                    search_text=search_text,
                    created_at=now,
                    updated_at=now,
                )
            )
        usage = episode.usage
        values = {
            "id": episode.id,
            "episode_id": episode_id,
            "position": position,
            "parent_id": parent_id,
            "kind": kind,
            "notes": notes,
            "writer": _clip(episode.writer, 100),
            "model": _clip(episode.model, 200),
            "input_tokens": usage.input_tokens,
            "output_tokens": usage.output_tokens,
            "cache_creation_tokens": usage.cache_creation_input_tokens,
            "cache_read_tokens": usage.cache_read_input_tokens,
            "cost_usd": usage.cost_usd,
            "title": title,
            "sha256": digest,
            "size": len(data),
            "created_at": now,
        }
        await connection.execute(insert(Draft).values(proto=data, **values))
        return DraftInfo.from_row(SimpleNamespace(**values))  # What was just inserted.

    async def get_draft(self, draft_id: str) -> StoredDraft:
        """The draft with this id, script included; NotFound otherwise."""
        with self._errors():
            async with self._read() as connection:
                row = (
                    await connection.execute(
                        select(*_DRAFT_INFO, Draft.proto).where(Draft.id == draft_id)
                    )
                ).one_or_none()
        if row is None:
            raise NotFound(f"draft {draft_id} not found")
        return _whole_draft(row)

    async def latest_draft(self, any_id: str) -> StoredDraft:
        """The latest draft of the episode that `any_id` (an episode's or any draft's) is in."""
        latest = (
            select(Episode.latest_draft_id)
            .join(Draft, Draft.episode_id == Episode.id)
            .where(Draft.id == any_id)
            .scalar_subquery()
        )
        with self._errors():
            async with self._read() as connection:
                row = (
                    await connection.execute(
                        select(*_DRAFT_INFO, Draft.proto).where(Draft.id == latest)
                    )
                ).one_or_none()
        if row is None:
            raise NotFound(f"draft or episode {any_id} not found")
        return _whole_draft(row)

    async def history(self, any_id: str) -> list[DraftInfo]:
        """Every draft of the episode `any_id` is in, oldest first (parents say how they
        branch)."""
        episode_of = select(Draft.episode_id).where(Draft.id == any_id).scalar_subquery()
        with self._errors():
            async with self._read() as connection:
                rows = (
                    await connection.execute(
                        select(*_DRAFT_INFO)
                        .where(Draft.episode_id == episode_of)
                        .order_by(Draft.position)
                    )
                ).all()
        if not rows:
            raise NotFound(f"draft or episode {any_id} not found")
        return [DraftInfo.from_row(row) for row in rows]

    async def list_episodes(
        self,
        page_size: int = 0,
        page_token: str = "",
        *,
        show: str | None = None,
        series_id: str | None = None,
        text: str | None = None,
        include_archived: bool = False,
    ) -> Page[EpisodeSummary]:
        """Episodes newest first (by creation: a new draft does not move its episode, so paging
        never skips or repeats one). `text` matches title or logline, ignoring case."""
        size = pages.check_page_size(page_size)
        needle = (text or "").strip().lower()
        if len(needle) > MAX_SEARCH_CHARS:
            raise InvalidArgument(f"text is longer than {MAX_SEARCH_CHARS} characters")
        query = pages.fingerprint(show or "", series_id or "", needle, include_archived)
        cursor = pages.decode(page_token, query)
        statement = select(*_EPISODE)
        if not include_archived:
            statement = statement.where(Episode.archived == false())
        if show:
            statement = statement.where(Episode.show_id == show)
        if series_id:
            statement = statement.where(Episode.series_id == series_id)
        if needle:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", needle) + "%"
            statement = statement.where(Episode.search_text.like(pattern, escape="\\"))
        if cursor is not None:
            after = tuple_(literal(cursor.created_at, UtcDateTime()), literal(cursor.id))
            statement = statement.where(tuple_(Episode.created_at, Episode.id) < after)
        statement = statement.order_by(Episode.created_at.desc(), Episode.id.desc())
        with self._errors():
            async with self._read() as connection:
                rows = (await connection.execute(statement.limit(size + 1))).all()
        items = [EpisodeSummary.from_row(row) for row in rows[:size]]
        token = ""
        if len(rows) > size:
            last = items[-1]
            token = pages.encode(pages.Cursor(last.created_at, last.id), query)
        return Page(items, token)

    async def get_episode(self, any_id: str) -> EpisodeSummary:
        """The episode `any_id` (its own or any of its drafts') belongs to."""
        episode_of = select(Draft.episode_id).where(Draft.id == any_id).scalar_subquery()
        with self._errors():
            async with self._read() as connection:
                row = (
                    await connection.execute(select(*_EPISODE).where(Episode.id == episode_of))
                ).one_or_none()
        if row is None:
            raise NotFound(f"episode {any_id} not found")
        return EpisodeSummary.from_row(row)

    async def archive(self, any_id: str, archived: bool = True) -> EpisodeSummary:
        """Hides the episode from listings (or shows it again); its drafts stay readable."""
        episode_of = select(Draft.episode_id).where(Draft.id == any_id).scalar_subquery()
        with self._errors():
            async with self._write() as connection:
                row = (
                    await connection.execute(
                        update(Episode)
                        .where(Episode.id == episode_of)
                        .values(archived=archived, updated_at=utc_now())
                        .returning(*_EPISODE)
                    )
                ).one_or_none()
        if row is None:
            raise NotFound(f"episode {any_id} not found")
        return EpisodeSummary.from_row(row)

    # --- shows -----------------------------------------------------------------------------

    async def create_show(
        self, show: episode_pb2.Show, *, replace: bool = False, source: str = "user"
    ) -> ShowRecord:
        """Adds a show; Conflict when its id is taken, unless `replace`."""
        if not SHOW_ID.match(show.id):
            raise InvalidArgument(
                f"show.id must be a slug of lowercase letters, digits and '-' (at most 100): "
                f"{show.id[:100]!r}"
            )
        if not show.title.strip():
            raise InvalidArgument("show.title is required")
        if source not in SHOW_SOURCES:
            raise InvalidArgument(f"source must be one of {', '.join(SHOW_SOURCES)}")
        now = utc_now()
        values = {
            "title": _clip(show.title, 200),
            "source": source,
            "proto": show.SerializeToString(deterministic=True),
            "updated_at": now,
        }
        with self._errors():
            async with self._write() as connection:
                exists = await connection.scalar(select(Show.created_at).where(Show.id == show.id))
                if exists is not None and not replace:
                    raise Conflict(f"show {show.id} already exists")
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

    async def list_shows(self) -> list[ShowRecord]:
        with self._errors():
            async with self._read() as connection:
                rows = (
                    await connection.execute(select(*_SHOW).order_by(Show.title, Show.id))
                ).all()
        return [ShowRecord.from_row(row) for row in rows]

    # --- series ----------------------------------------------------------------------------

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
                        title=_clip(title, 200),
                        show_id=show_id,
                        setting=setting.SerializeToString(deterministic=True),
                        state=state,
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
                row = await _series_row(connection, series_id)
        return SeriesRecord.from_row(row)

    async def get_series(self, series_id: str) -> SeriesRecord:
        with self._errors():
            async with self._read() as connection:
                row = await _series_row(connection, series_id)
        return SeriesRecord.from_row(row)

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
            changes["title"] = _clip(title, 200)
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
                    current = await _series_row(connection, series_id)  # NotFound if gone.
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
                    await _series_row(connection, series_id)
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

    # --- connections and errors ------------------------------------------------------------

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


def _check_draft(episode: episode_pb2.Episode, kind: str, parent_id: str | None) -> None:
    if not episode.id or len(episode.id) > ID:
        raise InvalidArgument(f"a draft needs an episode id of 1 to {ID} characters")
    if kind not in DRAFT_KINDS:
        raise InvalidArgument(f"kind must be one of {', '.join(DRAFT_KINDS)}: {kind!r}")
    if kind in REVISION_KINDS and not parent_id:
        raise InvalidArgument(f"a {kind} draft needs the draft it revises (parent_id)")
    if parent_id == episode.id:
        raise InvalidArgument(f"draft {episode.id} cannot be its own parent")


def _check_status(status: str) -> None:
    if status not in BATCH_STATUSES:
        raise InvalidArgument(f"status must be one of {', '.join(BATCH_STATUSES)}: {status!r}")


def _same_draft(stored: DraftInfo, digest: str) -> DraftInfo:
    """Saving a stored draft again is a no-op; other bytes under its id are refused."""
    if stored.sha256 != digest:
        raise Conflict(
            f"draft {stored.id} is already stored with other content (drafts never change; "
            "a changed script is a new draft with its own id)"
        )
    return stored


def _whole_draft(row: Any) -> StoredDraft:
    """The draft, after checking its bytes against the SHA-256 stored with them."""
    data = bytes(row.proto)
    if hashlib.sha256(data).hexdigest() != row.sha256 or len(data) != row.size:
        raise LibraryError(f"draft {row.id} is damaged: its bytes do not match their SHA-256")
    return StoredDraft(DraftInfo.from_row(row), episode_pb2.Episode.FromString(data))


async def _draft_info(connection: AsyncConnection, draft_id: str) -> DraftInfo | None:
    row = (await connection.execute(select(*_DRAFT_INFO).where(Draft.id == draft_id))).one_or_none()
    return None if row is None else DraftInfo.from_row(row)


async def _series_row(connection: AsyncConnection, series_id: str) -> Any:
    row = (await connection.execute(select(*_SERIES).where(Series.id == series_id))).one_or_none()
    if row is None:
        raise NotFound(f"series {series_id} not found")
    return row


async def _batch_row(connection: AsyncConnection, batch_id: str) -> Any:
    row = (await connection.execute(select(*_BATCH).where(BatchJob.id == batch_id))).one_or_none()
    if row is None:
        raise NotFound(f"batch job {batch_id} not found")
    return row


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
