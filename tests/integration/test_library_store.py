"""The library's store API on a real SQLite file and a real PostgreSQL server (every test runs on
both: the `library` fixture is parametrised)."""

from __future__ import annotations

import asyncio
from datetime import UTC

import pytest
from sqlalchemy import func, select, text

from doppelganger.v1 import episode_pb2
from services.script.library import (
    Conflict,
    InvalidArgument,
    Library,
    LibraryError,
    NotFound,
)
from services.script.library.models import Draft, Episode
from tests.integration.library_samples import draft_id, sample_episode


async def count(library: Library, table: type[Draft] | type[Episode]) -> int:
    async with library.engine.connect() as connection:
        return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


async def test_a_first_draft_makes_an_episode_and_reads_back_whole(library: Library) -> None:
    episode = sample_episode(draft_id(1), input_tokens=1000, cost_usd=0.25)
    info = await library.save_draft(episode, kind="generated", notes="seed 7")
    assert (info.id, info.episode_id, info.position, info.parent_id) == (
        episode.id,
        episode.id,
        1,
        None,
    )
    assert info.usage.input_tokens == 1000 and info.usage.cache_read_tokens == 500
    assert info.usage.cost_usd == pytest.approx(0.25)
    assert info.created_at.tzinfo is not None

    stored = await library.get_draft(episode.id)
    assert stored.episode == episode
    assert stored.info.sha256 == info.sha256 and stored.info.size == info.size
    assert stored.info.created_at.tzinfo == UTC
    summary = await library.get_episode(episode.id)
    assert summary.title == "Lucy Does the Airlock"
    assert (summary.show_id, summary.show_title) == ("i-love-lucy", "I Love Lucy")
    assert summary.setting_name == "Mars colony, 2157"
    assert (summary.latest_draft_id, summary.draft_count, summary.archived) == (
        episode.id,
        1,
        False,
    )


async def test_saving_the_same_draft_again_changes_nothing(library: Library) -> None:
    episode = sample_episode(draft_id(2))
    first = await library.save_draft(episode, kind="generated")
    # Same content, parsed and re-serialized (map order may differ): still the same draft.
    again = await library.save_draft(
        episode_pb2.Episode.FromString(episode.SerializeToString()), kind="generated"
    )
    assert again == first
    assert await count(library, Draft) == 1
    assert (await library.get_episode(episode.id)).draft_count == 1


async def test_other_bytes_under_a_stored_id_are_a_conflict(library: Library) -> None:
    episode = sample_episode(draft_id(3))
    await library.save_draft(episode, kind="generated")
    changed = sample_episode(draft_id(3), title="Another Title")
    with pytest.raises(Conflict, match="never change"):
        await library.save_draft(changed, kind="generated")
    assert (await library.get_draft(episode.id)).episode == episode


async def test_regenerated_drafts_extend_the_lineage(library: Library) -> None:
    original = sample_episode(draft_id(4), input_tokens=100, cost_usd=0.01)
    first = await library.save_draft(original, kind="generated")
    second = sample_episode(draft_id(4, "a"), title="Tighter", parent_id=original.id)
    await library.save_draft(second, kind="regenerated", parent_id=original.id, notes="Tighter")
    # A branch: the original revised again with other notes.
    third = sample_episode(draft_id(4, "b"), title="Looser", parent_id=original.id)
    await library.save_draft(third, kind="revised", parent_id=original.id, notes="Looser")

    summary = await library.get_episode(third.id)
    assert summary.id == original.id
    assert (summary.draft_count, summary.latest_draft_id, summary.title) == (3, third.id, "Looser")
    assert summary.updated_at >= summary.created_at
    for any_id in (original.id, second.id, third.id):
        assert (await library.latest_draft(any_id)).episode == third
        history = await library.history(any_id)
        assert [d.id for d in history] == [original.id, second.id, third.id]
    history = await library.history(second.id)
    assert [(d.position, d.kind, d.parent_id, d.notes) for d in history] == [
        (1, "generated", None, ""),
        (2, "regenerated", original.id, "Tighter"),
        (3, "revised", original.id, "Looser"),
    ]
    assert history[0] == first
    assert history[0].usage.input_tokens == 100 and history[1].usage.input_tokens == 0
    assert [d.writer for d in history] == ["anthropic", "procedural", "procedural"]
    assert (await library.get_draft(original.id)).episode == original  # Drafts never change.


async def test_bad_drafts_are_refused_and_nothing_is_stored(library: Library) -> None:
    orphan = sample_episode(draft_id(5, "orphan"))
    with pytest.raises(NotFound, match="parent draft"):
        await library.save_draft(orphan, kind="regenerated", parent_id=draft_id(5, "missing"))
    with pytest.raises(InvalidArgument, match="parent_id"):
        await library.save_draft(orphan, kind="regenerated")
    with pytest.raises(InvalidArgument, match="kind"):
        await library.save_draft(orphan, kind="rewritten")
    with pytest.raises(InvalidArgument, match="id"):
        await library.save_draft(sample_episode(""), kind="generated")
    with pytest.raises(InvalidArgument, match="id"):
        await library.save_draft(sample_episode("x" * 65), kind="generated")
    with pytest.raises(NotFound, match="series"):
        await library.save_draft(orphan, kind="generated", series_id="se-missing")
    assert await count(library, Draft) == 0
    assert await count(library, Episode) == 0


async def test_unknown_ids_are_not_found(library: Library) -> None:
    missing = draft_id("nobody")
    for read in (library.get_draft, library.latest_draft, library.history, library.get_episode):
        with pytest.raises(NotFound, match=missing):
            await read(missing)
    with pytest.raises(NotFound):
        await library.archive(missing)


async def test_pages_go_newest_first_and_stay_stable_under_inserts(library: Library) -> None:
    ids = [draft_id("page", n) for n in range(25)]
    for n, episode_id in enumerate(ids):
        await library.save_draft(sample_episode(episode_id, title=f"Episode {n}"), kind="generated")
    newest_first = list(reversed(ids))

    first = await library.list_episodes(page_size=10)
    assert [e.id for e in first.items] == newest_first[:10]
    assert first.next_page_token
    # Episodes created while the reader pages must not shift what the later pages hold.
    for n in range(5):
        await library.save_draft(sample_episode(draft_id("late", n)), kind="generated")
    # A new draft of an episode already listed does not move it either.
    await library.save_draft(
        sample_episode(draft_id("page", 3, "rev"), parent_id=ids[3]),
        kind="regenerated",
        parent_id=ids[3],
    )
    seen = [e.id for e in first.items]
    token = first.next_page_token
    while token:
        page = await library.list_episodes(page_size=10, page_token=token)
        seen.extend(e.id for e in page.items)
        token = page.next_page_token
    assert seen == newest_first

    everything = await library.list_episodes(page_size=100)
    assert len(everything.items) == 30 and not everything.next_page_token
    assert (await library.list_episodes()).items == everything.items[:20]  # 0: the default.


async def test_listing_filters_by_show_series_text_and_archive(library: Library) -> None:
    series = await library.create_series(
        title="Season 1", show_id="seinfeld", setting=episode_pb2.Setting(name="Mars")
    )
    lucy = sample_episode(draft_id("f", 1), title="Lucy's 100% Plan", logline="Ethel_helps")
    ralph = sample_episode(draft_id("f", 2), title="Bang, Zoom", show="the-honeymooners")
    jerry = sample_episode(draft_id("f", 3), title="The Airlock", show="seinfeld")
    await library.save_draft(lucy, kind="generated")
    await library.save_draft(ralph, kind="imported")
    await library.save_draft(jerry, kind="generated", series_id=series.id, episode_number=1)

    async def ids(**filters: object) -> set[str]:
        page = await library.list_episodes(page_size=50, **filters)  # type: ignore[arg-type]
        return {e.id for e in page.items}

    assert await ids() == {lucy.id, ralph.id, jerry.id}
    assert await ids(show="the-honeymooners") == {ralph.id}
    assert await ids(series_id=series.id) == {jerry.id}
    assert (await library.get_episode(jerry.id)).episode_number == 1
    assert await ids(text="AIRLOCK") == {jerry.id}
    assert await ids(text="ethel_helps") == {lucy.id}  # Logline, case ignored.
    assert await ids(text="100%") == {lucy.id}
    assert await ids(text="0%") == {lucy.id}
    assert await ids(text="%") == {lucy.id}  # A literal percent sign, not a wildcard.
    assert await ids(text="_") == {lucy.id}

    archived = await library.archive(ralph.id)
    assert archived.archived
    assert await ids() == {lucy.id, jerry.id}
    assert await ids(include_archived=True) == {lucy.id, ralph.id, jerry.id}
    assert (await library.get_draft(ralph.id)).episode == ralph  # Archived, still readable.
    assert not (await library.archive(ralph.id, archived=False)).archived
    assert await ids() == {lucy.id, ralph.id, jerry.id}


async def test_bad_pages_are_invalid_arguments(library: Library) -> None:
    for n in range(3):
        await library.save_draft(sample_episode(draft_id("bad", n)), kind="generated")
    page = await library.list_episodes(page_size=1, show="i-love-lucy")
    with pytest.raises(InvalidArgument, match="other filters"):
        await library.list_episodes(page_size=1, page_token=page.next_page_token)
    for token in ("garbage", "eyJ2IjoxfQ", "!" * 10, "a" * 600):
        with pytest.raises(InvalidArgument, match="page_token"):
            await library.list_episodes(page_token=token)
    for size in (-1, 101):
        with pytest.raises(InvalidArgument, match="page_size"):
            await library.list_episodes(page_size=size)
    with pytest.raises(InvalidArgument, match="text"):
        await library.list_episodes(text="x" * 201)


async def test_concurrent_saves_of_one_draft_store_it_once(library: Library) -> None:
    episode = sample_episode(draft_id(6))
    results = await asyncio.gather(
        *(library.save_draft(episode, kind="generated") for _ in range(8))
    )
    assert len({r.sha256 for r in results}) == 1
    assert await count(library, Draft) == 1

    # Eight different scripts under one new id: exactly one is stored, the rest conflict.
    rivals = [sample_episode(draft_id(7), title=f"Take {n}") for n in range(8)]
    outcomes = await asyncio.gather(
        *(library.save_draft(rival, kind="generated") for rival in rivals),
        return_exceptions=True,
    )
    stored = [o for o in outcomes if not isinstance(o, BaseException)]
    assert len(stored) == 1
    assert all(isinstance(o, Conflict) for o in outcomes if isinstance(o, BaseException))
    winner = (await library.get_draft(draft_id(7))).episode
    assert winner in rivals


async def test_concurrent_revisions_get_distinct_positions(library: Library) -> None:
    original = sample_episode(draft_id(8))
    await library.save_draft(original, kind="generated")
    revisions = [
        sample_episode(draft_id(8, n), title=f"Rev {n}", parent_id=original.id) for n in range(10)
    ]
    await asyncio.gather(
        *(
            library.save_draft(r, kind="regenerated", parent_id=original.id, notes=f"note {n}")
            for n, r in enumerate(revisions)
        )
    )
    history = await library.history(original.id)
    assert [d.position for d in history] == list(range(1, 12))
    assert {d.id for d in history} == {original.id, *(r.id for r in revisions)}
    summary = await library.get_episode(original.id)
    assert summary.draft_count == 11
    assert summary.latest_draft_id == history[-1].id


async def test_a_damaged_draft_is_refused_not_served(library: Library) -> None:
    episode = sample_episode(draft_id(9))
    await library.save_draft(episode, kind="generated")
    async with library.engine.begin() as connection:
        await connection.execute(
            text("UPDATE drafts SET proto = :damaged WHERE id = :id"),
            {"damaged": episode.SerializeToString()[:-3] + b"xyz", "id": episode.id},
        )
    with pytest.raises(LibraryError, match="damaged"):
        await library.get_draft(episode.id)


async def test_shows(library: Library) -> None:
    show = episode_pb2.Show(id="frasier", title="Frasier", premise="A radio psychiatrist.")
    record = await library.create_show(show)
    assert (record.show, record.source) == (show, "user")
    with pytest.raises(Conflict, match="frasier"):
        await library.create_show(show)
    show.premise = "A psychiatrist and his father."
    replaced = await library.create_show(show, replace=True, source="analysed")
    assert replaced.show.premise == show.premise and replaced.source == "analysed"
    assert replaced.created_at == record.created_at and replaced.updated_at >= record.updated_at
    assert (await library.get_show("frasier")).show == show
    await library.create_show(episode_pb2.Show(id="cheers", title="Cheers"))
    assert [r.show.id for r in await library.list_shows()] == ["cheers", "frasier"]
    with pytest.raises(NotFound):
        await library.get_show("taxi")
    for bad in (episode_pb2.Show(id="Bad Slug", title="x"), episode_pb2.Show(id="ok")):
        with pytest.raises(InvalidArgument, match="show"):
            await library.create_show(bad)


async def test_series_updates_need_the_version_they_read(library: Library) -> None:
    setting = episode_pb2.Setting(id="mars", name="Mars colony")
    series = await library.create_series(
        title="Season 1", show_id="i-love-lucy", setting=setting, state=b'{"arc": 1}'
    )
    assert (series.version, series.state, series.setting) == (1, b'{"arc": 1}', setting)
    updated = await library.update_series(series.id, expected_version=1, state=b'{"arc": 2}')
    assert (updated.version, updated.state) == (2, b'{"arc": 2}')
    with pytest.raises(Conflict, match="version 2"):
        await library.update_series(series.id, expected_version=1, state=b'{"arc": 3}')
    assert (await library.get_series(series.id)).state == b'{"arc": 2}'

    # Two writers read version 2; exactly one of them may write.
    outcomes = await asyncio.gather(
        library.update_series(series.id, expected_version=2, title="A"),
        library.update_series(series.id, expected_version=2, title="B"),
        return_exceptions=True,
    )
    assert sum(isinstance(o, Conflict) for o in outcomes) == 1
    assert (await library.get_series(series.id)).version == 3

    other = await library.create_series(title="Other", show_id="seinfeld", setting=setting)
    assert [s.id for s in await library.list_series()] == [series.id, other.id]
    assert [s.id for s in await library.list_series("seinfeld")] == [other.id]
    with pytest.raises(Conflict):
        await library.create_series(
            title="Again", show_id="seinfeld", setting=setting, series_id=other.id
        )
    with pytest.raises(NotFound):
        await library.update_series("se-missing", expected_version=1, state=b"")


async def test_batch_jobs(library: Library) -> None:
    series = await library.create_series(
        title="S", show_id="seinfeld", setting=episode_pb2.Setting(name="Mars")
    )
    first = await library.save_batch(
        provider="anthropic", request={"episodes": 3, "notes": ["ünïcode"]}, series_id=series.id
    )
    second = await library.save_batch(provider="openai", request={"episodes": 1})
    assert first.status == "queued" and first.request == {"episodes": 3, "notes": ["ünïcode"]}
    submitted = await library.update_batch(
        first.id, status="submitted", provider_batch_id="msgbatch_01"
    )
    assert (submitted.status, submitted.provider_batch_id) == ("submitted", "msgbatch_01")
    assert [b.id for b in await library.pending_batches()] == [first.id, second.id]
    assert [b.id for b in await library.pending_batches("openai")] == [second.id]
    done = await library.update_batch(second.id, status="completed", result={"ok": 1})
    assert done.result == {"ok": 1}
    assert [b.id for b in await library.pending_batches()] == [first.id]
    with pytest.raises(InvalidArgument, match="status"):
        await library.update_batch(first.id, status="lost")
    with pytest.raises(NotFound):
        await library.update_batch("bj-missing", status="failed")
    with pytest.raises(NotFound, match="series"):
        await library.save_batch(provider="anthropic", request={}, series_id="se-missing")


async def test_close_is_clean_and_repeatable(library: Library) -> None:
    await library.save_draft(sample_episode(draft_id(10)), kind="generated")
    await library.close()
    await library.close()
