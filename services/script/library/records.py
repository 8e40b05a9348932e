"""What the library returns: frozen records built from rows, never live ORM objects.

The store reads with Core statements and hands back these, so callers cannot lazy-load, mutate
or hold a connection by accident.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from sqlalchemy import Row

from doppelganger.v1 import episode_pb2

T = TypeVar("T")


@dataclass(frozen=True)
class Usage:
    """LLM usage recorded with a draft (all zero for the procedural writer)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0


@dataclass(frozen=True)
class DraftInfo:
    """A draft without its script: what `history` lists."""

    id: str
    episode_id: str
    position: int  # 1 for the episode's first draft, 2 for the next stored, ...
    parent_id: str | None
    kind: str
    notes: str
    writer: str
    model: str
    usage: Usage
    title: str
    sha256: str
    size: int
    created_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any] | Any) -> DraftInfo:
        return cls(
            id=row.id,
            episode_id=row.episode_id,
            position=row.position,
            parent_id=row.parent_id,
            kind=row.kind,
            notes=row.notes,
            writer=row.writer,
            model=row.model,
            usage=Usage(
                input_tokens=row.input_tokens,
                output_tokens=row.output_tokens,
                cache_creation_tokens=row.cache_creation_tokens,
                cache_read_tokens=row.cache_read_tokens,
                cost_usd=row.cost_usd,
            ),
            title=row.title,
            sha256=row.sha256,
            size=row.size,
            created_at=row.created_at,
        )


@dataclass(frozen=True)
class Draft:
    """A draft and its script."""

    info: DraftInfo
    episode: episode_pb2.Episode


@dataclass(frozen=True)
class EpisodeSummary:
    """A library episode (a lineage of drafts) as listings show it."""

    id: str
    title: str
    show_id: str
    show_title: str
    setting_name: str
    series_id: str | None
    episode_number: int | None
    latest_draft_id: str
    draft_count: int
    archived: bool
    created_at: datetime
    updated_at: datetime
    logline: str = ""  # The latest draft's.

    @classmethod
    def from_row(cls, row: Row[Any]) -> EpisodeSummary:
        return cls(
            id=row.id,
            title=row.title,
            show_id=row.show_id,
            show_title=row.show_title,
            setting_name=row.setting_name,
            series_id=row.series_id,
            episode_number=row.episode_number,
            latest_draft_id=row.latest_draft_id,
            draft_count=row.draft_count,
            archived=row.archived,
            created_at=row.created_at,
            updated_at=row.updated_at,
            logline=row.logline,
        )


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; `next_page_token` is empty on the last."""

    items: Sequence[T]
    next_page_token: str


@dataclass(frozen=True)
class ShowRecord:
    show: episode_pb2.Show
    source: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> ShowRecord:
        return cls(
            show=episode_pb2.Show.FromString(row.proto),
            source=row.source,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class SeriesRecord:
    id: str
    title: str
    show_id: str
    setting: episode_pb2.Setting
    state: bytes
    version: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def from_row(cls, row: Row[Any]) -> SeriesRecord:
        return cls(
            id=row.id,
            title=row.title,
            show_id=row.show_id,
            setting=episode_pb2.Setting.FromString(row.setting),
            state=bytes(row.state),
            version=row.version,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


@dataclass(frozen=True)
class BatchRecord:
    id: str
    provider: str
    provider_batch_id: str | None
    status: str
    series_id: str | None
    request: Any
    result: Any
    created_at: datetime
    updated_at: datetime
    stage: str = "outline"
    error: str | None = None

    @classmethod
    def from_row(cls, row: Row[Any]) -> BatchRecord:
        return cls(
            id=row.id,
            provider=row.provider,
            provider_batch_id=row.provider_batch_id,
            status=row.status,
            series_id=row.series_id,
            request=row.request,
            result=row.result,
            created_at=row.created_at,
            updated_at=row.updated_at,
            stage=row.stage,
            error=row.error,
        )
