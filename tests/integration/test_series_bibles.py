"""The series store (library/bibles.py) on SQLite and a real PostgreSQL: a series and its
versioned bible, updated one transaction per episode with optimistic concurrency."""

from __future__ import annotations

import asyncio

import pytest

from doppelganger.v1 import episode_pb2, series_pb2
from services.script import catalog
from services.script.library import Conflict, InvalidArgument, Library, NotFound


def _series(title: str = "Lucy on Mars", show: str = "I Love Lucy") -> series_pb2.Series:
    found = catalog.find_show(show)
    assert found is not None
    return series_pb2.Series(
        title=title,
        show=found,
        setting=catalog.resolve_setting("a Mars colony in 2157"),
        cast=[episode_pb2.Character(name="Lux", original_name="Lucy")],
        seed=7,
    )


def _bible(*facts: str, episode: int = 1) -> series_pb2.Bible:
    bible = series_pb2.Bible(kernels_used=[f"kernel-{episode}"])
    for position, text in enumerate(facts, 1):
        bible.facts.add(id=f"e{episode}-f{position}", episode_number=episode, text=text)
    return bible


async def test_a_series_is_stored_with_an_empty_bible_and_read_back(library: Library) -> None:
    created = await library.create_series_record(_series())
    assert created.id.startswith("se-") and created.version == 1
    assert created.bible == series_pb2.Bible()
    again = await library.get_series_record(created.id)
    assert again.show.title == "I Love Lucy" and again.seed == 7
    assert [c.name for c in again.cast] == ["Lux"]
    assert again.setting.name == created.setting.name and again.created_at.seconds > 0


async def test_each_bible_update_is_a_new_version_and_old_ones_stay(library: Library) -> None:
    created = await library.create_series_record(_series())
    first = await library.update_bible(
        created.id, _bible("Lux owes forty ration cards."), expected_version=1, episode_number=1
    )
    assert first.version == 2 and [f.id for f in first.bible.facts] == ["e1-f1"]
    both = _bible("Lux owes forty ration cards.")
    both.facts.add(id="e2-f1", episode_number=2, text="Rico hid the rover key.")
    second = await library.update_bible(created.id, both, expected_version=2, episode_number=2)
    assert second.version == 3 and len(second.bible.facts) == 2
    assert (await library.get_series_record(created.id)).bible == both
    assert await library.get_bible(created.id, 1) == series_pb2.Bible()
    assert [f.id for f in (await library.get_bible(created.id, 2)).facts] == ["e1-f1"]
    with pytest.raises(NotFound):
        await library.get_bible(created.id, 9)


async def test_a_stale_update_is_refused_and_stores_nothing(library: Library) -> None:
    created = await library.create_series_record(_series())
    await library.update_bible(created.id, _bible("one"), expected_version=1, episode_number=1)
    with pytest.raises(Conflict, match="version 2, not 1"):
        await library.update_bible(created.id, _bible("two"), expected_version=1)
    current = await library.get_series_record(created.id)
    assert current.version == 2 and [f.text for f in current.bible.facts] == ["one"]
    with pytest.raises(NotFound):
        await library.update_bible("se-missing", _bible("x"), expected_version=1)


async def test_two_concurrent_updates_of_one_version_one_wins(library: Library) -> None:
    created = await library.create_series_record(_series())
    results = await asyncio.gather(
        library.update_bible(created.id, _bible("a"), expected_version=1, episode_number=1),
        library.update_bible(created.id, _bible("b"), expected_version=1, episode_number=1),
        return_exceptions=True,
    )
    assert sum(isinstance(r, Conflict) for r in results) == 1
    assert (await library.get_series_record(created.id)).version == 2


async def test_series_are_listed_newest_first_by_page_and_by_show(library: Library) -> None:
    made = [await library.create_series_record(_series(f"S{i}")) for i in range(3)]
    await library.create_series_record(_series("Other", show="The Office"))
    page = await library.list_series_records(2, show_id=made[0].show.id)
    assert [s.title for s in page.items] == ["S2", "S1"] and page.next_page_token
    rest = await library.list_series_records(2, page.next_page_token, show_id=made[0].show.id)
    assert [s.title for s in rest.items] == ["S0"] and not rest.next_page_token
    assert len((await library.list_series_records()).items) == 4
    with pytest.raises(InvalidArgument, match="other filters"):
        await library.list_series_records(2, page.next_page_token)


async def test_a_taken_id_or_a_series_without_title_is_refused(library: Library) -> None:
    created = await library.create_series_record(_series())
    again = _series()
    again.id = created.id
    with pytest.raises(Conflict):
        await library.create_series_record(again)
    with pytest.raises(InvalidArgument, match="title"):
        await library.create_series_record(_series(title=" "))


async def test_drafts_stored_in_a_series_are_listed_by_series(library: Library) -> None:
    created = await library.create_series_record(_series())
    for number in (1, 2):
        episode = episode_pb2.Episode(id=f"ep-{number:020x}", outline={"title": f"E{number}"})
        await library.save_draft(
            episode, kind="generated", series_id=created.id, episode_number=number
        )
    await library.save_draft(episode_pb2.Episode(id="ep-" + "f" * 20), kind="generated")
    listed = await library.list_episodes(series_id=created.id)
    assert sorted(e.episode_number or 0 for e in listed.items) == [1, 2]
