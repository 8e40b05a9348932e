"""The library's tables: shows, series (and their bibles' versions), episodes, drafts, batch jobs.

A library episode is a lineage of drafts. Drafts are immutable: each holds one serialized
`doppelganger.v1.Episode` (its `id` is the proto's), its SHA-256 and size, and what made it
(kind, notes, writer, model, usage). The episode row is the lineage's index card: its id is the
id of its first draft, and it names the latest draft and how many there are.

Timestamps are timezone-aware UTC on both databases (`UtcDateTime`). Every constraint has a
name (`NAMING`) so Alembic migrations can refer to them on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

SHOW_SOURCES = ("user", "analysed")
DRAFT_KINDS = ("generated", "regenerated", "revised", "imported", "outline")
# Kinds that revise an earlier draft, so they name it as their parent.
REVISION_KINDS = frozenset({"regenerated", "revised"})
BATCH_STATUSES = (
    "queued",
    "submitted",
    "in_progress",
    "completed",
    "failed",
    "cancelled",
    "expired",
)
PENDING_BATCH_STATUSES = ("queued", "submitted", "in_progress")

ID = 64  # Longest id: "ep-" + 20 hex today; room for other schemes.
NAME = 200
LOGLINE = 1000  # Episode.logline: the latest draft's, clipped (0005_episode_loglines).


def _one_of(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(value) for value in values)})"


class UtcDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out: SQLite keeps no zone, so naive values read back as UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("library timestamps must be timezone-aware")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Show(Base):
    """A show a user added (or one analysed from scripts), beside the bundled catalog."""

    __tablename__ = "shows"
    __table_args__ = (
        CheckConstraint(_one_of("source", SHOW_SOURCES), name="source"),
        # GetShow and GenerateEpisode find a user's show by title too: one show per title.
        Index("ix_shows_title_key", "title_key", unique=True),
    )

    id: Mapped[str] = mapped_column(String(100), primary_key=True)  # The slug, Show.id.
    title: Mapped[str] = mapped_column(String(NAME))
    # The title as looked up: lower case, punctuation and articles dropped (title_key()).
    title_key: Mapped[str] = mapped_column(String(NAME))
    source: Mapped[str] = mapped_column(String(16))
    proto: Mapped[bytes] = mapped_column(LargeBinary)  # Serialized doppelganger.v1.Show.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Series(Base):
    """A season in the making; `state` is the season feature's, guarded by `version`."""

    __tablename__ = "series"

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    title: Mapped[str] = mapped_column(String(NAME))
    show_id: Mapped[str] = mapped_column(String(100), index=True)
    setting: Mapped[bytes] = mapped_column(LargeBinary)  # Serialized doppelganger.v1.Setting.
    state: Mapped[bytes] = mapped_column(LargeBinary)
    version: Mapped[int] = mapped_column(Integer)  # Optimistic concurrency: +1 per update.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class SeriesBible(Base):
    """One version of a series' bible (a serialized doppelganger.v1.Bible). A new version is
    written in the same transaction that bumps `series.version`, so the latest row is always
    the bible of the series' current version, and every earlier one stays readable."""

    __tablename__ = "series_bibles"

    series_id: Mapped[str] = mapped_column(ForeignKey("series.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)  # series.version it made.
    episode_number: Mapped[int] = mapped_column(Integer)  # Whose facts it added; 0: none.
    proto: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Episode(Base):
    """A lineage of drafts; listing reads only this table."""

    __tablename__ = "episodes"
    __table_args__ = (
        # Newest first, keyset-paginated on (created_at, id); archived ones left out by default.
        Index("ix_episodes_listing", "archived", "created_at", "id"),
        Index("ix_episodes_show_listing", "show_id", "archived", "created_at", "id"),
        Index("ix_episodes_series_number", "series_id", "episode_number"),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)  # Its first draft's id.
    title: Mapped[str] = mapped_column(String(300))
    show_id: Mapped[str] = mapped_column(String(100))
    show_title: Mapped[str] = mapped_column(String(NAME))
    setting_name: Mapped[str] = mapped_column(String(NAME))
    series_id: Mapped[str | None] = mapped_column(ForeignKey("series.id"))
    episode_number: Mapped[int | None] = mapped_column(Integer)
    latest_draft_id: Mapped[str] = mapped_column(String(ID))
    draft_count: Mapped[int] = mapped_column(Integer)
    archived: Mapped[bool] = mapped_column(Boolean)
    logline: Mapped[str] = mapped_column(String(LOGLINE), server_default="")  # Latest draft's.
    search_text: Mapped[str] = mapped_column(Text)  # Lower-cased title and logline.
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())


class Draft(Base):
    """One immutable version of an episode's script."""

    __tablename__ = "drafts"
    __table_args__ = (
        CheckConstraint(_one_of("kind", DRAFT_KINDS), name="kind"),
        UniqueConstraint("episode_id", "position"),
        Index("ix_drafts_parent_id", "parent_id"),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)  # Episode.id of the proto.
    episode_id: Mapped[str] = mapped_column(ForeignKey("episodes.id"))
    position: Mapped[int] = mapped_column(Integer)  # 1 for the first draft of its episode, ...
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("drafts.id"))
    kind: Mapped[str] = mapped_column(String(16))
    notes: Mapped[str] = mapped_column(Text)  # The notes or request behind the draft.
    writer: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(NAME))
    input_tokens: Mapped[int] = mapped_column(BigInteger)
    output_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_creation_tokens: Mapped[int] = mapped_column(BigInteger)
    cache_read_tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(Float)
    title: Mapped[str] = mapped_column(String(300))
    proto: Mapped[bytes] = mapped_column(LargeBinary)  # Deterministic serialization.
    sha256: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())


class BatchJob(Base):
    """A provider batch (many LLM requests at half price, answered within a day)."""

    __tablename__ = "batch_jobs"
    __table_args__ = (
        CheckConstraint(_one_of("status", BATCH_STATUSES), name="status"),
        Index("ix_batch_jobs_status_created_at", "status", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    provider: Mapped[str] = mapped_column(String(32))
    provider_batch_id: Mapped[str | None] = mapped_column(String(NAME))
    status: Mapped[str] = mapped_column(String(16))
    series_id: Mapped[str | None] = mapped_column(ForeignKey("series.id"))
    request: Mapped[Any] = mapped_column(JSON)
    result: Mapped[Any | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime())
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime())
    # Batch mode (services/script/batch_jobs.py): which provider batch the job waits for now
    # ("outline", "scenes"), or "assembling", "done"; why it failed; and the poller that holds it.
    stage: Mapped[str] = mapped_column(String(16), server_default="outline")
    error: Mapped[str | None] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(String(ID))
    claimed_until: Mapped[datetime | None] = mapped_column(UtcDateTime())
