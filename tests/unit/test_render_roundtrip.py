"""Round trips: the Fountain we emit parses back, with screenplain's parser and with ours, to the
same scenes, speakers and number of dialogue lines as the episode it came from, for every show in
the catalog; and every format of a script agrees on its pages."""

from __future__ import annotations

import io

import pytest
from screenplain.parsers import fountain as screenplain_fountain
from screenplain.types import Slug

from doppelganger.v1 import episode_pb2
from services.scene.fountain import parse_fountain, render_episode, render_scene
from services.scene.render import RENDERERS
from testkit import action, generated_episode, line, scene, transition
from tests.unit.render_checks import SHOW_IDS, Structure, from_our_parser, from_screenplain

# (setting, scene count, seed): each show is written three times, from 1 to 20 scenes.
VARIANTS = [
    ("mars-colony-2157", 8, 7),
    ("a haunted lighthouse off the coast of Maine", 3, 1),
    ("enchanted-forest", 12, 2026),
    ("victorian-london", 20, 99),
    ("an underwater city", 1, 5),
]


def from_episode(episode: episode_pb2.Episode) -> Structure:
    lines = [[e.dialogue for e in s.elements if e.HasField("dialogue")] for s in episode.scenes]
    return Structure(
        numbers=[str(s.number or i) for i, s in enumerate(episode.scenes, start=1)],
        speakers=[[d.character.strip().upper() for d in scene] for scene in lines],
        spoken_lines=[sum(len(d.text.strip().splitlines()) for d in scene) for scene in lines],
    )


def headings(text: str) -> tuple[list[str], list[str]]:
    ours = [s.heading for s in parse_fountain(text).scenes]
    theirs = [
        str(p.line) for p in screenplain_fountain.parse(io.StringIO(text)) if isinstance(p, Slug)
    ]
    return ours, theirs


@pytest.mark.parametrize("show_id", SHOW_IDS)
@pytest.mark.parametrize(("setting", "scene_count", "seed"), VARIANTS)
def test_generated_episodes_round_trip_through_both_parsers(
    show_id: str, setting: str, scene_count: int, seed: int
) -> None:
    episode = generated_episode(show_id, setting, scene_count, seed)
    text = render_episode(episode)
    expected = from_episode(episode)
    assert len(expected.numbers) == scene_count
    assert sum(expected.spoken_lines) > 0
    assert from_our_parser(text) == expected
    assert from_screenplain(text) == expected
    ours, theirs = headings(text)
    assert ours == theirs and len(ours) == scene_count


def awkward_episode() -> episode_pb2.Episode:
    """Everything a careless writer (or an LLM) might put in an episode."""
    return episode_pb2.Episode(
        outline=episode_pb2.Outline(title="Title: with a colon"),
        scenes=[
            scene(
                "café #2#",
                action("INT. NOT A HEADING\nCUT TO:"),
                line("Zoë", "(laughs) Fine.\n(sighs)\nAnd then (again)."),
                line("Łukasz", "(unclosed aside, still speaking\nsecond line)"),
                line("李", "你好", extension="V.O."),
                line("O'Brien-Smith", "Line\n\n\nwith blank lines", parenthetical="(beat)"),
                line("mr. x", "", parenthetical="shrugs"),
                line("CONT'D GUY", "Hi.", extension="cont'd"),
                transition("fade to black"),
                number=3,
            ),
            scene("empty", placement=episode_pb2.PLACEMENT_EXT),
            scene("moon", line("Ricky", "x" * 300), action("y" * 9000)),
        ],
    )


def test_awkward_text_parses_back_the_same_with_both_parsers() -> None:
    text = render_episode(awkward_episode())
    ours, theirs = from_our_parser(text), from_screenplain(text)
    assert ours == theirs
    assert ours.numbers == ["3", "2", "3"]
    assert ours.speakers[0] == ["ZOË", "ŁUKASZ", "李", "O'BRIEN-SMITH", "MR. X", "CONT'D GUY"]
    # "(laughs) Fine." becomes a parenthetical and a line; "(sighs)" a parenthetical; the
    # unclosed aside stays speech (its bracket becomes "[").
    assert ours.spoken_lines == [1 + 1 + 2 + 1 + 2 + 0 + 1, 0, 1]
    zoe = parse_fountain(text).scenes[0].dialogue[0]
    assert [part.text for part in zoe.parts] == [
        "(laughs)",
        "Fine.",
        "(sighs)",
        "And then (again).",
    ]
    lukasz = parse_fountain(text).scenes[0].dialogue[1]
    assert lukasz.text == "[unclosed aside, still speaking\nsecond line)"
    assert headings(text)[0] == headings(text)[1]


def test_a_lone_scene_round_trips_too() -> None:
    only = awkward_episode().scenes[0]
    text = render_scene(only)
    assert from_our_parser(text) == from_screenplain(text)


@pytest.mark.parametrize("show_id", SHOW_IDS[:3])
def test_every_format_of_a_script_reports_the_same_pages(show_id: str) -> None:
    episode = generated_episode(show_id, scene_count=12, seed=3)
    documents = [renderer.render_episode(episode) for renderer in RENDERERS.values()]
    pages = {document.page_count for document in documents}
    assert len(pages) == 1 and pages.pop() >= 12 // 2
    assert {document.scene_count for document in documents} == {12}
