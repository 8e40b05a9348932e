"""A library write whose caller is cancelled runs to its end on a real SQLite file: the draft is
stored whole and SQLite's write lock is free for the next writer. Cut off mid-statement, aiosqlite
could orphan its connection with the lock held until garbage collection (a CI run: a batch
poller stopped mid-write, then "database is locked" for every other writer)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy.engine import URL

from services.script.library import InvalidArgument, Library, NotFound
from tests.integration.library_samples import draft_id, sample_episode


async def test_a_cancelled_caller_waits_for_its_write_which_is_stored_whole(
    tmp_path: Path,
) -> None:
    path = tmp_path / "library.db"
    url = URL.create("sqlite+aiosqlite", database=str(path))
    library = await Library.open(url, migrate="auto")
    other = await Library.open(url, migrate="")
    blocker = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")  # Holds the write lock: the save has to wait.
        episode = sample_episode(draft_id(1))
        save = asyncio.create_task(library.save_draft(episode, kind="generated"))
        await asyncio.sleep(0.2)
        save.cancel()
        await asyncio.sleep(0.2)
        # The caller was cancelled, but its write is still under way (waiting for the lock).
        assert not save.done()
        blocker.execute("ROLLBACK")
        with pytest.raises(asyncio.CancelledError):
            await save
        # Stored whole, and the lock is free: another writer gets it at once.
        assert [draft.id for draft in await other.history(episode.id)] == [episode.id]
        async with asyncio.timeout(5):
            await other.save_draft(sample_episode(draft_id(2)), kind="generated")
    finally:
        blocker.close()
        await library.close()
        await other.close()


async def test_a_failed_write_reaches_its_caller_unchanged(tmp_path: Path) -> None:
    url = URL.create("sqlite+aiosqlite", database=str(tmp_path / "library.db"))
    library = await Library.open(url, migrate="auto")
    try:
        episode = sample_episode(draft_id(1))
        with pytest.raises(InvalidArgument, match="kind must be one of"):
            await library.save_draft(episode, kind="not-a-kind")
        with pytest.raises(NotFound):  # Nothing of it was stored.
            await library.history(episode.id)
    finally:
        await library.close()
