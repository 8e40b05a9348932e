"""The library's users' shows on SQLite and PostgreSQL: found by id or by title (case,
punctuation and articles ignored), one show a title, a replace keeps its row."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2
from services.script.library import Conflict, InvalidArgument, Library
from services.script.library.planning import title_key


def show(show_id: str, title: str) -> episode_pb2.Show:
    return episode_pb2.Show(id=show_id, title=title, source="user")


def test_title_keys() -> None:
    assert title_key("The Quibbles of Quarry Lane!") == "quibbles of quarry lane"
    assert title_key("  a QUIBBLE-family   ") == "quibble family"
    assert title_key("?!") == ""


async def test_a_show_is_found_by_id_or_title(library: Library) -> None:
    await library.create_show(show("quibbles", "The Quibbles of Quarry Lane"))
    for query in ("quibbles", "quibbles of quarry lane", "THE QUIBBLES OF QUARRY LANE?"):
        found = await library.find_show(query)
        assert found is not None and found.show.id == "quibbles", query
    assert await library.find_show("Quibbles of Quarry") is None
    assert await library.find_show("  ") is None


async def test_one_show_a_title(library: Library) -> None:
    await library.create_show(show("quibbles", "The Quibbles"))
    with pytest.raises(Conflict, match="already has the title"):
        await library.create_show(show("quibbles-2", "quibbles!"))
    replaced = await library.create_show(show("quibbles", "The Quibbles!"), replace=True)
    assert replaced.show.title == "The Quibbles!"
    renamed = await library.create_show(show("quibbles", "Quibble Street"), replace=True)
    assert (await library.find_show("quibble street")) == renamed
    assert await library.find_show("the quibbles") is None
    await library.create_show(show("quibbles-2", "The Quibbles"))  # the title is free again
    with pytest.raises(InvalidArgument, match="title"):
        await library.create_show(show("blank", "?!"))
    assert [r.show.id for r in await library.list_shows()] == ["quibbles", "quibbles-2"]
