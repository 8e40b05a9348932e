"""Acceptance of the procedural writers' room: every show in the catalog x 20 seeds x 3 settings.

Each episode is what a request without scene_count gets (8-12 scenes for a 22-minute episode),
taken through the pipeline's pure stages: draft, comedy pass, validation and refinement. Every
episode must pass the validator at its default threshold (the draft too), every speaker must be in
the transformed cast, the runtime estimate must be within 15 % of the target, no dialogue line may
be heard twice, the comedy pass must raise the mean joke score, and the outline must have the
show's structure with A and B plots that touch at the climax. No craft check may fire on the
final script: no one names themself in the third person, no name of the classic show's cast
reaches the new world, no heading contradicts its action. One test per show (60 episodes),
its episodes written and checked in a process per core.

No original name reaches the new world: no first name, surname, nickname or title-and-surname form
of the classic cast (every alias the catalog lists, whole words, any case) in the cast data or in
any line, in these episodes and in one episode of every bundled show in every bundled setting,
pitched with a premise that names the classic cast by those forms.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import re
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor

import pytest
from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.checks import run_checks
from services.script.comedy import comedy_pass
from services.script.refinement import RefinementPolicy, refine
from services.script.validation import DEFAULT_THRESHOLD, target_runtime, validate_episode
from services.script.writing import StoryContext
from testkit import draft_episode
from tests.unit.episode_drafts import WRITER, dialogue

pytestmark = pytest.mark.slow  # Every show end to end: minutes; `make test-fast` skips it.

SETTINGS = ("mars-colony-2157", "enchanted-forest", "a haunted lighthouse off the coast of Maine")
SEEDS = range(20)
RUNTIME_TOLERANCE = 0.15
MIN_MEAN_GAIN = 0.02
CRAFT_CHECKS = frozenset({"self_naming", "original_name", "heading_action"})
A, B, RUNNER = episode_pb2.PLOT_LINE_A, episode_pb2.PLOT_LINE_B, episode_pb2.PLOT_LINE_RUNNER


@pytest.fixture(scope="module")
def workers() -> Iterator[ProcessPoolExecutor]:
    """A process per core: the episodes are independent and pure CPU, so the sweep takes a
    fraction of its time on a machine with more than one core and asserts the same. Spawned
    (not forked): the test process has gRPC threads from other tests."""
    count = max(1, min(len(os.sched_getaffinity(0)), 4))
    with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("spawn")) as pool:
        yield pool


async def _finish(context: StoryContext, episode: episode_pb2.Episode) -> float:
    """Comedy pass and refinement, as the pipeline runs them; returns the mean score gain."""
    report = await comedy_pass(WRITER, context, episode)
    policy = RefinementPolicy(threshold=DEFAULT_THRESHOLD)
    async for _ in refine(WRITER, context, episode, policy, trace.NoOpTracer()):
        pass
    assert report.mean_after > report.mean_before
    return report.mean_after - report.mean_before


def _check_outline(show: episode_pb2.Show, episode: episode_pb2.Episode) -> None:
    outline = episode.outline
    names = [act.name for act in outline.acts]
    assert (names[0] == "Cold Open") is show.structure.cold_open
    assert (names[-1] == "Tag") is show.structure.tag
    assert len([n for n in names if n.startswith("Act ")]) == show.structure.acts
    assert all(act.beats for act in outline.acts)
    beats = [beat for act in outline.acts for beat in act.beats]
    assert [beat.scene_index for beat in beats] == list(range(len(episode.scenes)))
    assert outline.a_plot and outline.b_plot and {A, B} <= {beat.plot for beat in beats}
    climax = [beat for beat in beats if beat.plot != RUNNER][-1]
    lead, b1, b2 = (episode.cast[i].name for i in (0, 2, 3))
    assert climax.plot == A and lead in climax.description
    assert b1 in climax.description and b2 in climax.description


def _original_names(show: episode_pb2.Show) -> list[str]:
    """Every first name and alias of the classic cast."""
    return [form for character in show.characters for form in (character.name, *character.aliases)]


def _world_text(episode: episode_pb2.Episode) -> str:
    """The cast data and every line: what must hold no original name."""
    parts: list[str] = []
    for c in episode.cast:
        parts += [c.name, c.role, c.archetype, *c.traits, *c.verbal_tics, *c.catchphrases]
        parts += c.aliases
    parts += [f"{r.from_character} {r.to_character} {r.kind}" for r in episode.relationships]
    for scene in episode.scenes:
        parts += [scene.slugline.location, scene.summary]
        for element in scene.elements:
            kind = element.WhichOneof("element")
            if kind == "dialogue":
                line = element.dialogue
                parts += [line.character, line.parenthetical, line.text]
            elif kind == "action":
                parts.append(element.action.text)
    return "\n".join(parts)


def _assert_no_original_names(
    show: episode_pb2.Show, episode: episode_pb2.Episode, label: str
) -> None:
    text = _world_text(episode)
    leaks = [
        name
        for name in _original_names(show)
        if re.search(rf"(?<!\w){re.escape(name)}(?!\w)", text, re.IGNORECASE)
    ]
    assert not leaks, (label, leaks)


def _check_episode(episode: episode_pb2.Episode, label: str) -> None:
    assert episode.validation.passed, (label, [i.message for i in episode.validation.issues])
    assert episode.validation.threshold == DEFAULT_THRESHOLD
    cast = {character.name for character in episode.cast}
    lines = dialogue(episode)
    assert {line.character for line in lines} <= cast, label
    repeated = [text for text, n in Counter(line.text for line in lines).items() if n > 1]
    assert not repeated, (label, repeated)
    target = target_runtime(episode)
    assert abs(episode.runtime_seconds / target - 1) <= RUNTIME_TOLERANCE, (label, target)
    craft = {issue.check for issue in episode.validation.issues} & CRAFT_CHECKS
    assert not craft, (label, [i.message for i in episode.validation.issues if i.check in craft])
    assert run_checks(episode) == [], label


def _default_episode(show_id: str, setting: str, seed: int) -> float:
    """One default episode drafted, finished and checked in full; its mean joke score gain.
    Runs in a worker process: a failed check raises there and fails the test here."""
    return asyncio.run(_check_default_episode(show_id, setting, seed))


async def _check_default_episode(show_id: str, setting: str, seed: int) -> float:
    show = catalog.find_show(show_id)
    assert show is not None
    label = f"{show.id} / {setting} / seed {seed}"
    context, episode = await draft_episode(show.id, setting, seed)
    assert 8 <= len(episode.scenes) <= 12, label
    assert target_runtime(episode) == 22 * 60.0
    assert validate_episode(episode).passed, label
    _check_outline(show, episode)
    gain = await _finish(context, episode)
    _check_episode(episode, label)
    _assert_no_original_names(show, episode, label)
    return gain


@pytest.mark.parametrize("show", catalog.load_shows(), ids=lambda show: show.id)
async def test_every_default_episode_of_the_show_is_sound(
    show: episode_pb2.Show, workers: ProcessPoolExecutor
) -> None:
    loop = asyncio.get_running_loop()
    gains = await asyncio.gather(
        *(
            loop.run_in_executor(workers, _default_episode, show.id, setting, seed)
            for setting in SETTINGS
            for seed in SEEDS
        )
    )
    assert sum(gains) / len(gains) >= MIN_MEAN_GAIN


def _premise_naming_the_classic_cast(show: episode_pb2.Show) -> str:
    """A pitch that names the classic cast by first name, full name, title form and nickname."""
    lead, foil, *rest = show.characters
    other = rest[0] if rest else foil
    forms = [alias for c in show.characters for alias in c.aliases]
    titled = next((a for a in forms if a.split()[0].endswith(".")), other.name)
    nickname = next((a for a in forms if len(a.split()) == 1), foil.name)
    full = next((a for a in lead.aliases if len(a.split()) > 1), lead.name)
    return (
        f"{lead.name} bets {nickname} that {titled} cannot keep a secret until the big night; "
        f"{full} loses the 'Silver Ladle' trophy, and {foil.name} has to find it."
    )


def _bundled_setting_episode(show_id: str, setting_id: str, seed: int) -> None:
    """One episode pitched with the classic cast's names, in a worker process."""
    asyncio.run(_check_bundled_setting_episode(show_id, setting_id, seed))


async def _check_bundled_setting_episode(show_id: str, setting_id: str, seed: int) -> None:
    show = catalog.find_show(show_id)
    assert show is not None
    premise = _premise_naming_the_classic_cast(show)
    label = f"{show.id} / {setting_id}"
    context, episode = await draft_episode(show.id, setting_id, seed, premise=premise)
    await _finish(context, episode)
    _assert_no_original_names(show, episode, label)
    assert episode.validation.passed, (label, [i.message for i in episode.validation.issues])
    assert {line.character for line in dialogue(episode)} <= {c.name for c in episode.cast}


@pytest.mark.parametrize("show", catalog.load_shows(), ids=lambda show: show.id)
async def test_no_original_name_in_any_bundled_setting(
    show: episode_pb2.Show, workers: ProcessPoolExecutor
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.gather(
        *(
            loop.run_in_executor(workers, _bundled_setting_episode, show.id, setting.id, seed)
            for seed, setting in enumerate(catalog.load_settings())
        )
    )


def _explicit_count_episode(show_id: str, setting: str, scene_count: int) -> None:
    """One episode with an explicit scene count, in a worker process."""
    asyncio.run(_check_explicit_count_episode(show_id, setting, scene_count))


async def _check_explicit_count_episode(show_id: str, setting: str, scene_count: int) -> None:
    label = f"{show_id} / {setting} / {scene_count} scenes"
    context, episode = await draft_episode(show_id, setting, 5, scene_count)
    assert len(episode.scenes) == scene_count
    assert target_runtime(episode) == scene_count * 120.0
    await _finish(context, episode)
    _check_episode(episode, label)


@pytest.mark.parametrize("scene_count", [1, 3, 20])
async def test_explicit_scene_counts_are_sound_too(
    scene_count: int, workers: ProcessPoolExecutor
) -> None:
    loop = asyncio.get_running_loop()
    await asyncio.gather(
        *(
            loop.run_in_executor(workers, _explicit_count_episode, show.id, setting, scene_count)
            for show in catalog.load_shows()
            for setting in SETTINGS
        )
    )
