"""The procedural writer: determinism, cast, outline, scenes and joke scoring."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from doppelganger.v1 import episode_pb2
from services.script import catalog, procedural
from services.script.validation import (
    COMEDY_INTERVAL_SECONDS,
    DEFAULT_SCENE_SECONDS,
    RUNNER_WEIGHT,
)
from services.script.writing import StoryContext

ROOT = Path(__file__).resolve().parents[2]
SHOW_IDS = [show.id for show in catalog.load_shows()]
SETTINGS = ["mars-colony-2157", "enchanted-forest", "a haunted lighthouse off the coast of Maine"]


def _episode(
    show_id: str, setting_text: str, scene_count: int, seed: int
) -> tuple[episode_pb2.Episode, list[episode_pb2.Scene]]:
    show = catalog.find_show(show_id)
    assert show is not None
    setting = catalog.resolve_setting(setting_text)
    cast, relationships = procedural.transform_cast(show, setting, seed)
    outline = procedural.write_outline(show, setting, cast, relationships, scene_count, seed)
    scenes = [
        procedural.write_scene(show, setting, cast, outline, index, seed)
        for index in range(scene_count)
    ]
    episode = episode_pb2.Episode(
        show=show,
        setting=setting,
        cast=cast,
        relationships=relationships,
        outline=outline,
        scenes=scenes,
        seed=seed,
    )
    return episode, scenes


def _bytes(message: episode_pb2.Episode) -> bytes:
    return message.SerializeToString(deterministic=True)


def _dialogue(scene: episode_pb2.Scene) -> list[episode_pb2.DialogueLine]:
    return [e.dialogue for e in scene.elements if e.WhichOneof("element") == "dialogue"]


def test_api_names() -> None:
    assert procedural.WRITER_NAME == "procedural"
    assert procedural.PROMPT_VERSION
    assert sum(procedural.JOKE_WEIGHTS.values()) == pytest.approx(1.0)


def test_same_seed_gives_identical_protos() -> None:
    first, _ = _episode("i-love-lucy", "mars-colony-2157", 5, seed=42)
    second, _ = _episode("i-love-lucy", "mars-colony-2157", 5, seed=42)
    assert _bytes(first) == _bytes(second)


def test_different_seeds_give_different_episodes() -> None:
    first, first_scenes = _episode("seinfeld", "victorian-london", 4, seed=1)
    second, second_scenes = _episode("seinfeld", "victorian-london", 4, seed=2)
    assert _bytes(first.outline) != _bytes(second.outline)
    assert [_bytes(s) for s in first_scenes] != [_bytes(s) for s in second_scenes]


@pytest.mark.slow
def test_output_does_not_depend_on_the_process_hash_seed() -> None:
    script = (
        "import hashlib\n"
        "from tests.unit.test_writer import _episode, _bytes\n"
        "episode, _ = _episode('friends', 'an underwater city', 3, 9)\n"
        "print(hashlib.sha256(_bytes(episode)).hexdigest())\n"
    )
    digests = set()
    for hash_seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "shared" / "gen")])
        result = subprocess.run(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        )
        digests.add(result.stdout.strip())
    episode, _ = _episode("friends", "an underwater city", 3, 9)
    assert digests == {hashlib.sha256(_bytes(episode)).hexdigest()}


def test_a_scene_is_the_same_whether_or_not_other_scenes_were_written() -> None:
    show = catalog.find_show("frasier")
    assert show is not None
    setting = catalog.resolve_setting("a 1920s speakeasy")
    cast, relationships = procedural.transform_cast(show, setting, 5)
    outline = procedural.write_outline(show, setting, cast, relationships, 6, 5)
    alone = procedural.write_scene(show, setting, cast, outline, 4, 5)
    plan = procedural.plan_episode(show, setting, cast, 5, outline)
    in_order = [procedural.write_planned_scene(plan, i, outline=outline) for i in range(6)]
    backwards = [procedural.write_planned_scene(plan, i, outline=outline) for i in range(5, -1, -1)]
    assert _bytes(alone) == _bytes(in_order[4]) == _bytes(backwards[1])
    with_summaries = procedural.write_scene(
        show, setting, cast, outline, 4, 5, ["earlier", "beats"]
    )
    assert _bytes(with_summaries) == _bytes(alone)


def test_transform_cast_renames_with_an_echo_and_keeps_relationships() -> None:
    show = catalog.find_show("i love lucy")
    assert show is not None
    setting = catalog.resolve_setting("a Mars colony in 2157")
    cast, relationships = procedural.transform_cast(show, setting, 0)
    originals = [character.name for character in show.characters]
    assert [c.original_name for c in cast] == originals
    names = [c.name for c in cast]
    assert len(set(names)) == len(names)
    for character in cast:
        assert character.name != character.original_name
        assert character.name[0] == character.original_name[0]
        assert character.role
        assert character.traits and character.catchphrases
        for text in [*character.catchphrases, *character.verbal_tics]:
            assert not any(re.search(rf"\b{name}\b", text) for name in originals), text
    ricky = next(c for c in cast if c.original_name == "Ricky")
    lucy = next(c for c in cast if c.original_name == "Lucy")
    assert any(lucy.name in phrase for phrase in ricky.catchphrases)
    assert {(r.from_character, r.to_character) for r in relationships} <= {
        (a, b) for a in names for b in names
    }
    assert procedural.transform_cast(show, setting, 99) == (cast, relationships)


def test_catchphrases_are_adapted_to_the_setting() -> None:
    show = catalog.find_show("the honeymooners")
    assert show is not None
    cast, _ = procedural.transform_cast(show, catalog.resolve_setting("mars-colony-2157"), 0)
    ralph = next(c for c in cast if c.original_name == "Ralph")
    alice = next(c for c in cast if c.original_name == "Alice")
    assert f"Bang, zoom! To Earth, {alice.name}!" in ralph.catchphrases


@pytest.mark.parametrize("scene_count", [1, 2, 3, 4, 5, 8, 12, 20])
def test_outline_has_one_beat_per_scene_and_both_plots(scene_count: int) -> None:
    episode, _ = _episode("seinfeld", "ancient-rome", scene_count, 3)
    outline = episode.outline
    beats = [beat for act in outline.acts for beat in act.beats]
    assert [beat.scene_index for beat in beats] == list(range(scene_count))
    assert outline.scene_count == scene_count
    assert outline.title and outline.logline and outline.a_plot and outline.b_plot
    plots = {beat.plot for beat in beats}
    assert episode_pb2.PLOT_LINE_A in plots
    if scene_count >= 2:
        assert episode_pb2.PLOT_LINE_B in plots
    assert all(beat.description for beat in beats)
    assert all(act.beats for act in outline.acts)


def test_outline_follows_the_show_structure() -> None:
    seinfeld, _ = _episode("seinfeld", "mars-colony-2157", 10, 1)
    names = [act.name for act in seinfeld.outline.acts]
    assert names == ["Cold Open", "Act One", "Act Two", "Tag"]
    honeymooners, _ = _episode("the-honeymooners", "mars-colony-2157", 10, 1)
    assert [act.name for act in honeymooners.outline.acts] == ["Act One", "Act Two"]
    office, _ = _episode("the-office-us", "mars-colony-2157", 10, 1)
    assert [act.name for act in office.outline.acts][1:4] == ["Act One", "Act Two", "Act Three"]


def test_a_and_b_plots_touch_at_the_climax() -> None:
    episode, _ = _episode("cheers", "wild-west-town", 8, 4)
    story = [
        beat
        for act in episode.outline.acts
        for beat in act.beats
        if beat.plot != episode_pb2.PLOT_LINE_RUNNER
    ]
    climax = story[-1]
    a_names = {episode.cast[0].name}
    b_names = {episode.cast[2].name, episode.cast[3].name}
    assert any(name in climax.description for name in a_names)
    assert all(name in climax.description for name in b_names)


@pytest.mark.parametrize("bad", [0, 21, -1])
def test_outline_rejects_scene_counts_out_of_range(bad: int) -> None:
    show = catalog.load_shows()[0]
    setting = catalog.load_settings()[0]
    cast, relationships = procedural.transform_cast(show, setting, 0)
    with pytest.raises(ValueError, match="scene_count"):
        procedural.write_outline(show, setting, cast, relationships, bad, 0)


def _check_scene(scene: episode_pb2.Scene, index: int, cast_names: set[str]) -> None:
    lines = _dialogue(scene)
    assert len(lines) >= 6
    assert scene.index == index and scene.number == index + 1 and scene.act
    assert scene.slugline.location and scene.slugline.time_of_day
    assert scene.slugline.placement != episode_pb2.PLACEMENT_UNSPECIFIED
    assert scene.summary
    assert {line.character for line in lines} <= cast_names
    assert list(scene.characters) == list(dict.fromkeys(line.character for line in lines))
    texts = [line.text for line in lines]
    assert len(set(texts)) == len(texts), "a dialogue line repeats within the scene"
    assert 30 <= scene.duration_seconds <= 180
    for element in scene.elements:
        kind = element.WhichOneof("element")
        text = getattr(element, kind).text
        assert text and "{" not in text and "}" not in text, text
    assert scene.elements[-1].WhichOneof("element") == "transition"


def _check_jokes(scene: episode_pb2.Scene, pattern_ids: set[str]) -> None:
    assert scene.jokes
    roles = {joke.role for joke in scene.jokes}
    assert roles & {episode_pb2.JOKE_ROLE_PUNCHLINE, episode_pb2.JOKE_ROLE_CALLBACK}
    marked = [e.dialogue.joke_id for e in scene.elements if e.dialogue.joke_id]
    assert sorted(marked) == sorted(joke.id for joke in scene.jokes)
    for number, joke in enumerate(scene.jokes, start=1):
        assert joke.id == f"s{scene.index}-j{number}"
        assert joke.scene_index == scene.index
        element = scene.elements[joke.element_index]
        assert element.WhichOneof("element") == "dialogue"
        assert element.dialogue.joke_id == joke.id
        assert joke.pattern in pattern_ids
        assert joke.role != episode_pb2.JOKE_ROLE_UNSPECIFIED
        assert 0.0 <= joke.score <= 1.0
        assert set(joke.dimensions) == set(procedural.JOKE_WEIGHTS)
        assert 0 < joke.offset_seconds <= scene.duration_seconds + 0.1


@pytest.mark.parametrize("show_id", SHOW_IDS)
def test_every_show_in_several_settings_writes_sound_scenes(show_id: str) -> None:
    pattern_ids = {pattern.id for pattern in catalog.load_patterns()}
    for setting_text in SETTINGS:
        for seed in (0, 7):
            episode, scenes = _episode(show_id, setting_text, 4, seed)
            cast_names = {character.name for character in episode.cast}
            for index, scene in enumerate(scenes):
                _check_scene(scene, index, cast_names)
                _check_jokes(scene, pattern_ids)
            joke_ids = [joke.id for scene in scenes for joke in scene.jokes]
            assert len(set(joke_ids)) == len(joke_ids)


def test_three_scene_episode_has_at_least_twenty_dialogue_lines() -> None:
    _, scenes = _episode("the-golden-girls", "generation-starship", 3, 11)
    assert sum(len(_dialogue(scene)) for scene in scenes) >= 20


def test_scenes_use_setting_locations_and_vocabulary() -> None:
    episode, scenes = _episode("taxi", "underwater-city", 6, 2)
    setting = episode.setting
    assert {scene.slugline.location for scene in scenes} <= set(setting.locations)
    assert len({scene.slugline.location for scene in scenes}) == 6
    script = " ".join(line.text for scene in scenes for line in _dialogue(scene))
    mentions = [term for term in [*setting.props, "pearls", "the Harbourmaster"] if term in script]
    assert len(mentions) >= 3


def test_jokes_never_repeat_across_an_episode() -> None:
    _, scenes = _episode("mash", "medieval-castle", 12, 8)
    payoffs = [
        scene.elements[joke.element_index].dialogue.text for scene in scenes for joke in scene.jokes
    ]
    assert len(set(payoffs)) == len(payoffs)


def test_catchphrases_are_used_sparingly() -> None:
    episode, scenes = _episode("friends", "victorian-london", 10, 6)
    phrases = {phrase for character in episode.cast for phrase in character.catchphrases}
    uses = [line.text for scene in scenes for line in _dialogue(scene) if line.text in phrases]
    lines = sum(len(_dialogue(scene)) for scene in scenes)
    assert uses, "catchphrases should appear now and then"
    assert len(uses) <= len(scenes)
    assert len(uses) < 0.1 * lines


def test_every_library_pattern_has_joke_templates() -> None:
    assert {pattern.id for pattern in catalog.load_patterns()} == set(procedural.JOKES)


def test_score_joke_is_pure_and_weighted() -> None:
    pattern = catalog.get_pattern("deadpan")
    assert pattern is not None
    text = "Huh. I'll put the oxygen scrubber on the list."
    setting = catalog.resolve_setting("mars-colony-2157")
    score, dimensions = procedural.score_joke(text, pattern, setting=setting)
    assert procedural.score_joke(text, "deadpan", setting=setting) == (score, dimensions)
    assert set(dimensions) == set(procedural.JOKE_WEIGHTS)
    weighted = sum(procedural.JOKE_WEIGHTS[name] * value for name, value in dimensions.items())
    assert score == pytest.approx(weighted, abs=1e-3)
    assert 0.0 <= score <= 1.0


def test_score_joke_dimensions_respond_to_the_text() -> None:
    cynic = episode_pb2.Character(name="Fenn", archetype="cynic")
    schemer = episode_pb2.Character(name="Lux", archetype="schemer")
    mars = catalog.resolve_setting("mars-colony-2157")
    line = "Huh. I'll put the dust storm on the list."
    _, fit = procedural.score_joke(line, "deadpan", speaker=cynic)
    _, misfit = procedural.score_joke(line, "deadpan", speaker=schemer)
    assert fit["character_fit"] > misfit["character_fit"]
    _, local = procedural.score_joke(line, "deadpan", setting=mars)
    _, generic = procedural.score_joke("Huh. I'll put it on the list.", "deadpan", setting=mars)
    assert local["setting_fit"] > generic["setting_fit"]
    _, long_line = procedural.score_joke(" ".join(["word"] * 40), "deadpan")
    assert long_line["brevity"] < 0.5
    _, callback = procedural.score_joke(line, "callback", callback_terms=["dust storm"])
    assert callback["callback"] == 1.0
    _, heard = procedural.score_joke(line, "deadpan", context=[line])
    _, fresh = procedural.score_joke(line, "deadpan", context=["Something else entirely."])
    assert fresh["surprise"] > heard["surprise"]
    _, flat = procedural.score_joke("I'll put it on the list of the", "deadpan")
    assert flat["punch"] < fresh["punch"]


# ---------------------------------------------------------------------------------------------
# Runtime targets


def _lines(scenes: list[episode_pb2.Scene]) -> list[str]:
    return [line.text for scene in scenes for line in _dialogue(scene)]


def test_auto_scene_count_picks_8_to_12_scenes_for_22_minutes() -> None:
    for show in catalog.load_shows():
        counts = {procedural.auto_scene_count(show, seed, 22 * 60.0, 120.0) for seed in range(20)}
        assert counts <= set(range(8, 13)), show.id
        assert len(counts) > 1, f"{show.id}: the count should vary with the seed"
        for count in counts:
            assert procedural.longest_scene_seconds(show, count, 22 * 60.0) <= 175


def test_auto_scene_count_follows_the_configured_lengths() -> None:
    show = catalog.find_show("the-honeymooners")
    assert show is not None
    short = {procedural.auto_scene_count(show, seed, 10 * 60.0, 120.0) for seed in range(10)}
    long = {procedural.auto_scene_count(show, seed, 30 * 60.0, 150.0) for seed in range(10)}
    assert short == {8}  # 5 scenes of 120 s would be fewer than 8: the floor holds
    assert max(long) == 12 and min(long) >= 11


def test_outline_shares_the_runtime_target_among_the_beats() -> None:
    show = catalog.find_show("seinfeld")
    assert show is not None
    setting = catalog.resolve_setting("mars-colony-2157")
    cast, relationships = procedural.transform_cast(show, setting, 2)
    outline = procedural.write_outline(show, setting, cast, relationships, 10, 2, 1320.0)
    beats = [beat for act in outline.acts for beat in act.beats]
    assert outline.target_runtime_seconds == 1320.0
    assert sum(beat.target_seconds for beat in beats) == pytest.approx(1320.0, abs=1.0)
    runner = {b.target_seconds for b in beats if b.plot == episode_pb2.PLOT_LINE_RUNNER}
    acts = {b.target_seconds for b in beats if b.plot != episode_pb2.PLOT_LINE_RUNNER}
    assert len(runner) == 1 and len(acts) == 1
    assert runner.pop() == pytest.approx(RUNNER_WEIGHT * acts.pop(), abs=0.1)
    default = procedural.write_outline(show, setting, cast, relationships, 3, 2)
    assert default.target_runtime_seconds == 3 * DEFAULT_SCENE_SECONDS


@pytest.mark.parametrize("target", [60.0, 90.0, 120.0, 150.0, 175.0])
def test_scenes_are_written_to_their_runtime_target(target: float) -> None:
    show = catalog.find_show("cheers")
    assert show is not None
    setting = catalog.resolve_setting("underwater-city")
    cast, relationships = procedural.transform_cast(show, setting, 5)
    outline = procedural.write_outline(show, setting, cast, relationships, 3, 5, 3 * target)
    assert [act.name for act in outline.acts] == ["Act One", "Act Two"]  # no tag in 3 scenes
    for index in range(3):
        scene = procedural.write_scene(show, setting, cast, outline, index, 5)
        assert scene.duration_seconds == pytest.approx(target, rel=0.1), index
        beats = [j for j in scene.jokes if j.role != episode_pb2.JOKE_ROLE_SETUP]
        assert len(beats) >= min(procedural.MAX_JOKES, target / COMEDY_INTERVAL_SECONDS)


# ---------------------------------------------------------------------------------------------
# The line plan: no dialogue line twice in an episode


@pytest.mark.parametrize(
    ("show_id", "setting_text", "seed"),
    [
        ("i-love-lucy", "mars-colony-2157", 0),
        ("friends", "a haunted lighthouse off the coast of Maine", 3),
        ("frasier", "victorian-london", 11),
        ("taxi", "a 1920s speakeasy", 19),
    ],
)
def test_no_dialogue_line_repeats_even_in_twenty_long_scenes(
    show_id: str, setting_text: str, seed: int
) -> None:
    show = catalog.find_show(show_id)
    assert show is not None
    setting = catalog.resolve_setting(setting_text)
    cast, relationships = procedural.transform_cast(show, setting, seed)
    outline = procedural.write_outline(show, setting, cast, relationships, 20, seed, 20 * 170.0)
    scenes = [procedural.write_scene(show, setting, cast, outline, i, seed) for i in range(20)]
    repeated = [text for text, count in Counter(_lines(scenes)).items() if count > 1]
    assert not repeated


def test_every_scene_has_its_own_discourse_markers() -> None:
    show = catalog.find_show("seinfeld")
    assert show is not None
    setting = catalog.resolve_setting("mars-colony-2157")
    cast, relationships = procedural.transform_cast(show, setting, 7)
    for scenes in range(1, procedural.MAX_SCENES + 1):
        outline = procedural.write_outline(show, setting, cast, relationships, scenes, 7)
        plan = procedural.plan_episode(show, setting, cast, 7, outline)
        marks = [plan.scene_marks(i) for i in range(scenes)]
        assert all(marks), scenes
        flat = [mark for scene_marks in marks for mark in scene_marks]
        assert len(flat) == len(set(flat)), scenes


def test_a_borrowed_line_is_marked_and_an_owned_one_is_not() -> None:
    show = catalog.find_show("cheers")
    assert show is not None
    setting = catalog.resolve_setting("medieval-castle")
    cast, relationships = procedural.transform_cast(show, setting, 1)
    outline = procedural.write_outline(show, setting, cast, relationships, 12, 1, 12 * 170.0)
    scenes = [procedural.write_scene(show, setting, cast, outline, i, 1) for i in range(12)]
    plan = procedural.plan_episode(show, setting, cast, 1, outline)
    marks = {i: tuple(m.rstrip(",") for m in plan.scene_marks(i)) for i in range(12)}
    for scene in scenes:
        others = {m for i, ms in marks.items() if i != scene.index for m in ms}
        for text in _lines([scene]):
            assert not text.startswith(tuple(others)), (scene.index, text)
    assert any(text.startswith(marks[s.index]) for s in scenes for text in _lines([s]))


# ---------------------------------------------------------------------------------------------
# Revisions and punch-up


def test_revise_scene_follows_the_notes() -> None:
    episode, scenes = _episode("i-love-lucy", "mars-colony-2157", 5, 4)
    cast = list(episode.cast)
    scene = scenes[1]
    silent = next(c for c in cast if c.name not in scene.characters)
    notes = [f"Give {silent.original_name} a say in this, and make it shorter and funnier."]
    revised = procedural.revise_scene(
        episode.show, episode.setting, cast, episode.outline, scene, 4, notes
    )
    assert revised.index == scene.index and revised.number == scene.number
    assert silent.name in revised.characters
    assert revised.duration_seconds < scene.duration_seconds
    assert len(revised.jokes) > len(scene.jokes) or revised.duration_seconds < 0.9 * (
        scene.duration_seconds
    )
    assert _bytes(revised) != _bytes(scene)
    again = procedural.revise_scene(
        episode.show, episode.setting, cast, episode.outline, scene, 4, notes
    )
    assert _bytes(again) == _bytes(revised)
    others = _lines(scenes[:1] + scenes[2:])
    assert not set(_lines([revised])) & set(others)


def test_read_notes_understands_names_lengths_comedy_and_props() -> None:
    show = catalog.find_show("i love lucy")
    assert show is not None
    setting = catalog.resolve_setting("mars-colony-2157")
    cast, _ = procedural.transform_cast(show, setting, 0)
    luna = next(c for c in cast if c.original_name == "Lucy")
    notes = ["Lucy should fight over the rover key; make it longer, and funnier."]
    directives = procedural.read_notes(notes, cast, setting, ())
    assert directives.speakers == (luna.name,)
    assert directives.length_factor == procedural.LONGER_FACTOR
    assert directives.extra_jokes == 1
    assert directives.focus == "rover key"
    plain = procedural.read_notes(["another take, please"], cast, setting, ())
    assert plain.speakers == () and plain.length_factor == 1.0 and plain.extra_jokes == 0
    assert plain.take != directives.take and plain.take != procedural.FIRST_DRAFT.take


def test_punch_up_scores_higher_and_is_deterministic() -> None:
    episode, scenes = _episode("seinfeld", "victorian-london", 4, 4)
    kernel = procedural.plan_episode(
        episode.show, episode.setting, episode.cast, 4, episode.outline
    ).kernel
    improved = 0
    for scene in scenes[1:]:
        for joke in scene.jokes:
            if joke.role == episode_pb2.JOKE_ROLE_SETUP:
                continue
            line = scene.elements[joke.element_index].dialogue
            speaker = next(c for c in episode.cast if c.name == line.character)
            new = procedural.punch_up(episode.show, episode.setting, episode.cast, scene, joke, 4)
            assert new == procedural.punch_up(
                episode.show, episode.setting, episode.cast, scene, joke, 4
            )
            assert new and new != line.text and "{" not in new
            score, _ = procedural.score_joke(
                new, joke.pattern, speaker=speaker, setting=episode.setting,
                context=procedural.joke_context(scene, joke.element_index),
                callback_terms=(kernel.runner_prop,),
            )  # fmt: skip
            improved += score > joke.score
    assert improved >= 5


# ---------------------------------------------------------------------------------------------
# Episode plans: the per-episode state, as an explicit value


async def test_the_writer_keeps_few_plans_and_writes_what_the_functions_write() -> None:
    show = catalog.find_show("cheers")
    assert show is not None
    setting = catalog.resolve_setting("ancient-rome")
    writer = procedural.ProceduralWriter(procedural.EpisodePlans(size=2))
    for seed in range(4):
        cast, relationships = procedural.transform_cast(show, setting, seed)
        context = StoryContext(
            show=show, setting=setting, cast=cast, relationships=relationships, seed=seed,
            scene_count=3,
        )  # fmt: skip
        outline = await writer.write_outline(context)
        assert _bytes(outline) == _bytes(
            procedural.write_outline(show, setting, cast, relationships, 3, seed)
        )
        for index in (2, 0, 1):
            scene = await writer.write_scene(context, outline, index, [])
            alone = procedural.write_scene(show, setting, cast, outline, index, seed)
            assert _bytes(scene) == _bytes(alone)
        assert len(writer.plans) == min(2, seed + 1)


def test_a_plan_keeps_its_own_copies_and_its_bounds() -> None:
    show = catalog.find_show("taxi")
    assert show is not None
    setting = catalog.resolve_setting("underwater-city")
    cast, relationships = procedural.transform_cast(show, setting, 3)
    outline = procedural.write_outline(show, setting, cast, relationships, 4, 3)
    plan = procedural.plan_episode(show, setting, cast, 3, outline)
    kept = episode_pb2.Outline()
    kept.CopyFrom(outline)
    first = procedural.write_planned_scene(plan, 1, outline=kept)
    outline.acts[0].beats[1].plot = episode_pb2.PLOT_LINE_RUNNER
    outline.acts[0].beats[1].target_seconds = 30.0
    cast[0].name = "Nobody"
    assert _bytes(procedural.write_planned_scene(plan, 1, outline=kept)) == _bytes(first)
    with pytest.raises(ValueError, match="scene_index"):
        procedural.write_planned_scene(plan, 4, outline=kept)
    with pytest.raises(ValueError, match="size"):
        procedural.EpisodePlans(size=0)
