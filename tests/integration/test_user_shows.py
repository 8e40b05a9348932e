"""Shows of the user's own, through the real script service (cache on a real Redis, scene) with
its library on a real SQLite file and a real PostgreSQL server: a show made up for the test,
imported from proto3 JSON, is listed beside the catalog, found by id and title, and written in a
new setting with a premise (only its transformed cast speaks, no original name appears, the
premise's named elements are in the script); bad shows are refused with the field named and
nothing stored."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from google.protobuf import json_format

from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from services.cache.server import create_cache_server
from services.scene.fountain import render_episode
from services.scene.server import create_scene_server
from services.script.library import Library
from services.script.premise import mentioned, premise_elements, scene_texts
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from tests.integration.show_samples import SHOW_JSON

SETTING = "a haunted lighthouse off the coast of Maine"
PREMISE = (
    "Bertha enters the 'Golden Foghorn' chowder contest against a rival cook named Dorian "
    "Blackwood, and Otto has hidden the prize money in the lamp room."
)


@dataclass
class Studio:
    stub: script_pb2_grpc.ScriptServiceStub
    library: Library


@pytest.fixture
async def studio(
    settings: Settings, redis_server: RedisServer, library: Library
) -> AsyncIterator[Studio]:
    """The three services, the script service storing in `library` (SQLite, then PostgreSQL)."""
    base = settings.with_changes(redis_url=redis_server.url)
    cache = await create_cache_server(base, Telemetry("cache", base))
    scene = await create_scene_server(base, Telemetry("scene", base))
    config = base.with_changes(
        cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
    )
    script = await create_script_server(config, Telemetry("script", config), library)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{script.port}") as channel:
        yield Studio(script_pb2_grpc.ScriptServiceStub(channel), library)
    for server in (script, scene, cache):
        await server.stop(0)


def made_up_show() -> episode_pb2.Show:
    return json_format.Parse(SHOW_JSON, episode_pb2.Show())


def original_names(show: episode_pb2.Show) -> set[str]:
    """Every form of every name, and each word of them but titles: first names, surnames."""
    titles = {"mr.", "mrs.", "miss"}
    forms = {form for c in show.characters for form in (c.name, *c.aliases)}
    return forms | {w for form in forms for w in form.split() if w.lower() not in titles}


def leaks(text: str, names: set[str]) -> list[str]:
    return sorted(n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text, re.I))


def world_text(episode: episode_pb2.Episode) -> str:
    """Every word the new world says: cast data, outline, lines, actions, sluglines (the title
    of the show it comes from is left out)."""
    parts: list[str] = []
    for character in episode.cast:
        parts += [character.name, character.role, *character.verbal_tics, *character.traits]
        parts += [*character.catchphrases, *character.aliases]
    parts += [f"{r.from_character} {r.to_character} {r.kind}" for r in episode.relationships]
    outline = episode.outline
    parts += [outline.title, outline.logline, outline.a_plot, outline.b_plot, outline.premise]
    for act in outline.acts:
        for beat in act.beats:
            parts += [beat.description, beat.running_gag, *beat.characters, *beat.entrances]
    for scene in episode.scenes:
        parts += [scene.slugline.location, scene.summary, *scene_texts(scene)]
        parts += [e.dialogue.parenthetical for e in scene.elements if e.HasField("dialogue")]
    return "\n".join(parts).replace(episode.show.title, "")


async def generate(
    stub: script_pb2_grpc.ScriptServiceStub, **fields: object
) -> episode_pb2.Episode:
    request = script_pb2.GenerateEpisodeRequest(**fields)
    events = [event async for event in stub.GenerateEpisode(request)]
    assert events[-1].HasField("episode")
    return events[-1].episode


async def test_a_made_up_show_is_written_in_a_new_world(studio: Studio) -> None:
    show = made_up_show()
    created = await studio.stub.CreateShow(script_pb2.CreateShowRequest(show=show))
    assert created.id == "the-quibbles-of-quarry-lane" and created.source == "user"
    listed = (await studio.stub.ListShows(script_pb2.ListShowsRequest())).shows
    assert listed[-1] == created and {s.source for s in listed[:-1]} == {"catalog"}
    for query in (created.id, "the quibbles of quarry lane", "Quibbles of Quarry Lane!"):
        assert await studio.stub.GetShow(script_pb2.GetShowRequest(show=query)) == created
    assert (await studio.library.get_show(created.id)).show == created

    episode = await generate(
        studio.stub, show="The Quibbles of Quarry Lane", setting=SETTING, seed=4, premise=PREMISE
    )
    assert episode.show == created
    cast = {c.name for c in episode.cast}
    assert {c.original_name for c in episode.cast} == {"Bertha", "Otto", "Winifred", "Angus"}
    speakers = {
        e.dialogue.character for s in episode.scenes for e in s.elements if e.HasField("dialogue")
    }
    assert speakers and speakers <= cast
    assert leaks(world_text(episode), original_names(show)) == []
    world = f"{episode.setting.name} {episode.setting.description}"
    elements = premise_elements(episode.outline.premise, episode.cast, world)
    assert {e.text for e in elements} >= {"Golden Foghorn", "Dorian Blackwood"}
    script = [text for scene in episode.scenes for text in scene_texts(scene)]
    for element in elements:
        assert mentioned(element, script), element
    stored = await studio.library.get_draft(episode.id)
    assert stored.episode.show.id == created.id
    validated = await studio.stub.ValidateEpisode(
        script_pb2.ValidateEpisodeRequest(
            content=render_episode(episode).encode(), format="fountain", show=created.title
        )
    )
    assert validated.episode.show == created

    proposals = await studio.stub.ProposeOutlines(
        script_pb2.ProposeOutlinesRequest(show=created.id, setting=SETTING, count=2, seed=4)
    )
    assert [p.show for p in proposals.proposals] == [created.id] * 2


async def test_a_show_is_stored_once_and_replaced_only_when_asked(studio: Studio) -> None:
    show = made_up_show()
    await studio.stub.CreateShow(script_pb2.CreateShowRequest(show=show))
    with pytest.raises(grpc.aio.AioRpcError) as again:
        await studio.stub.CreateShow(script_pb2.CreateShowRequest(show=show))
    assert again.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert "replace" in (again.value.details() or "")
    namesake = made_up_show()
    namesake.id = "quibbles-two"
    with pytest.raises(grpc.aio.AioRpcError) as same_title:
        await studio.stub.CreateShow(script_pb2.CreateShowRequest(show=namesake))
    assert same_title.value.code() is grpc.StatusCode.ALREADY_EXISTS
    show.era = "1970-1975"
    replaced = await studio.stub.CreateShow(script_pb2.CreateShowRequest(show=show, replace=True))
    assert replaced.era == "1970-1975"
    got = await studio.stub.GetShow(script_pb2.GetShowRequest(show="The Quibbles of Quarry Lane"))
    assert got == replaced
    assert [r.show.id for r in await studio.library.list_shows()] == [replaced.id]


@pytest.mark.parametrize(
    ("change", "named", "code"),
    [
        ("show.characters[2].archetype = 'grump'", "show.characters[2].archetype", "INVALID"),
        ("show.relationships[1].to_character = 'Dorian'", "show.relationships[1].to_character",
         "INVALID"),
        ("del show.characters[1:]", "show.characters", "INVALID"),
        ("show.characters[3].name = 'otto'", "show.characters[3].name", "INVALID"),
        ("show.humor_patterns.append('pie-fight')", "show.humor_patterns[4]", "INVALID"),
        ("show.id = 'frasier'", "show.id", "INVALID"),
    ],
)  # fmt: skip
async def test_a_bad_show_is_refused_with_the_field_named_and_nothing_stored(
    studio: Studio, change: str, named: str, code: str
) -> None:
    show = made_up_show()
    exec(change, {"show": show})
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await studio.stub.CreateShow(script_pb2.CreateShowRequest(show=show))
    assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert named in (refused.value.details() or "")
    assert await studio.library.list_shows() == []


async def test_unknown_shows_and_bad_scripts(studio: Studio) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as missing:
        await studio.stub.GetShow(script_pb2.GetShowRequest(show="The Quibbles"))
    assert missing.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await generate(studio.stub, show="the-quibbles-of-quarry-lane", setting=SETTING)
    assert unknown.value.code() is grpc.StatusCode.NOT_FOUND
    bundled = await studio.stub.GetShow(script_pb2.GetShowRequest(show="Cheers"))
    assert bundled.id == "cheers" and bundled.source == "catalog"
    for scripts, named in (
        ([], "scripts"),
        ([script_pb2.SourceScript(content=b"")], "scripts[0].content"),
        ([script_pb2.SourceScript(content=b"<?xml version='1.0'?><FinalDraft/>")], "scripts[0]"),
        ([script_pb2.SourceScript(content=b"no speech here", format="text")], "scripts[0]"),
        ([script_pb2.SourceScript(content=b"x", format="pdf")], "scripts[0].format"),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await studio.stub.AnalyzeShow(script_pb2.AnalyzeShowRequest(scripts=scripts))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT, named
        assert named in (refused.value.details() or ""), refused.value.details()


TRANSCRIPT = b"""[Scene: Quibble Bakery]
Bertha: Now look, Otto, I have a plan!
Otto: Who's paying for the flour, honey?
Bertha: Now look, we bake one perfect cake.
Otto: Who's paying for the flour, honey?

[Scene: Pruitt Parlour]
Winifred: Frankly, Mr. Quibble, this is vulgar.
Otto: Thank you, Mrs. Pruitt.
Bertha: Now look, Otto, I have a plan!
Winifred: How very Quibble of you.
(Otto slips on the flour and falls.)
Bertha: Now look, it is a feature.

[Scene: Quarry Lane, later]
Winifred: How very Quibble of you.
Otto: Good night, Mrs. Pruitt.
"""


async def test_an_analysed_transcript_is_reviewed_then_saved(studio: Studio) -> None:
    response = await studio.stub.AnalyzeShow(
        script_pb2.AnalyzeShowRequest(
            title="The Quibbles",
            scripts=[script_pb2.SourceScript(file_name="pilot.txt", content=TRANSCRIPT)],
        )
    )
    show, analysis = response.show, response.analysis
    assert [c.name for c in show.characters] == ["Bertha", "Otto", "Winifred"]
    assert [c.lines for c in analysis.characters] == [4, 4, 3]
    assert list(show.locations) == ["QUIBBLE BAKERY", "PRUITT PARLOUR", "QUARRY LANE"]
    assert show.characters[0].catchphrases[0] == "Otto, I have a plan!"
    assert "Now look," in show.characters[0].verbal_tics
    assert "How very Quibble of you." in show.characters[2].catchphrases
    assert "slapstick" in show.humor_patterns
    assert await studio.library.list_shows() == []  # nothing stored until the writer saves it
    show.characters[2].archetype = "snob"  # the writer's review
    saved = await studio.stub.CreateShow(script_pb2.CreateShowRequest(show=show))
    assert saved.source == "analysed" and saved.id == "the-quibbles"
    assert (await studio.library.get_show("the-quibbles")).source == "analysed"
    bundled = await studio.stub.AnalyzeShow(
        script_pb2.AnalyzeShowRequest(
            title="Cheers", scripts=[script_pb2.SourceScript(content=TRANSCRIPT, format="text")]
        )
    )
    assert bundled.show.title == "Cheers (analysed)" and bundled.show.id == "cheers-analysed"
