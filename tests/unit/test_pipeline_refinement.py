"""Refinement: drafts that fail validation are repaired by the writer, round by round."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from doppelganger.v1 import episode_pb2
from services.script.procedural import ProceduralWriter
from services.script.refinement import RefinementPolicy, refine, scene_notes
from services.script.validation import validate_episode
from services.script.writing import StoryContext
from testkit import draft_episode
from tests.unit.episode_drafts import WRITER, copy, dialogue

NO_TRACE = trace.NoOpTracer()
DEFAULT_POLICY = RefinementPolicy()
ERROR = episode_pb2.SEVERITY_ERROR


async def _rounds(
    writer: ProceduralWriter,
    context: StoryContext,
    episode: episode_pb2.Episode,
    policy: RefinementPolicy = DEFAULT_POLICY,
    tracer: trace.Tracer = NO_TRACE,
) -> list[episode_pb2.RefinementRound]:
    return [record async for record in refine(writer, context, episode, policy, tracer)]


def _speak(scene: episode_pb2.Scene, name: str, text: str) -> None:
    """A line by `name` inserted before the closing transition."""
    element = episode_pb2.ScriptElement(
        dialogue=episode_pb2.DialogueLine(character=name, text=text)
    )
    scene.elements.insert(len(scene.elements) - 1, element)


async def test_a_stranger_speaking_is_written_out_in_one_round() -> None:
    context, episode = await draft_episode("i-love-lucy", "mars-colony-2157", 3, scene_count=4)
    _speak(episode.scenes[1], "Mysterious Stranger", "I have come about the potato crate.")
    draft = copy(episode)
    assert not validate_episode(episode).passed
    rounds = await _rounds(WRITER, context, episode)
    assert [(r.round, list(r.scene_indices), r.accepted, r.passed) for r in rounds] == [
        (1, [1], True, True)
    ]
    assert rounds[0].score_after > rounds[0].score_before
    assert list(episode.refinement_rounds) == rounds
    assert episode.validation.passed
    assert episode.validation == validate_episode(episode)
    cast = {character.name for character in episode.cast}
    assert {line.character for line in dialogue(episode)} <= cast
    for index in (0, 2, 3):  # Only the failing scene was touched.
        assert episode.scenes[index] == draft.scenes[index]
    assert episode.scenes[1].index == 1 and episode.scenes[1].number == 2
    texts = [line.text for line in dialogue(episode)]
    assert len(set(texts)) == len(texts)


async def test_an_empty_scene_is_rewritten_from_its_beat() -> None:
    context, episode = await draft_episode("cheers", "victorian-london", 8, scene_count=5)
    scene = episode.scenes[3]
    del scene.jokes[:]
    del scene.elements[:]
    scene.duration_seconds = 0
    failing = validate_episode(episode)
    assert not failing.passed
    assert 3 in scene_notes(failing)
    rounds = await _rounds(WRITER, context, episode)
    assert rounds[-1].accepted and rounds[-1].passed
    assert episode.validation.passed
    assert len(episode.scenes[3].elements) > 10 and episode.scenes[3].jokes
    assert episode.scenes[3].summary


async def test_a_passing_draft_needs_no_round() -> None:
    context, episode = await draft_episode("taxi", "ancient-rome", 2, scene_count=3)
    before = copy(episode)
    assert await _rounds(WRITER, context, episode) == []
    assert episode.validation.passed
    episode.ClearField("validation")
    assert episode == before


class _Stubborn(ProceduralWriter):
    """Sends every scene back unchanged."""

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        return scene


async def test_a_round_that_does_not_improve_is_recorded_and_ends_refinement() -> None:
    context, episode = await draft_episode("friends", "enchanted-forest", 5, scene_count=3)
    _speak(episode.scenes[0], "Interloper", "Nobody invited me, and yet here I am.")
    rounds = await _rounds(_Stubborn(), context, episode)
    assert len(rounds) == 1
    assert not rounds[0].accepted and not rounds[0].passed
    assert rounds[0].score_after == rounds[0].score_before
    assert not episode.validation.passed
    assert list(episode.refinement_rounds) == rounds


class _OneFixAtATime(ProceduralWriter):
    """Removes one stranger's lines per revision: a writer that needs several rounds."""

    def __init__(self, cast: Sequence[str]) -> None:
        self._cast = set(cast)

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        revised = episode_pb2.Scene()
        revised.CopyFrom(scene)
        strangers = [
            e.dialogue.character
            for e in revised.elements
            if e.HasField("dialogue") and e.dialogue.character not in self._cast
        ]
        keep = [e for e in revised.elements if e.dialogue.character != strangers[0]]
        del revised.elements[:]
        revised.elements.extend(keep)
        return revised


async def test_rounds_go_on_while_they_improve_up_to_the_limit() -> None:
    context, episode = await draft_episode("the-golden-girls", "underwater-city", 4, 3)
    for scene in episode.scenes:  # Jokes point at elements: strangers go after them.
        _speak(scene, "Stranger One", "I shouldn't be here.")
        _speak(scene, "Stranger Two", "Neither should I.")
    names = [character.name for character in episode.cast]
    capped = copy(episode)
    rounds = await _rounds(_OneFixAtATime(names), context, episode)
    assert [(r.round, r.accepted, r.passed) for r in rounds] == [(1, True, False), (2, True, True)]
    assert rounds[0].scene_indices == [0, 1, 2]
    assert episode.validation.passed
    one = await _rounds(_OneFixAtATime(names), context, capped, RefinementPolicy(rounds=1))
    assert [(r.round, r.accepted, r.passed) for r in one] == [(1, True, False)]
    assert not capped.validation.passed
    assert await _rounds(WRITER, context, copy(capped), RefinementPolicy(rounds=0)) == []


async def test_every_round_has_its_own_span() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    context, episode = await draft_episode("the-golden-girls", "underwater-city", 4, 3)
    for scene in episode.scenes:
        _speak(scene, "Stranger One", "I shouldn't be here.")
        _speak(scene, "Stranger Two", "Neither should I.")
    names = [character.name for character in episode.cast]
    tracer = provider.get_tracer("test")
    await _rounds(_OneFixAtATime(names), context, episode, tracer=tracer)
    spans = {span.name: span for span in exporter.get_finished_spans()}
    assert set(spans) == {"refinement round 1", "refinement round 2"}
    attributes: dict[str, Any] = dict(spans["refinement round 2"].attributes or {})
    assert attributes["doppel.refinement.accepted"] is True
    assert (
        attributes["doppel.validation.score_after"] >= attributes["doppel.validation.score_before"]
    )
    assert attributes["doppel.refinement.scenes"] == 3


class _Failing(ProceduralWriter):
    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        raise RuntimeError("the provider is down")


async def test_a_failing_revision_leaves_the_draft_and_ends_refinement() -> None:
    context, episode = await draft_episode("seinfeld", "ancient-rome", 6, scene_count=3)
    _speak(episode.scenes[2], "Interloper", "Nobody invited me.")
    before = copy(episode)
    rounds = await _rounds(_Failing(), context, episode)
    assert [(r.round, r.accepted) for r in rounds] == [(1, False)]
    assert list(episode.scenes) == list(before.scenes)
    assert not episode.validation.passed
