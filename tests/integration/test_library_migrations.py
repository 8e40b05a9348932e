"""Schema migrations on a real SQLite file and a real PostgreSQL server: up from empty, one step
down and up again, the models agreeing with the migrations, the start-up check, and replicas
migrating at the same moment."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import Column, Integer, Table, inspect
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import AsyncEngine

from services.script.library import Library, SchemaNotReady
from services.script.library import migrations as schema
from services.script.library.engine import create_engine
from services.script.library.models import Base
from tests.integration.library_samples import draft_id, sample_episode

TABLES = {
    "shows",
    "series",
    "series_bibles",
    "episodes",
    "drafts",
    "batch_jobs",
    "alembic_version",
}
# What 0002_series added: down to 0001 removes it.
SERIES_STEP_TABLES = {"series_bibles"}


@pytest.fixture
async def engine(database_url: URL) -> AsyncIterator[AsyncEngine]:
    made = create_engine(database_url)
    yield made
    await made.dispose()


async def columns(engine: AsyncEngine, table: str) -> set[str]:
    async with engine.connect() as connection:
        found = await connection.run_sync(lambda sync: inspect(sync).get_columns(table))
    return {column["name"] for column in found}


async def tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as connection:
        return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_upgrade_downgrade_one_step_and_upgrade_again(
    engine: AsyncEngine, database_url: URL
) -> None:
    assert not (await schema.status(engine)).current
    await schema.upgrade(engine)
    assert await tables(engine) == TABLES
    found = await schema.status(engine)
    assert found.up_to_date and found.current == found.heads

    await schema.downgrade(engine, "-1")
    back = await schema.status(engine)
    assert not back.up_to_date and back.current == ("0004_batch_jobs",)
    assert "logline" not in await columns(engine, "episodes")  # 0005_episode_loglines's
    await schema.downgrade(engine, "-1")
    # 0004_batch_jobs's columns go with it; the table stays (0001's).
    assert not await columns(engine, "batch_jobs") & {"stage", "error", "claimed_by"}
    await schema.downgrade(engine, "0001")
    assert await tables(engine) == TABLES - SERIES_STEP_TABLES
    assert (await schema.status(engine)).current == ("0001",)
    await schema.downgrade(engine, "base")
    assert await tables(engine) == {"alembic_version"}
    assert not (await schema.status(engine)).current

    await schema.upgrade(engine)
    assert (await schema.status(engine)).up_to_date
    library = await Library.open(database_url, migrate="check")
    try:
        episode = sample_episode(draft_id("migrated"))
        await library.save_draft(episode, kind="generated")
        assert (await library.get_draft(episode.id)).episode == episode
    finally:
        await library.close()


async def test_episodes_stored_before_0005_get_their_latest_drafts_logline(
    engine: AsyncEngine, database_url: URL
) -> None:
    await schema.upgrade(engine)
    library = await Library.open(database_url, migrate="check")
    try:
        first = sample_episode(draft_id("old", 1), logline="Lucy sells algae loaf.")
        await library.save_draft(first, kind="generated")
        revised = sample_episode(
            draft_id("old", 2), logline="Ricky sells it back.", parent_id=first.id
        )
        await library.save_draft(revised, kind="regenerated", parent_id=first.id)
        bare = sample_episode(draft_id("bare", 1), logline="")
        await library.save_draft(bare, kind="generated")
    finally:
        await library.close()
    await schema.downgrade(engine, "0004_batch_jobs")
    await schema.upgrade(engine)
    library = await Library.open(database_url, migrate="check")
    try:
        page = await library.list_episodes(10, "")
    finally:
        await library.close()
    assert {e.id: e.logline for e in page.items} == {first.id: "Ricky sells it back.", bare.id: ""}


async def test_models_and_migrations_agree(database_url: URL) -> None:
    assert await schema.check_models(database_url) == []


async def test_the_check_finds_a_model_the_migrations_lack() -> None:
    extra = Table("notes", Base.metadata, Column("id", Integer, primary_key=True))
    try:
        differences = await schema.check_models()
    finally:
        Base.metadata.remove(extra)
    assert len(differences) == 1 and "notes" in differences[0]
    assert await schema.check_models() == []


async def test_check_mode_refuses_a_schema_that_is_behind(
    engine: AsyncEngine, database_url: URL
) -> None:
    with pytest.raises(SchemaNotReady, match=r"python -m services\.script\.library migrate"):
        await Library.open(database_url, migrate="check")
    assert await tables(engine) == set()  # Checking changed nothing.
    default = "" if database_url.get_backend_name() == "postgresql" else "check"
    with pytest.raises(SchemaNotReady, match="DOPPEL_DATABASE_MIGRATE=auto"):
        await Library.open(database_url, migrate=default)  # PostgreSQL checks by default.


async def test_auto_mode_migrates_and_unknown_revisions_are_refused(
    engine: AsyncEngine, database_url: URL
) -> None:
    default = "" if database_url.get_backend_name() == "sqlite" else "auto"
    library = await Library.open(database_url, migrate=default)  # SQLite migrates by default.
    await library.close()
    assert (await schema.status(engine)).up_to_date
    async with engine.begin() as connection:
        await connection.exec_driver_sql("UPDATE alembic_version SET version_num = 'f00dcafe'")
    for mode in ("auto", "check"):
        with pytest.raises(SchemaNotReady, match="f00dcafe"):
            await Library.open(database_url, migrate=mode)


async def test_replicas_migrating_at_once_take_turns(database_url: URL) -> None:
    engines = [create_engine(database_url) for _ in range(4)]
    try:
        await asyncio.gather(*(schema.upgrade(each) for each in engines))
        assert (await schema.status(engines[0])).up_to_date
    finally:
        for each in engines:
            await each.dispose()


def test_the_migrate_command_runs_as_concurrent_jobs(database_url: URL) -> None:
    """`python -m services.script.library migrate`, three at once as three Kubernetes Jobs
    would: all succeed, the password never printed."""
    url = database_url.render_as_string(hide_password=False)
    env = {**os.environ, "DOPPEL_DATABASE_URL": url}
    jobs = [
        subprocess.Popen(
            [sys.executable, "-m", "services.script.library", "migrate"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [job.communicate(timeout=120)[0] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0], outputs
    assert all("up to date" in output for output in outputs)
    if database_url.password:
        assert not any(str(database_url.password) in output for output in outputs)
    status = subprocess.run(
        [sys.executable, "-m", "services.script.library", "status"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert status.returncode == 0, status.stdout + status.stderr


def test_the_check_command_is_offline_and_clean() -> None:
    """What `make lint` runs: no database server, a temporary SQLite file."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("DOPPEL_")}
    done = subprocess.run(
        [sys.executable, "-m", "services.script.library", "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "models and migrations agree" in done.stdout
