"""The library: the script service's database of record for episodes (lineages of immutable
drafts), shows, series and batch jobs. SQLAlchemy 2 asyncio on SQLite (the default, a file in
DOPPEL_DATA_DIR) or PostgreSQL (DOPPEL_DATABASE_URL); Alembic migrations in `schema/`.

Modules: `models` (tables); `store` (`Library`: drafts and episodes), built on `planning` (shows,
series, batch jobs) and `database` (transactions, error translation); `records` (what it
returns); `pages` (page tokens); `engine` (URLs, connection settings); `migrations` and `schema/`
(Alembic); `errors`. `python -m services.script.library` migrates and checks.
"""

from __future__ import annotations

from services.script.library.engine import database_url
from services.script.library.errors import (
    Conflict,
    InvalidArgument,
    LibraryError,
    NotFound,
    SchemaNotReady,
    Unavailable,
)
from services.script.library.records import (
    BatchRecord,
    Draft,
    DraftInfo,
    EpisodeSummary,
    Page,
    SeriesRecord,
    ShowRecord,
    Usage,
)
from services.script.library.store import Library
from shared.config import Settings

__all__ = [
    "BatchRecord",
    "Conflict",
    "Draft",
    "DraftInfo",
    "EpisodeSummary",
    "InvalidArgument",
    "Library",
    "LibraryError",
    "NotFound",
    "Page",
    "SchemaNotReady",
    "SeriesRecord",
    "ShowRecord",
    "Unavailable",
    "Usage",
    "open_library",
]


async def open_library(settings: Settings) -> Library:
    """The library the settings name, its schema migrated or checked (DOPPEL_DATABASE_MIGRATE)."""
    return await Library.open(database_url(settings), migrate=settings.database_migrate)
