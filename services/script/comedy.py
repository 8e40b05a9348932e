"""The comedy pass: every joke scored on the named dimensions, the weakest payoffs rewritten.

Scoring is `procedural.score_joke` (dimensions and weights: `procedural.JOKE_WEIGHTS`), with the
dialogue heard just before the line as context and, as callback terms, the props the scene's card
says were planted earlier (the setups it pays off, the running gag: `cards.callback_terms`). Setups
are scored but never rewritten: a setup's job is to be plain.

Every scene is judged on its own, so one scene's rewrite never depends on another scene's jokes
(editing one beat of an outline changes one scene, and the comedy pass keeps it that way): the
weakest REWRITE_SHARE of each scene's payoffs (punchlines and callbacks; at least one) go to the
writer's `rewrite_line`, all at once (at most `parallel` calls in flight). A rewrite replaces the
line only when it scores at least MIN_GAIN higher, does not lower the total of the scene's jokes
(the new words change what later jokes are compared with), and is not a line heard elsewhere in
the episode (the one look outside the scene: a rewrite equal to another scene's line is refused).
The joke then keeps the draft in `original_text`, is marked `rewritten`, and the scene's timing
(joke offsets, duration) and the episode's runtime are recomputed.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import Counter
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2
from services.script import procedural
from services.script.cards import callback_terms
from services.script.validation import element_seconds
from services.script.writing import StoryContext, Writer
from shared.config import DEFAULTS

log = logging.getLogger(__name__)

REWRITE_SHARE = 1 / 3
MIN_GAIN = 0.01
MAX_LINE_CHARS = 400
_PAYOFFS = frozenset(
    {
        episode_pb2.JOKE_ROLE_PUNCHLINE,
        episode_pb2.JOKE_ROLE_CALLBACK,
        episode_pb2.JOKE_ROLE_UNSPECIFIED,
    }
)


@dataclass(frozen=True)
class _Target:
    scene: episode_pb2.Scene
    joke: episode_pb2.Joke


def joke_line(scene: episode_pb2.Scene, joke: episode_pb2.Joke) -> episode_pb2.DialogueLine | None:
    """The dialogue line that carries a joke, or None when the joke points nowhere sensible."""
    if not 0 <= joke.element_index < len(scene.elements):
        return None
    element = scene.elements[joke.element_index]
    return element.dialogue if element.WhichOneof("element") == "dialogue" else None


def planted_terms(episode: episode_pb2.Episode) -> dict[int, tuple[str, ...]]:
    """For each scene, the props a callback in it can land on: what the setups it pays off
    planted, and the running gag (from the outline's cards, never another scene's text)."""
    props = [p for p in [*episode.setting.props, *procedural.GENERIC_PROPS] if p]
    return {
        scene.index: callback_terms(episode.outline, scene.index, props) for scene in episode.scenes
    }


def score_scene(
    scene: episode_pb2.Scene,
    cast: Mapping[str, episode_pb2.Character],
    setting: episode_pb2.Setting,
    callback_terms: Sequence[str],
) -> None:
    """Scores every joke of the scene in place (score and dimensions)."""
    for joke in scene.jokes:
        line = joke_line(scene, joke)
        if line is None:
            continue
        score, dimensions = procedural.score_joke(
            line.text,
            joke.pattern,
            speaker=cast.get(line.character),
            setting=setting,
            context=procedural.joke_context(scene, joke.element_index),
            callback_terms=callback_terms,
        )
        joke.score = score
        joke.dimensions.clear()
        joke.dimensions.update(dimensions)


def retime(scene: episode_pb2.Scene) -> None:
    """Recomputes joke offsets and the scene's duration from its elements."""
    clock = 0.0
    offsets: dict[int, float] = {}
    for position, element in enumerate(scene.elements):
        clock += element_seconds(element)
        offsets[position] = round(clock, 1)
    for joke in scene.jokes:
        joke.offset_seconds = offsets.get(joke.element_index, joke.offset_seconds)
    scene.duration_seconds = round(clock, 1)


def mean_score(jokes: Iterable[episode_pb2.Joke]) -> float:
    scores = [joke.score for joke in jokes]
    return round(sum(scores) / len(scores), 4) if scores else 0.0


def _weakest(scenes: Sequence[episode_pb2.Scene]) -> list[_Target]:
    """The weakest REWRITE_SHARE of each scene's payoffs (at least one a scene that has any)."""
    targets: list[_Target] = []
    for scene in sorted(scenes, key=lambda s: s.index):
        payoffs = [
            _Target(scene, joke)
            for joke in scene.jokes
            if joke.role in _PAYOFFS and joke_line(scene, joke) is not None
        ]
        payoffs.sort(key=lambda t: (t.joke.score, t.joke.element_index))
        targets += payoffs[: math.ceil(REWRITE_SHARE * len(payoffs))]
    return targets


async def _propose(
    writer: Writer, context: StoryContext, targets: Sequence[_Target], parallel: int
) -> list[str | None]:
    """The writer's rewrite of every target (None where the writer failed)."""
    limit = asyncio.Semaphore(max(1, parallel))

    async def one(target: _Target) -> str | None:
        async with limit:
            try:
                return await writer.rewrite_line(context, target.scene, target.joke)
            except Exception as exc:  # A failed rewrite keeps the draft, never fails the episode.
                log.warning("rewrite of %s failed: %s", target.joke.id, type(exc).__name__)
                return None

    return list(await asyncio.gather(*(one(target) for target in targets)))


class _Judge:
    """Applies rewrites that are better, keeping every dialogue line of the episode unique."""

    def __init__(self, episode: episode_pb2.Episode, terms: Mapping[int, Sequence[str]]) -> None:
        self._cast = {character.name: character for character in episode.cast}
        self._setting = episode.setting
        self._terms = terms
        self._heard = Counter(
            e.dialogue.text
            for scene in episode.scenes
            for e in scene.elements
            if e.WhichOneof("element") == "dialogue"
        )

    def score(self, scene: episode_pb2.Scene) -> None:
        score_scene(scene, self._cast, self._setting, self._terms.get(scene.index, ()))

    def apply(self, target: _Target, proposal: str | None) -> bool:
        scene, joke = target.scene, target.joke
        line = joke_line(scene, joke)
        text = " ".join((proposal or "").split())
        if line is None or not text or len(text) > MAX_LINE_CHARS or self._heard[text]:
            return False
        draft, draft_score = line.text, joke.score
        draft_total = sum(j.score for j in scene.jokes)
        line.text = text
        self.score(scene)
        if joke.score < draft_score + MIN_GAIN or sum(j.score for j in scene.jokes) < draft_total:
            line.text = draft
            self.score(scene)
            return False
        joke.original_text = joke.original_text or draft
        joke.rewritten = True
        self._heard[draft] -= 1
        self._heard[text] += 1
        return True


async def comedy_pass(
    writer: Writer,
    context: StoryContext,
    episode: episode_pb2.Episode,
    scene_indices: Collection[int] | None = None,
    parallel: int = DEFAULTS.max_parallel_scenes,
) -> episode_pb2.ComedyReport:
    """Scores and improves the jokes of the episode (or of the given scenes) in place."""
    scenes = [s for s in episode.scenes if scene_indices is None or s.index in scene_indices]
    judge = _Judge(episode, planted_terms(episode))
    for scene in scenes:
        judge.score(scene)
    before = mean_score(joke for scene in scenes for joke in scene.jokes)
    targets = _weakest(scenes)
    proposals = await _propose(writer, context, targets, parallel)
    rewritten = sum(judge.apply(t, p) for t, p in zip(targets, proposals, strict=True))
    for scene in scenes:
        retime(scene)
    episode.runtime_seconds = round(sum(s.duration_seconds for s in episode.scenes), 1)
    return episode_pb2.ComedyReport(
        jokes_scored=sum(len(scene.jokes) for scene in scenes),
        rewrites_tried=len(targets),
        rewritten=rewritten,
        mean_before=before,
        mean_after=mean_score(joke for scene in scenes for joke in scene.jokes),
    )
