"""`Library`: the store of record for drafts and episodes (and, through PlanningStore, shows,
series and batch jobs).

Every write is one transaction. `save_draft` stores the draft and creates or advances its
episode together, so a crash leaves either both or neither; saving the same draft twice is a
no-op, and saving other bytes under a stored draft's id is a Conflict (drafts never change).
Errors come out as the exceptions of `errors.py`, with the database URL's password redacted.
"""

from __future__ import annotations

import hashlib
import re
from types import SimpleNamespace
from typing import Any

from sqlalchemy import exc, false, insert, literal, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from doppelganger.v1 import episode_pb2
from services.script.library import pages
from services.script.library.bibles import BibleStore
from services.script.library.database import clip, uninterrupted
from services.script.library.errors import Conflict, InvalidArgument, LibraryError, NotFound
from services.script.library.models import (
    DRAFT_KINDS,
    ID,
    LOGLINE,
    REVISION_KINDS,
    Draft,
    Episode,
    UtcDateTime,
    utc_now,
)
from services.script.library.planning import PlanningStore, series_row
from services.script.library.records import Draft as StoredDraft
from services.script.library.records import DraftInfo, EpisodeSummary, Page

MAX_SEARCH_CHARS = 200
_DRAFT_INFO = [column for column in Draft.__table__.c if column.key != "proto"]
_EPISODE = list(Episode.__table__.c)


class Library(PlanningStore, BibleStore):
    """The library: drafts and episodes here; shows, series and batch jobs from PlanningStore;
    series with their versioned bibles from BibleStore; connections from Database. Build with
    `Library.open(url)`; `close` when done."""

    @uninterrupted
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
        title = clip(episode.outline.title or "(untitled)", 300)
        search_text = f"{episode.outline.title}\n{episode.outline.logline}".lower()
        logline = clip(episode.outline.logline, LOGLINE)
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
                    logline=logline,
                    search_text=search_text,
                    updated_at=now,
                )
                .returning(Episode.draft_count)
            )
            position = result.scalar_one()
        else:
            if series_id is not None:
                await series_row(connection, series_id)
            episode_id, position = episode.id, 1
            await connection.execute(
                insert(Episode).values(
                    id=episode_id,
                    title=title,
                    show_id=clip(episode.show.id, 100),
                    show_title=clip(episode.show.title, 200),
                    setting_name=clip(episode.setting.name or episode.setting.description, 200),
                    series_id=series_id,
                    episode_number=episode_number,
                    latest_draft_id=episode.id,
                    draft_count=1,
                    archived=False,
                    logline=logline,
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
            "writer": clip(episode.writer, 100),
            "model": clip(episode.model, 200),
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

    async def draft_infos(self, draft_ids: list[str]) -> dict[str, DraftInfo]:
        """The drafts with these ids, without their scripts, in one query (for listings)."""
        if not draft_ids:
            return {}
        with self._errors():
            async with self._read() as connection:
                rows = (
                    await connection.execute(select(*_DRAFT_INFO).where(Draft.id.in_(draft_ids)))
                ).all()
        return {row.id: DraftInfo.from_row(row) for row in rows}

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

    @uninterrupted
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


def _check_draft(episode: episode_pb2.Episode, kind: str, parent_id: str | None) -> None:
    if not episode.id or len(episode.id) > ID:
        raise InvalidArgument(f"a draft needs an episode id of 1 to {ID} characters")
    if kind not in DRAFT_KINDS:
        raise InvalidArgument(f"kind must be one of {', '.join(DRAFT_KINDS)}: {kind!r}")
    if kind in REVISION_KINDS and not parent_id:
        raise InvalidArgument(f"a {kind} draft needs the draft it revises (parent_id)")
    if parent_id == episode.id:
        raise InvalidArgument(f"draft {episode.id} cannot be its own parent")


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
