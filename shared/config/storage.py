"""Settings of what is kept: the cache's entries and the script service's library."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config.setting import COUNT, TEXT, choice, setting


@dataclass(frozen=True)
class StorageSettings:
    """Cache and library"""

    cache_ttl_seconds: int = setting(
        "DOPPEL_CACHE_TTL_SECONDS", 7 * 24 * 3600, COUNT, "Default TTL of cache entries."
    )
    cache_max_value_bytes: int = setting(
        "DOPPEL_CACHE_MAX_VALUE_BYTES", 4 * 1024 * 1024 - 64 * 1024, COUNT,
        "Largest value CacheService.Set accepts.",
    )  # fmt: skip
    data_dir: str = setting(
        "DOPPEL_DATA_DIR", "", TEXT,
        "Where the script service keeps its library (`library.db`) when DOPPEL_DATABASE_URL is "
        "unset.",
        shown_default="`$XDG_DATA_HOME/doppelganger`, else `~/.local/share/doppelganger`",
    )  # fmt: skip
    database_url: str = setting(
        "DOPPEL_DATABASE_URL", "", TEXT,
        "The library's database: `postgresql+asyncpg://user:password@host/db` or "
        "`sqlite+aiosqlite:///path` (the password is never logged); unset: SQLite in the data "
        "dir.",
        secret=True,
    )  # fmt: skip
    database_migrate: str = setting(
        "DOPPEL_DATABASE_MIGRATE", "", choice("auto", "check"),
        "`auto`: the script service applies pending schema migrations at start; `check`: it "
        "refuses to start (exit 2) while the schema is behind. Unset: auto on SQLite, check on "
        "PostgreSQL.",
    )  # fmt: skip
    import_max_bytes: int = setting(
        "DOPPEL_IMPORT_MAX_BYTES", 2 * 1024 * 1024, COUNT,
        "Largest script ImportDraft accepts (and `doppel import` sends); larger: "
        "INVALID_ARGUMENT (a request over DOPPEL_SCRIPT_MAX_RECEIVE_BYTES never reaches it).",
    )  # fmt: skip
