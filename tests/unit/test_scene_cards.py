"""Scene cards: the procedural outline writes them consistently, the procedural scene plays them,
and a scene depends on its view of the outline only (draft, comedy pass and refinement alike)."""

from __future__ import annotations

import pytest
from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script import cards, catalog, procedural
from services.script.comedy import comedy_pass
from services.script.refinement import RefinementPolicy, refine
from services.script.writing import StoryContext
from testkit import draft_episode
from tests.unit.episode_drafts import WRITER, copy

EXT = episode_pb2.PLACEMENT_EXT
PLACEMENT_WORDS = {episode_pb2.PLACEMENT_INT: "INT", EXT: "EXT"}


def _beats(outline: episode_pb2.Outline) -> list[episode_pb2.Beat]:
    return sorted(cards.beats(outline), key=lambda b: b.scene_index)


def _actions(scene: episode_pb2.Scene) -> list[str]:
    return [e.action.text for e in scene.elements if e.HasField("action")]


@pytest.mark.parametrize("show", catalog.load_shows(), ids=lambda show: show.id)
async def test_the_procedural_outline_writes_consistent_cards(show: episode_pb2.Show) -> None:
    for setting in ("mars-colony-2157", "wild-west-town", "a haunted lighthouse"):
        _, episode = await draft_episode(show.id, setting, 3)
        names = {c.name for c in episode.cast}
        beats = _beats(episode.outline)
        planted: dict[str, int] = {}
        for previous, beat in zip([None, *beats], beats, strict=False):
            assert beat.location and beat.time_of_day and beat.characters, beat
            assert set(beat.characters) | set(beat.entrances) <= names
            assert set(beat.exits) <= set(beat.entrances) | set(beat.characters)
            for payoff in beat.payoffs:
                assert planted[payoff] < beat.scene_index  # only setups of earlier beats
            planted.update({setup.id: beat.scene_index for setup in beat.setups})
            if previous is not None and previous.location == beat.location:
                assert beat.time_of_day == previous.time_of_day
            profile = catalog.setting_profile(episode.setting)
            if beat.location in profile.exteriors:
                assert beat.placement == EXT
        assert planted and all(
            any(s in b.payoffs for b in beats) for s in planted
        )  # every setup is paid off
        assert episode.outline.running_gag


async def test_the_scene_plays_its_card() -> None:
    _, episode = await draft_episode("mash", "mars-colony-2157", 6)
    descriptions = cards.setup_descriptions(episode.outline)
    exits_seen = exterior_seen = 0
    for beat, scene in zip(_beats(episode.outline), episode.scenes, strict=True):
        assert scene.slugline.location == beat.location
        assert scene.slugline.placement == beat.placement
        assert scene.slugline.time_of_day == beat.time_of_day
        allowed = {*beat.characters, *beat.entrances}
        assert set(scene.characters) <= allowed, (scene.index, scene.characters, allowed)
        action = " ".join(_actions(scene))
        for setup in beat.setups:
            assert setup.description.rstrip(".") in action
        for payoff in beat.payoffs:
            assert descriptions[payoff].rstrip(".") in action
        for name in beat.exits:
            if name not in scene.characters:
                continue
            exits_seen += 1
            elements = list(scene.elements)
            gone = max(
                i
                for i, e in enumerate(elements)
                if e.HasField("action") and e.action.text.startswith(name)
            )
            after = [e.dialogue.character for e in elements[gone:] if e.HasField("dialogue")]
            assert after == []  # whoever leaves leaves last: nobody speaks after that
        if scene.slugline.placement == EXT:
            exterior_seen += 1
    assert exits_seen + exterior_seen > 0


async def test_a_card_with_one_person_present_brings_the_other_in_first() -> None:
    context, episode = await draft_episode("friends", "underwater-city", 2, scene_count=3)
    outline = copy(episode).outline
    beat = _beats(outline)[1]
    first, second = beat.characters[0], beat.characters[1]
    del beat.characters[1:]
    beat.entrances.insert(0, second)
    scene = await WRITER.write_scene(context, cards.scene_view(outline, 1), 1, [])
    lines = [e.dialogue.character for e in scene.elements if e.HasField("dialogue")]
    assert lines[0] == first
    entered = [
        i for i, e in enumerate(scene.elements) if e.HasField("action") and second in e.action.text
    ]
    spoke = next(
        i
        for i, e in enumerate(scene.elements)
        if e.HasField("dialogue") and e.dialogue.character == second
    )
    assert entered and entered[0] < spoke


def test_a_view_keeps_the_own_beat_the_feeding_cards_and_the_structure() -> None:
    show = catalog.find_show("i-love-lucy")
    assert show is not None
    setting = catalog.resolve_setting("mars-colony-2157")
    cast, relationships = procedural.transform_cast(show, setting)
    outline = procedural.write_outline(show, setting, cast, relationships, 9, 4)
    beats = _beats(outline)
    payer = next(b for b in beats if b.payoffs)
    sources = cards.setup_sources(outline)
    feeding = cards.feeding_indices(outline, payer.scene_index)
    assert payer.scene_index - 1 in feeding
    assert {sources[p] for p in payer.payoffs} <= set(feeding)
    view = cards.scene_view(outline, payer.scene_index)
    for original, seen in zip(beats, _beats(view), strict=True):
        assert (seen.scene_index, seen.plot, seen.target_seconds) == (
            original.scene_index,
            original.plot,
            original.target_seconds,
        )
        if seen.scene_index == payer.scene_index:
            assert seen == original
        elif seen.scene_index in feeding:
            assert not seen.description and seen.location == original.location
            assert list(seen.setups) == list(original.setups)
        else:
            assert seen == episode_pb2.Beat(
                scene_index=original.scene_index,
                plot=original.plot,
                target_seconds=original.target_seconds,
            )
    assert view.logline == outline.logline and view.kernel == outline.kernel
    assert cards.structure(view) == cards.structure(outline)
    summaries = cards.feeding_summaries(outline, payer.scene_index)
    assert len(summaries) == len(feeding) and all(s.startswith("scene ") for s in summaries)


async def _finished(
    context: StoryContext, outline: episode_pb2.Outline, template: episode_pb2.Episode
) -> episode_pb2.Episode:
    """Draft from each scene's view, comedy pass, refinement: the pipeline's pure stages."""
    episode = copy(template)
    episode.outline.CopyFrom(outline)
    del episode.scenes[:]
    for index in range(len(template.scenes)):
        view = cards.scene_view(outline, index)
        episode.scenes.append(await WRITER.write_scene(context, view, index, []))
    await comedy_pass(WRITER, context, episode)
    async for _ in refine(WRITER, context, episode, RefinementPolicy(), trace.NoOpTracer()):
        pass
    return episode


@pytest.mark.parametrize(
    ("show_id", "setting", "seed", "edited"),
    [("seinfeld", "victorian-london", 1, 2), ("the-office-us", "generation-starship", 5, 4)],
)
async def test_editing_a_beat_changes_its_scene_and_no_other(
    show_id: str, setting: str, seed: int, edited: int
) -> None:
    context, episode = await draft_episode(show_id, setting, seed, scene_count=7)
    before = await _finished(context, episode.outline, episode)
    outline = copy(episode).outline
    beat = _beats(outline)[edited]
    beat.description = f"{beat.characters[0]} quits, loudly, and is back within the hour."
    after = await _finished(context, outline, episode)
    for old, new in zip(before.scenes, after.scenes, strict=True):
        same = old.SerializeToString(deterministic=True) == new.SerializeToString(
            deterministic=True
        )
        assert same is (old.index != edited), old.index


async def test_an_exterior_scene_opens_outdoors() -> None:
    openings = ("Out in the open", "Outside,", "Open air:")
    exterior = interior = 0
    for seed in range(4):
        _, episode = await draft_episode("cheers", "mars-colony-2157", seed)
        for scene in episode.scenes:
            first = _actions(scene)[0]
            if scene.slugline.placement == EXT:
                exterior += 1
                assert first.startswith(openings), first
            else:
                interior += 1
                assert not first.startswith(openings), first
    assert exterior and interior
