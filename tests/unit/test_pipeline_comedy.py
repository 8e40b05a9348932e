"""The comedy pass: every joke scored, the weakest payoffs rewritten, the better line kept."""

from __future__ import annotations

import math
from collections.abc import Sequence

import pytest

from doppelganger.v1 import episode_pb2
from services.script import comedy
from services.script.comedy import comedy_pass, joke_line
from services.script.procedural import ProceduralWriter
from services.script.validation import element_seconds
from services.script.writing import StoryContext
from testkit import draft_episode
from tests.unit.episode_drafts import WRITER, copy, dialogue

SETUP = episode_pb2.JOKE_ROLE_SETUP


def _texts(episode: episode_pb2.Episode) -> list[str]:
    return [line.text for line in dialogue(episode)]


async def test_the_pass_raises_the_mean_score_and_really_replaces_the_lines() -> None:
    context, episode = await draft_episode("i-love-lucy", "mars-colony-2157", 7)
    draft = copy(episode)
    report = await comedy_pass(WRITER, context, episode)
    assert report.mean_after >= report.mean_before + 0.02
    assert report.jokes_scored == sum(len(scene.jokes) for scene in episode.scenes)
    assert report.mean_after == comedy.mean_score(j for s in episode.scenes for j in s.jokes)
    rewritten = [(s, j) for s in episode.scenes for j in s.jokes if j.rewritten]
    assert len(rewritten) == report.rewritten >= 3
    for scene, joke in rewritten:
        line = joke_line(scene, joke)
        assert line is not None
        draft_line = draft.scenes[scene.index].elements[joke.element_index].dialogue
        assert joke.original_text == draft_line.text != line.text
        assert joke.role != SETUP
    kept = [(s, j) for s in episode.scenes for j in s.jokes if not j.rewritten]
    for scene, joke in kept:
        assert not joke.original_text
        draft_line = draft.scenes[scene.index].elements[joke.element_index].dialogue
        assert scene.elements[joke.element_index].dialogue.text == draft_line.text
    texts = _texts(episode)
    assert len(set(texts)) == len(texts)


async def test_timing_follows_the_new_lines() -> None:
    context, episode = await draft_episode("seinfeld", "victorian-london", 4, scene_count=4)
    await comedy_pass(WRITER, context, episode)
    for scene in episode.scenes:
        clock, offsets = 0.0, {}
        for position, element in enumerate(scene.elements):
            clock += element_seconds(element)
            offsets[position] = round(clock, 1)
        assert scene.duration_seconds == round(clock, 1)
        assert all(joke.offset_seconds == offsets[joke.element_index] for joke in scene.jokes)
    total = round(sum(scene.duration_seconds for scene in episode.scenes), 1)
    assert episode.runtime_seconds == total


async def test_only_the_weakest_third_of_each_scenes_payoffs_is_tried() -> None:
    context, episode = await draft_episode("cheers", "enchanted-forest", 2, scene_count=5)
    tried: list[str] = []

    class Recording(ProceduralWriter):
        async def rewrite_line(
            self, context: StoryContext, scene: episode_pb2.Scene, joke: episode_pb2.Joke
        ) -> str:
            tried.append(joke.id)
            return await super().rewrite_line(context, scene, joke)

    scored = copy(episode)
    await comedy_pass(_NoRewrites(), context, scored)
    expected: list[str] = []
    for scene in scored.scenes:  # Per scene: a scene's rewrites never depend on another's.
        payoffs = sorted((j.score, j.element_index, j.id) for j in scene.jokes if j.role != SETUP)
        expected += [joke_id for _, _, joke_id in payoffs[: math.ceil(len(payoffs) / 3)]]
    report = await comedy_pass(Recording(), context, episode)
    assert sorted(tried) == sorted(expected)
    assert report.rewrites_tried == len(expected)


class _NoRewrites(ProceduralWriter):
    """Scores only: every rewrite comes back as the same line."""

    name, model, prompt_version = "fixed", "", "1"

    async def rewrite_line(
        self, context: StoryContext, scene: episode_pb2.Scene, joke: episode_pb2.Joke
    ) -> str:
        line = joke_line(scene, joke)
        return line.text if line else ""


class _Fixed:
    """Offers the same replacement for every joke (or raises)."""

    def __init__(self, replies: Sequence[str | Exception]) -> None:
        self.name, self.model, self.prompt_version = "fixed", "", "1"
        self._replies = list(replies)

    async def rewrite_line(
        self, context: StoryContext, scene: episode_pb2.Scene, joke: episode_pb2.Joke
    ) -> str:
        reply = self._replies.pop(0) if len(self._replies) > 1 else self._replies[0]
        if isinstance(reply, Exception):
            raise reply
        return reply


@pytest.mark.parametrize(
    "reply",
    ["", "   ", "Um.", "x" * 500, RuntimeError("the model is down")],
    ids=["empty", "blank", "worse", "too-long", "writer-error"],
)
async def test_a_rewrite_that_is_not_better_leaves_the_draft(reply: str | Exception) -> None:
    context, episode = await draft_episode("taxi", "underwater-city", 3, scene_count=3)
    before = _texts(episode)
    report = await comedy_pass(_Fixed([reply]), context, episode)  # type: ignore[arg-type]
    assert report.rewritten == 0 and report.rewrites_tried > 0
    assert _texts(episode) == before
    assert report.mean_after == report.mean_before
    assert not any(j.rewritten or j.original_text for s in episode.scenes for j in s.jokes)


async def test_a_rewrite_never_repeats_a_line_of_the_episode() -> None:
    context, episode = await draft_episode("frasier", "ancient-rome", 5, scene_count=3)
    existing = max(_texts(episode), key=lambda text: (len(text.split()) <= 16, len(text)))
    report = await comedy_pass(_Fixed([existing]), context, episode)  # type: ignore[arg-type]
    assert report.rewritten == 0
    assert _texts(episode).count(existing) == 1


async def test_the_pass_is_deterministic_and_can_be_limited_to_scenes() -> None:
    context, episode = await draft_episode("mash", "medieval-castle", 9, scene_count=4)
    twice = copy(episode)
    await comedy_pass(WRITER, context, episode)
    await comedy_pass(WRITER, context, twice)
    assert episode.SerializeToString(deterministic=True) == twice.SerializeToString(
        deterministic=True
    )
    _, partial = await draft_episode("mash", "medieval-castle", 9, scene_count=4)
    untouched = copy(partial)
    report = await comedy_pass(WRITER, context, partial, scene_indices={2})
    assert report.jokes_scored == len(partial.scenes[2].jokes)
    for index in (0, 1, 3):
        assert partial.scenes[index] == untouched.scenes[index]
    assert partial.scenes[2] != untouched.scenes[2]
