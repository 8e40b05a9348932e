"""The series bible's pure logic (services/script/bible.py) and the procedural writer's part in
a season: 22+ distinct A-plot kernels for one show and setting, and a line that plays a card's
callback to an earlier episode."""

from __future__ import annotations

from doppelganger.v1 import episode_pb2, series_pb2
from services.script import bible, catalog
from services.script.procedural import (
    KERNEL_IDS,
    choose_kernel,
    kernel_order,
    transform_cast,
    write_outline,
    write_scene,
)
from services.script.procedural._kernel import CLASSIC_KERNEL_IDS, SEASON_KERNEL_IDS
from services.script.script_text import read_scene

_FOUND = catalog.find_show("I Love Lucy")
assert _FOUND is not None
SHOW = _FOUND
SETTING = catalog.resolve_setting("a Mars colony in 2157")
assert SHOW is not None
CAST, RELATIONSHIPS = transform_cast(SHOW, SETTING)


def outline(seed: int, kernel: str = "", scenes: int = 3) -> episode_pb2.Outline:
    assert SHOW is not None
    return write_outline(SHOW, SETTING, CAST, RELATIONSHIPS, scenes, seed, kernel_id=kernel)


def episode(seed: int, kernel: str = "", scenes: int = 3) -> episode_pb2.Episode:
    return episode_pb2.Episode(
        id=f"ep-{seed:020x}",
        cast=CAST,
        relationships=RELATIONSHIPS,
        outline=outline(seed, kernel, scenes),
    )


def season_bible(episodes: int) -> series_pb2.Bible:
    made = series_pb2.Bible()
    for number in range(1, episodes + 1):
        seed = bible.season_seed("se-test", 1, number)
        kernel = bible.next_kernel(SHOW.id, seed, "", made.kernels_used)
        assert kernel is not None
        made = bible.add_episode(made, episode(seed, kernel), number)
    return made


def test_an_episode_establishes_its_a_plot_and_b_plot_as_facts() -> None:
    ep = episode(5)
    facts = bible.episode_facts(ep, 4)
    assert [f.id for f in facts] == ["e4-f1", "e4-f2"]
    assert all(f.episode_number == 4 for f in facts)
    lead = ep.outline.a_plot.split(" sets out to ")[0]
    assert facts[0].text.startswith(f"{lead} tried to ") and lead in facts[0].characters
    assert facts[1].text == ep.outline.b_plot.split(". (")[0].rstrip(".")
    assert len(facts[1].characters) == 2
    llm_like = episode_pb2.Episode(outline={"a_plot": "Lux fakes an heirloom. It goes badly."})
    assert [f.text for f in bible.episode_facts(llm_like, 1)] == ["Lux fakes an heirloom"]


def test_adding_an_episode_records_gag_relationship_kernel_and_synopsis() -> None:
    ep = episode(5)
    made = bible.add_episode(series_pb2.Bible(), ep, 1)
    assert list(made.kernels_used) == [ep.outline.kernel]
    [gag] = made.running_gags
    assert gag.description == ep.outline.running_gag and gag.introduced_in == gag.last_seen_in == 1
    [relation] = made.relationships
    assert relation.episode_number == 1 and relation.kind == "wife"
    [synopsis] = made.episodes
    assert (synopsis.episode_id, synopsis.title) == (ep.id, ep.outline.title)
    assert bible.episode_count(made) == 1
    # The same episode again replaces what it added; the input bible is left as it was.
    again = bible.add_episode(made, ep, 1)
    assert again == made
    assert bible.add_episode(series_pb2.Bible(), ep, 1) == made
    later = bible.add_episode(made, episode(6, kernel=KERNEL_IDS[-1]), 2)
    assert len(later.facts) == len(made.facts) + 2 and len(made.episodes) == 1
    # Episode 6's seed draws another gag: both are kept, each with where it stands.
    assert [(g.introduced_in, g.last_seen_in) for g in later.running_gags] == [(1, 1), (2, 2)]
    again = bible.add_episode(later, ep, 3)  # episode 5's gag comes back in episode 3
    assert [(g.introduced_in, g.last_seen_in) for g in again.running_gags] == [(1, 3), (2, 2)]


def test_a_season_of_22_uses_22_distinct_kernels_and_a_plots() -> None:
    made = season_bible(22)
    assert len(set(made.kernels_used)) == 22
    assert len({s.summary for s in made.episodes}) == 22
    assert bible.kernels_left(made.kernels_used) == len(KERNEL_IDS) - 22


def test_kernels_run_out_only_after_every_one_is_used() -> None:
    assert len(KERNEL_IDS) >= bible.MAX_SEASON_EPISODES
    assert bible.next_kernel(SHOW.id, 1, "", KERNEL_IDS[:-1]) == KERNEL_IDS[-1]
    assert bible.next_kernel(SHOW.id, 1, "", KERNEL_IDS) is None
    used = ["Pass off the", *KERNEL_IDS[:3]]  # "pass-off-the" is the sixth kernel
    assert bible.kernels_left(used) == len(KERNEL_IDS) - 4


def test_an_episode_outside_a_series_keeps_a_classic_kernel() -> None:
    for seed in range(40):
        order = kernel_order(SHOW.id, seed)
        assert set(order[: len(CLASSIC_KERNEL_IDS)]) == set(CLASSIC_KERNEL_IDS)
        assert choose_kernel(SHOW.id, seed) in CLASSIC_KERNEL_IDS
    assert choose_kernel(SHOW.id, 3, avoid=CLASSIC_KERNEL_IDS) in SEASON_KERNEL_IDS


def test_episode_seeds_differ_by_episode_and_series_and_repeat() -> None:
    seeds = {bible.season_seed("se-a", 1, n) for n in range(1, 27)}
    assert len(seeds) == 26
    assert bible.season_seed("se-a", 1, 3) == bible.season_seed("se-a", 1, 3)
    assert bible.season_seed("se-a", 1, 3) != bible.season_seed("se-b", 1, 3)


def test_kernel_keys_compare_words_not_spelling() -> None:
    assert bible.kernel_key("Pass off the") == bible.kernel_key("pass-off-the") == "pass-off-the"
    assert bible.kernel_key("  Fake an HEIRLOOM! ") == "fake-an-heirloom"


def test_the_first_episode_calls_back_to_nothing_later_ones_to_earlier_facts() -> None:
    made = season_bible(5)
    assert bible.choose_callback(made, 1) is None
    for number in range(2, 7):
        fact = bible.choose_callback(made, number, seed=1)
        assert fact is not None and fact.episode_number < number
        assert bible.choose_callback(made, number, seed=1) == fact
    callbacks = [bible.choose_callback(made, 6, seed=s) for s in range(30)]
    chosen = {fact.episode_number for fact in callbacks if fact is not None}
    assert 5 in chosen and len(chosen) > 1


def test_a_callback_goes_on_a_story_beat_with_someone_it_does_not_name() -> None:
    target = outline(8, scenes=5)
    fact = series_pb2.BibleFact(
        id="e1-f1", episode_number=1, text="Lux tried to sell algae loaf", characters=["Lux"]
    )
    index = bible.attach_callback(target, fact)
    beat = next(b for act in target.acts for b in act.beats if b.scene_index == index)
    assert beat.plot != episode_pb2.PLOT_LINE_RUNNER
    assert any(n != "Lux" for n in [*beat.characters, *beat.entrances])
    assert [(c.fact_id, c.episode_number, c.text) for c in beat.callbacks] == [
        ("e1-f1", 1, fact.text)
    ]
    assert bible.attach_callback(target, fact) == index and len(beat.callbacks) == 1
    assert bible.callbacks_of(target) == ["e1-f1"]
    assert bible.attach_callback(episode_pb2.Outline(), fact) == -1


def test_the_bible_as_an_outline_request_reads_it() -> None:
    made = season_bible(2)
    lines = bible.bible_lines(made)
    assert lines[0].startswith("episode 1 (") and lines[1].startswith("episode 2 (")
    assert f"fact e2-f1 (episode 2): {made.facts[2].text}" in lines
    assert any(line.startswith("running gag (since episode 1)") for line in lines)
    assert len(bible.bible_lines(made, limit=2)) == len(lines) - 2  # 4 facts, the newest 2


def _scene_with_callback(fact: series_pb2.BibleFact) -> tuple[episode_pb2.Scene, str]:
    assert SHOW is not None
    target = outline(12, kernel=SEASON_KERNEL_IDS[0])
    index = bible.attach_callback(target, fact)
    return write_scene(SHOW, SETTING, CAST, target, index, 12), target.SerializeToString()


def test_the_procedural_writer_plays_the_callback_in_a_line() -> None:
    fact = series_pb2.BibleFact(
        id="e1-f2", episode_number=1, text="Echo and Fenn fall out over the Earth postcard.",
        characters=["Echo", "Fenn"],
    )  # fmt: skip
    scene, _ = _scene_with_callback(fact)
    lines = [e.dialogue for e in scene.elements if e.HasField("dialogue")]
    [line] = [d for d in lines if "Echo and Fenn fall out over the Earth postcard" in d.text]
    assert line.character not in ("Echo", "Fenn")
    assert "Echo and Fenn fall out over the Earth postcard" in read_scene(scene).text


def test_a_callback_naming_everyone_present_is_played_as_action() -> None:
    names = [c.name for c in CAST]
    fact = series_pb2.BibleFact(
        id="e1-f1", episode_number=1, text=f"{' and '.join(names)} sang at the airlock",
        characters=names,
    )  # fmt: skip
    scene, _ = _scene_with_callback(fact)
    dialogue = [e.dialogue.text for e in scene.elements if e.HasField("dialogue")]
    actions = [e.action.text for e in scene.elements if e.HasField("action")]
    assert not any("sang at the airlock" in text for text in dialogue)
    assert any("remembering the last time" in a and "sang at the airlock" in a for a in actions)


def test_scenes_without_callbacks_are_written_as_before() -> None:
    assert SHOW is not None
    plain = outline(12, kernel=SEASON_KERNEL_IDS[0])
    with_callback = outline(12, kernel=SEASON_KERNEL_IDS[0])
    fact = series_pb2.BibleFact(id="e1-f1", episode_number=1, text="Rico hid the rover key")
    called = bible.attach_callback(with_callback, fact)
    for index in range(3):
        before = write_scene(SHOW, SETTING, CAST, plain, index, 12)
        after = write_scene(SHOW, SETTING, CAST, with_callback, index, 12)
        assert (before == after) == (index != called)
