"""Writers steer the episode, through the real script, cache (on a real Redis) and scene services:
a premise, outlines to choose from, an outline sent back with one beat edited (only that scene is
written again), a cast of their own, and bad input refused with the field named."""

from __future__ import annotations

import re
from dataclasses import dataclass

import grpc
import pytest

from doppelganger.v1 import cache_pb2, cache_pb2_grpc, episode_pb2, script_pb2, script_pb2_grpc
from services.script import catalog
from services.script.library import open_library
from services.script.premise import mentioned, premise_elements, scene_texts
from shared.config import Settings
from testkit import InProcessStack

PREMISE = (
    "Lucy wants to sing at the colony's anniversary gala, but Ricky has hired a famous tenor "
    "named Enzo Caruso, and Mrs. Mertz has lost the 'Golden Oxygen Mask' trophy."
)


@dataclass
class Studio:
    stub: script_pb2_grpc.ScriptServiceStub
    cache: cache_pb2_grpc.CacheServiceStub
    settings: Settings


@pytest.fixture
async def studio(stack: InProcessStack) -> Studio:
    """Async: the stubs' channels belong to the test's event loop (a sync fixture has none)."""
    return Studio(stack.script_stub, stack.cache_stub, stack.settings)


async def _generate(studio: Studio, **fields: object) -> episode_pb2.Episode:
    request = script_pb2.GenerateEpisodeRequest(**fields)
    events = [event async for event in studio.stub.GenerateEpisode(request)]
    assert events[-1].HasField("episode")
    return events[-1].episode


async def _scene_stats(studio: Studio) -> tuple[int, int]:
    stats = await studio.cache.Stats(cache_pb2.StatsRequest())
    scenes = next((ns for ns in stats.namespaces if ns.namespace == "scenes"), None)
    return (scenes.hits, scenes.sets) if scenes else (0, 0)


def _lines(episode: episode_pb2.Episode) -> list[episode_pb2.DialogueLine]:
    return [e.dialogue for s in episode.scenes for e in s.elements if e.HasField("dialogue")]


def _all_text(episode: episode_pb2.Episode) -> str:
    """Every word the new world says: cast data, outline, lines, actions, sluglines (the
    logline names the classic show it comes from, by its title: that is left out)."""
    parts: list[str] = []
    for character in episode.cast:
        parts += [character.name, character.role, *character.verbal_tics]
        parts += [*character.catchphrases, *character.aliases, *character.traits]
    parts += [f"{r.from_character} {r.to_character} {r.kind}" for r in episode.relationships]
    outline = episode.outline
    parts += [outline.title, outline.logline, outline.a_plot, outline.b_plot, outline.premise]
    for act in outline.acts:
        for beat in act.beats:
            parts += [beat.description, beat.running_gag, *beat.characters, *beat.entrances]
            parts += [setup.description for setup in beat.setups]
    for scene in episode.scenes:
        parts += [scene.slugline.location, scene.summary, *scene_texts(scene)]
        parts += [e.dialogue.parenthetical for e in scene.elements if e.HasField("dialogue")]
    return "\n".join(parts).replace(episode.show.title, "")


def _original_names(show: episode_pb2.Show) -> list[str]:
    return [form for c in show.characters for form in (c.name, *c.aliases)]


def _leaks(text: str, names: list[str]) -> list[str]:
    return [n for n in names if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text, re.IGNORECASE)]


async def test_a_premise_shapes_the_episode_and_no_original_name_reaches_it(
    studio: Studio,
) -> None:
    """A bundled show here: a show made up for the test needs CreateShow (another change)."""
    episode = await _generate(
        studio, show="I Love Lucy", setting="a Mars colony in 2157", seed=3, premise=PREMISE
    )
    show = catalog.find_show("i-love-lucy")
    assert show is not None
    cast = {character.name for character in episode.cast}
    assert {line.character for line in _lines(episode)} <= cast
    assert _leaks(_all_text(episode), _original_names(show)) == []
    assert episode.premise == PREMISE  # as the writer sent it; the outline's is in the new world
    assert "Lucy" not in episode.outline.premise and "Enzo Caruso" in episode.outline.premise
    world = f"{episode.setting.name} {episode.setting.description}"
    elements = premise_elements(episode.outline.premise, episode.cast, world)
    assert {e.text for e in elements} >= {"Enzo Caruso", "Golden Oxygen Mask"}
    script = [text for scene in episode.scenes for text in scene_texts(scene)]
    for element in elements:
        assert mentioned(element, [episode.outline.logline]), element
        assert mentioned(element, [episode.outline.a_plot]), element
        assert mentioned(element, script), element
    assert episode.validation.passed, [i.message for i in episode.validation.issues]
    plain = await _generate(studio, show="I Love Lucy", setting="a Mars colony in 2157", seed=3)
    assert plain.id != episode.id
    assert episode.validation.plot_coherence > 0


async def test_outlines_to_choose_from_have_distinct_a_plots(studio: Studio) -> None:
    request = script_pb2.ProposeOutlinesRequest(
        show="Cheers", setting="a Victorian London", premise="Sam hosts a séance.", count=3, seed=5
    )
    response = await studio.stub.ProposeOutlines(request)
    assert len(response.proposals) == 3
    assert len({p.outline.a_plot for p in response.proposals}) == 3
    assert len({p.outline.kernel for p in response.proposals}) == 3
    assert len({p.draft_id for p in response.proposals}) == 3
    for proposal in response.proposals:
        assert proposal.show == "cheers" and proposal.seed == 5
        assert proposal.cast and proposal.premise == "Sam hosts a séance."
        assert "séance" in proposal.outline.logline
    again = await studio.stub.ProposeOutlines(request)
    assert again == response  # deterministic, draft ids included
    library = await open_library(studio.settings)  # the one the script service stores in
    try:
        for proposal in response.proposals:
            stored = await library.get_draft(proposal.draft_id)
            assert stored.info.kind == "outline" and stored.info.position == 1
            assert stored.episode.kind == episode_pb2.DRAFT_KIND_OUTLINE
            assert stored.episode.outline == proposal.outline and not stored.episode.scenes
            assert list(stored.episode.cast) == list(proposal.cast)
    finally:
        await library.close()
    fetched = await studio.stub.GetEpisode(
        script_pb2.GetEpisodeRequest(episode_id=response.proposals[2].draft_id)
    )
    assert fetched.outline == response.proposals[2].outline
    first = response.proposals[0]
    episode = await _generate(
        studio, show="Cheers", setting="a Victorian London", seed=5, premise="Sam hosts a séance."
    )
    assert episode.outline == first.outline  # the first proposal is the episode's own outline


async def test_editing_one_beat_rewrites_only_its_scene(studio: Studio) -> None:
    response = await studio.stub.ProposeOutlines(
        script_pb2.ProposeOutlinesRequest(
            show="Frasier", setting="an underwater city", count=1, seed=8, scene_count=6
        )
    )
    proposal = response.proposals[0]
    fields = {"show": "Frasier", "setting": "an underwater city", "seed": 8}
    first = await _generate(studio, outline=proposal.outline, cast=proposal.cast, **fields)
    assert len(first.scenes) == 6 and first.validation.passed
    edited = episode_pb2.Outline()
    edited.CopyFrom(proposal.outline)
    beat = next(b for act in edited.acts for b in act.beats if b.scene_index == 3)
    lead = beat.characters[0]
    beat.description = f"{lead} confesses everything to the whole building, then regrets it."
    hits, sets = await _scene_stats(studio)
    second = await _generate(studio, outline=edited, cast=proposal.cast, **fields)
    hits_after, sets_after = await _scene_stats(studio)
    assert second.id != first.id
    assert (hits_after - hits, sets_after - sets) == (5, 1)  # five from the cache, one written
    for index in range(6):
        same = first.scenes[index].SerializeToString(deterministic=True) == (
            second.scenes[index].SerializeToString(deterministic=True)
        )
        assert same is (index != 3), index
    assert second.scenes[3].summary == beat.description
    assert lead in second.scenes[3].characters


async def test_a_cast_of_the_writers_own(studio: Studio) -> None:
    show = catalog.find_show("seinfeld")
    assert show is not None
    default = await _generate(studio, show="Seinfeld", setting="a medieval castle", seed=2)
    by_original = {c.original_name: c for c in default.cast}
    cast = [
        episode_pb2.Character(name="Sir Jeremy", original_name="Jerry", role="court jester"),
        episode_pb2.Character(name="Gorm", original_name="George"),
        episode_pb2.Character(name="Elspeth", original_name="Elaine"),
        episode_pb2.Character(name="Brother Anselm", archetype="eccentric", role="monk"),
    ]  # Kramer dropped, a monk added.
    episode = await _generate(
        studio, show="Seinfeld", setting="a medieval castle", seed=2, cast=cast, scene_count=4
    )
    names = [c.name for c in episode.cast]
    assert names == ["Sir Jeremy", "Gorm", "Elspeth", "Brother Anselm"]
    assert episode.cast[0].role == "court jester"
    assert episode.cast[1].role == by_original["George"].role  # left empty: the default's
    assert {line.character for line in _lines(episode)} <= set(names)
    for relationship in episode.relationships:
        assert {relationship.from_character, relationship.to_character} <= set(names)
    assert any(r.from_character == "Sir Jeremy" for r in episode.relationships)
    old_name = by_original["Jerry"].name
    assert not _leaks(_all_text(episode), [old_name, *_original_names(show)])


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"premise": "x" * 2001}, "premise"),
        ({"cast": [episode_pb2.Character(name="Solo")]}, "cast"),
        (
            {
                "cast": [episode_pb2.Character(name="Ann"), episode_pb2.Character(name="ann")],
            },
            "cast[1].name",
        ),
        (
            {
                "relationships": [
                    episode_pb2.Relationship(
                        from_character="Lux", to_character="Nobody", kind="rival"
                    )
                ]
            },
            "relationships[0].to_character",
        ),
    ],
)
async def test_bad_steering_is_refused_with_the_field_named(
    studio: Studio, fields: dict[str, object], named: str
) -> None:
    base = {"show": "I Love Lucy", "setting": "mars-colony-2157", "seed": 1}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _generate(studio, **base, **fields)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert named in (raised.value.details() or "")


async def test_an_outline_that_skips_a_scene_is_refused(studio: Studio) -> None:
    response = await studio.stub.ProposeOutlines(
        script_pb2.ProposeOutlinesRequest(
            show="Taxi", setting="ancient-rome", count=1, seed=4, scene_count=5
        )
    )
    outline = response.proposals[0].outline
    gap = next(b for act in outline.acts for b in act.beats if b.scene_index == 2)
    gap.scene_index = 3
    where = next(
        f"outline.acts[{a}].beats[{b}].scene_index"
        for a, act in enumerate(outline.acts)
        for b, beat in enumerate(act.beats)
        if beat is gap or beat == gap
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await _generate(studio, show="Taxi", setting="ancient-rome", seed=4, outline=outline)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert where in (raised.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as too_many:
        await studio.stub.ProposeOutlines(
            script_pb2.ProposeOutlinesRequest(show="Taxi", setting="ancient-rome", count=6)
        )
    assert too_many.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "count" in (too_many.value.details() or "")
