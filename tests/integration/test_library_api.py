"""The library's RPCs through real gRPC servers (script, scene, cache on a real Redis) on a real
SQLite file and a real PostgreSQL server: ListEpisodes (pages, filters, archived), GetEpisode of
a draft or the latest, GetHistory (parents, notes, kinds), CompareDrafts, ArchiveEpisode, and
ImportDraft of Fountain, FDX and JSON, whose edits RegenerateScene keeps byte for byte; bad input
is refused naming the line or the limit, and stores nothing."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import json_format
from sqlalchemy.engine import URL

from doppelganger.v1 import episode_pb2, library_pb2, script_pb2, script_pb2_grpc
from services.cache.server import create_cache_server
from services.scene import fdx
from services.scene.screenplay import Screenplay
from services.scene.server import create_scene_server
from services.script.library import Library
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry

SHOW, SETTING = "I Love Lucy", "a Mars colony in 2157"
Kind = episode_pb2.DraftKind


@dataclass
class Studio:
    """Cache, scene and script services on one library, and a stub to call the script."""

    library: Library
    stub: script_pb2_grpc.ScriptServiceStub
    settings: Settings

    async def generate(self, seed: int, scenes: int = 4, show: str = SHOW) -> episode_pb2.Episode:
        request = script_pb2.GenerateEpisodeRequest(
            show=show, setting=SETTING, scene_count=scenes, seed=seed
        )
        events = [event async for event in self.stub.GenerateEpisode(request)]
        return events[-1].episode

    async def regenerate(self, draft_id: str, index: int, notes: str) -> episode_pb2.Episode:
        return await self.stub.RegenerateScene(
            script_pb2.RegenerateSceneRequest(episode_id=draft_id, scene_index=index, notes=notes)
        )

    async def list(self, **fields: object) -> script_pb2.ListEpisodesResponse:
        return await self.stub.ListEpisodes(script_pb2.ListEpisodesRequest(**fields))

    async def import_(self, content: bytes, **fields: str) -> episode_pb2.Episode:
        return await self.stub.ImportDraft(script_pb2.ImportDraftRequest(content=content, **fields))

    async def drafts_stored(self) -> int:
        """Every draft of every episode, archived ones too."""
        page = await self.library.list_episodes(100, include_archived=True)
        return sum(item.draft_count for item in page.items)


@contextlib.asynccontextmanager
async def _start(
    settings: Settings, redis_server: RedisServer, library: Library
) -> AsyncIterator[Studio]:
    base = settings.with_changes(redis_url=redis_server.url, refinement_rounds=1)
    cache = await create_cache_server(base, Telemetry("cache", base))
    scene = await create_scene_server(base, Telemetry("scene", base))
    config = base.with_changes(
        cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
    )
    script: ServiceServer = await create_script_server(config, Telemetry("script", config), library)
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{script.port}")
    try:
        yield Studio(library, script_pb2_grpc.ScriptServiceStub(channel), config)
    finally:
        await channel.close()
        for server in (script, scene, cache):
            await server.stop(0)


@pytest.fixture
async def studio(
    settings: Settings, redis_server: RedisServer, database_url: URL
) -> AsyncIterator[Studio]:
    library = await Library.open(database_url, migrate="auto")
    try:
        async with _start(settings, redis_server, library) as running:
            yield running
    finally:
        await library.close()


def _lines(episode: episode_pb2.Episode) -> list[str]:
    return [e.dialogue.text for s in episode.scenes for e in s.elements if e.HasField("dialogue")]


def _edit_line(fountain: str, episode: episode_pb2.Episode, scene_index: int, new: str) -> str:
    """The Fountain with the first line of dialogue of a scene replaced by `new`."""
    old = next(
        e.dialogue.text for e in episode.scenes[scene_index].elements if e.HasField("dialogue")
    )
    first_line = old.split("\n")[0]
    assert fountain.count(first_line) >= 1
    return fountain.replace(first_line, new, 1)


async def test_list_history_compare_and_archive(studio: Studio) -> None:
    first = await studio.generate(seed=501)
    second = await studio.generate(seed=502)
    revised = await studio.regenerate(first.id, 1, "Make Rico the one who panics")

    listed = await studio.list()
    assert [e.episode_id for e in listed.episodes] == [second.id, first.id]
    assert listed.next_page_token == ""
    summary = listed.episodes[1]
    assert (summary.latest_draft_id, summary.draft_count) == (revised.id, 2)
    assert summary.show_id == "i-love-lucy" and summary.show_title == SHOW
    assert summary.writer == "procedural"  # Of the latest draft, read without its script.

    # Pages of one: each episode once, in order, then no token.
    page = await studio.list(page_size=1)
    assert [e.episode_id for e in page.episodes] == [second.id]
    rest = await studio.list(page_size=1, page_token=page.next_page_token)
    assert [e.episode_id for e in rest.episodes] == [first.id] and rest.next_page_token == ""
    # Filters: the show by title or id, words of the title.
    assert len((await studio.list(show="i love lucy")).episodes) == 2
    assert len((await studio.list(show="i-love-lucy")).episodes) == 2
    assert (await studio.list(show="seinfeld")).episodes == []
    word = revised.outline.title.split()[-1].lower()
    by_text = await studio.list(text=word)
    assert first.id in [e.episode_id for e in by_text.episodes]
    assert (await studio.list(text="no such words anywhere")).episodes == []

    # GetEpisode: the draft named, or the newest of its episode.
    get = studio.stub.GetEpisode
    assert await get(script_pb2.GetEpisodeRequest(episode_id=first.id)) == first
    assert await get(script_pb2.GetEpisodeRequest(episode_id=first.id, latest=True)) == revised

    history = await studio.stub.GetHistory(script_pb2.GetHistoryRequest(episode_id=revised.id))
    assert history.episode_id == first.id
    assert [(d.draft_id, d.parent_draft_id, d.kind, d.notes) for d in history.drafts] == [
        (first.id, "", Kind.DRAFT_KIND_GENERATED, ""),
        (revised.id, first.id, Kind.DRAFT_KIND_REGENERATED, "Make Rico the one who panics"),
    ]
    assert all(d.writer == "procedural" and d.scene_count == 4 for d in history.drafts)
    assert history.drafts[1].validation_score == pytest.approx(revised.validation.overall)

    comparison = await studio.stub.CompareDrafts(
        script_pb2.CompareDraftsRequest(base_draft_id=first.id, draft_id=revised.id)
    )
    changes = [scene.change for scene in comparison.scenes]
    assert changes[1] == library_pb2.CHANGE_KIND_CHANGED
    assert [c for i, c in enumerate(changes) if i != 1] == [library_pb2.CHANGE_KIND_UNCHANGED] * 3
    assert comparison.changed_paragraphs > 0
    assert comparison.changed_paragraphs == sum(
        1 for p in comparison.scenes[1].paragraphs if p.change != library_pb2.CHANGE_KIND_REMOVED
    )

    archived = await studio.stub.ArchiveEpisode(
        script_pb2.ArchiveEpisodeRequest(episode_id=revised.id)
    )
    assert archived.archived and archived.episode_id == first.id
    assert archived.logline == revised.outline.logline and archived.writer == "procedural"
    assert [e.episode_id for e in (await studio.list()).episodes] == [second.id]
    hidden = await studio.list(include_archived=True)
    assert [(e.episode_id, e.archived) for e in hidden.episodes] == [
        (second.id, False),
        (first.id, True),
    ]
    # Listings carry the latest draft's logline, as GetEpisode does.
    assert [e.logline for e in hidden.episodes] == [second.outline.logline, revised.outline.logline]
    assert all(e.logline for e in hidden.episodes)
    # Archived drafts stay readable; restore lists the episode again.
    assert await get(script_pb2.GetEpisodeRequest(episode_id=revised.id)) == revised
    await studio.stub.ArchiveEpisode(
        script_pb2.ArchiveEpisodeRequest(episode_id=first.id, restore=True)
    )
    assert len((await studio.list()).episodes) == 2


@pytest.mark.parametrize(
    ("method", "message", "expected"),
    [
        ("ListEpisodes", script_pb2.ListEpisodesRequest(page_size=101), "page_size"),
        ("ListEpisodes", script_pb2.ListEpisodesRequest(page_token="garbage!"), "page_token"),
        ("ListEpisodes", script_pb2.ListEpisodesRequest(text="x" * 201), "text"),
        ("GetHistory", script_pb2.GetHistoryRequest(episode_id="nope"), "episode_id"),
        ("CompareDrafts", script_pb2.CompareDraftsRequest(draft_id="ep-1"), "base_draft_id"),
        ("ArchiveEpisode", script_pb2.ArchiveEpisodeRequest(), "episode_id"),
        ("GetEpisode", script_pb2.GetEpisodeRequest(episode_id="x", latest=True), "episode_id"),
    ],
)
async def test_bad_library_requests_name_the_field(
    studio: Studio, method: str, message: object, expected: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await getattr(studio.stub, method)(message)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert expected in (caught.value.details() or "")


async def test_unknown_drafts_are_not_found(studio: Studio) -> None:
    missing = "ep-" + "0" * 20
    for call in (
        studio.stub.GetHistory(script_pb2.GetHistoryRequest(episode_id=missing)),
        studio.stub.ArchiveEpisode(script_pb2.ArchiveEpisodeRequest(episode_id=missing)),
        studio.stub.GetEpisode(script_pb2.GetEpisodeRequest(episode_id=missing, latest=True)),
        studio.stub.CompareDrafts(
            script_pb2.CompareDraftsRequest(base_draft_id=missing, draft_id=missing)
        ),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await call
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_an_imported_fountain_edit_survives_regeneration_byte_for_byte(
    studio: Studio,
) -> None:
    original = await studio.generate(seed=611)
    edited_line = "I changed this line by hand — with an em dash, “quotes” and two  spaces."
    fountain = _edit_line(original.fountain, original, 0, edited_line)

    imported = await studio.import_(
        fountain.encode(), file_name="lucy.fountain", parent_draft_id=original.id
    )
    assert imported.kind == Kind.DRAFT_KIND_IMPORTED
    assert imported.parent_episode_id == original.id
    assert edited_line in _lines(imported)
    assert imported.cast == original.cast and imported.writer == original.writer
    assert imported.validation.overall > 0 and imported.fountain  # Validated and rendered.
    # Importing the same file again is the same draft, not a second one.
    again = await studio.import_(
        fountain.encode(), file_name="lucy.fountain", parent_draft_id=original.id
    )
    assert again.id == imported.id and await studio.drafts_stored() == 2

    rewritten = await studio.regenerate(imported.id, 2, "Give the tag to Echo")
    assert edited_line in _lines(rewritten)
    assert rewritten.scenes[0] == imported.scenes[0]
    history = await studio.stub.GetHistory(script_pb2.GetHistoryRequest(episode_id=original.id))
    assert [(d.kind, d.parent_draft_id, d.notes) for d in history.drafts] == [
        (Kind.DRAFT_KIND_GENERATED, "", ""),
        (Kind.DRAFT_KIND_IMPORTED, original.id, "imported from lucy.fountain"),
        (Kind.DRAFT_KIND_REGENERATED, imported.id, "Give the tag to Echo"),
    ]


async def test_fdx_and_json_imports(studio: Studio) -> None:
    original = await studio.generate(seed=612)
    edited = _edit_line(original.fountain, original, 1, "Edited in Final Draft.")
    document = fdx.write_fdx(Screenplay.from_fountain(edited))
    from_fdx = await studio.import_(
        document, file_name=f"{original.id}.fdx", notes="Tightened in Final Draft"
    )
    # The parent came from the file name; cues in capitals map onto the cast's spelling.
    assert (
        from_fdx.parent_episode_id == original.id and from_fdx.notes == "Tightened in Final Draft"
    )
    assert "Edited in Final Draft." in _lines(from_fdx)
    speakers = {
        e.dialogue.character for s in from_fdx.scenes for e in s.elements if e.HasField("dialogue")
    }
    assert speakers <= {c.name for c in original.cast}

    # An episode JSON the library does not hold (its server lost it): a new episode of its own.
    lost = episode_pb2.Episode()
    lost.CopyFrom(original)
    lost.id = "ep-" + "1" * 20
    lost.scenes[0].elements[0].action.text = "A hand-edited action line."
    text = json_format.MessageToJson(lost)
    from_json = await studio.import_(text.encode(), file_name="lost.json")
    assert from_json.parent_episode_id == "" and from_json.kind == Kind.DRAFT_KIND_IMPORTED
    assert from_json.scenes[0].elements[0] == lost.scenes[0].elements[0]
    listed = await studio.list()
    assert from_json.id in [e.episode_id for e in listed.episodes]
    # The JSON of a stored draft, unchanged, is that draft: nothing new is stored.
    stored = await studio.drafts_stored()
    same = await studio.import_(json_format.MessageToJson(original).encode(), format="json")
    assert same == original and await studio.drafts_stored() == stored


async def test_bad_imports_are_refused_and_store_nothing(studio: Studio) -> None:
    original = await studio.generate(seed=613)
    stranger = _edit_line(original.fountain, original, 0, "Who let me in?").replace(
        "\n"
        + original.scenes[0]
        .elements[
            next(i for i, e in enumerate(original.scenes[0].elements) if e.HasField("dialogue"))
        ]
        .dialogue.character.upper()
        + "\n",
        "\nMR. MOONEY\n",
        1,
    )
    stranger_line = stranger.split("\n").index("MR. MOONEY") + 1
    too_big = studio.settings.import_max_bytes + 1
    cases: list[tuple[bytes, dict[str, str], str]] = [
        (b"", {}, "content is empty"),
        (b"   \n\n", {}, "content is empty"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", {}, "binary"),
        (b"\xff\xfe not utf-8", {"format": "fountain"}, "not UTF-8"),
        (
            b"x" * too_big,
            {},
            f"at most {studio.settings.import_max_bytes} bytes (DOPPEL_IMPORT_MAX_BYTES)",
        ),
        (stranger.encode(), {"parent_draft_id": original.id}, f"line {stranger_line} "),
        (b"Just some words.\n\nNo heading here.\n", {"show": SHOW}, "no scene heading"),
        (b"LUCY\nHello before any scene.\n", {"show": SHOW}, "line 1 is dialogue"),
        (
            b"<?xml version='1.0'?>\n<FinalDraft>\n<Content>\n<Paragraph>",
            {"format": "fdx"},
            "line 4",
        ),
        (
            b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "aaaa">]>\n<FinalDraft/>',
            {"format": "fdx"},
            "DTD",
        ),
        (b"<html><body>no</body></html>", {"format": "fdx"}, "not <FinalDraft>"),
        (b'{"scenes": "nope"}', {}, "proto3 JSON"),
        (b"INT. KITCHEN - DAY\n\nLUCY\nHi.\n", {}, "show is required"),
        (b"INT. KITCHEN - DAY\n\nLUCY\nHi.\n", {"show": "No Such Show"}, "not in the catalog"),
        (b"INT. KITCHEN - DAY\n\nBOB\nHi.\n", {"show": SHOW}, "line 3 (scene 1): speaker 'BOB'"),
        (original.fountain.encode(), {"notes": "n" * 2001}, "notes must be at most 2000"),
        (original.fountain.encode(), {"parent_draft_id": "ep-x"}, "parent_draft_id"),
    ]
    before = await studio.drafts_stored()
    for content, fields, expected in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await studio.import_(content, **fields)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, (expected, caught.value)
        assert expected in (caught.value.details() or ""), (expected, caught.value.details())
    # Past the gRPC receive limit the message never reaches the handler.
    huge = b"x" * (studio.settings.script_max_receive_bytes + 1)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await studio.import_(huge)
    assert caught.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # A parent the library does not hold is NOT_FOUND.
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await studio.import_(original.fountain.encode(), parent_draft_id="ep-" + "2" * 20)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert await studio.drafts_stored() == before == 1
