"""Where the library lives: DOPPEL_DATA_DIR, the XDG default, DOPPEL_DATABASE_URL and the
migrate mode, as settings and URLs (no database)."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.script.library.engine import (
    BadDatabaseUrl,
    DataDirError,
    create_engine,
    database_url,
    parse_url,
    redact,
)
from shared.config import ConfigError, Settings


def test_the_data_dir_is_explicit_or_the_xdg_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(data_dir="/srv/doppel").data_path == Path("/srv/doppel")
    monkeypatch.setenv("XDG_DATA_HOME", "/xdg/data")
    assert Settings().data_path == Path("/xdg/data/doppelganger")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/not/allowed")  # The XDG spec ignores it.
    assert Settings().data_path == Path.home() / ".local/share/doppelganger"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert Settings().data_path == Path.home() / ".local/share/doppelganger"


def test_unset_url_means_sqlite_in_the_data_dir() -> None:
    url = database_url(Settings(data_dir="/srv/doppel"))
    assert url.drivername == "sqlite+aiosqlite"
    assert url.database == "/srv/doppel/library.db"


def test_urls_get_the_async_driver() -> None:
    assert parse_url("postgresql://u:p@db/lib").drivername == "postgresql+asyncpg"
    assert parse_url("postgres://u:p@db/lib").drivername == "postgresql+asyncpg"
    assert parse_url("sqlite:////var/lib/x.db").drivername == "sqlite+aiosqlite"
    settings = Settings.from_env({"DOPPEL_DATABASE_URL": "postgresql+asyncpg://u:pw@db:5433/lib"})
    url = database_url(settings)
    assert (url.host, url.port, url.database, url.password) == ("db", 5433, "lib", "pw")
    with pytest.raises(BadDatabaseUrl, match="in-memory"):
        parse_url("sqlite+aiosqlite:///:memory:")


def test_the_password_is_hidden_from_the_settings_repr_and_redacted() -> None:
    settings = Settings.from_env({"DOPPEL_DATABASE_URL": "postgresql://u:hunter2%21@db/lib"})
    assert "hunter2" not in repr(settings)
    url = parse_url(settings.database_url)
    assert redact("login failed with hunter2! for u", url) == "login failed with *** for u"


def test_the_migrate_mode_is_auto_or_check() -> None:
    assert Settings.from_env({}).database_migrate == ""
    assert Settings.from_env({"DOPPEL_DATABASE_MIGRATE": " AUTO "}).database_migrate == "auto"
    assert Settings.from_env({"DOPPEL_DATABASE_MIGRATE": "check"}).database_migrate == "check"
    with pytest.raises(ConfigError, match="DOPPEL_DATABASE_MIGRATE"):
        Settings.from_env({"DOPPEL_DATABASE_MIGRATE": "sometimes"})


def test_a_data_dir_that_cannot_be_made_is_a_clear_configuration_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = database_url(Settings(data_dir=str(blocker / "library")))
    with pytest.raises(DataDirError, match="DOPPEL_DATA_DIR") as refused:
        create_engine(url)
    assert isinstance(refused.value, ConfigError)  # The service exits 2 on it.
    made = tmp_path / "made" / "here"
    engine = create_engine(database_url(Settings(data_dir=str(made))))
    assert made.is_dir() and (made.stat().st_mode & 0o777) == 0o700
    engine.sync_engine.dispose()
