"""Fountain rendering and parsing: element syntax, neutralised user text, round trips."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2
from services.scene.fountain import (
    DialogueBlock,
    Element,
    ElementKind,
    parse_fountain,
    render_episode,
    render_scene,
    split_cue,
)
from testkit import action, episode, line, scene, transition

LONG_ACTION = "Luna" + " juggles" * 624 + " pin"  # 5,000 characters.


@pytest.fixture
def sample() -> episode_pb2.Episode:
    return episode(
        scene(
            "hydroponics bay",
            action("Luna waters a tomato the size of a beach ball."),
            line("Zoë", "Is that thing legal?", parenthetical="(whispering)"),
            line("Łukasz", "Nothing up here is legal.", extension="V.O."),
            line("Luna", "Ricky's coming!", parenthetical="panicking", extension="O.S."),
            transition("cut to:"),
            act="Act One",
        ),
        scene(
            "moon surface",
            action(LONG_ACTION),
            line("Ricky", "Luuuna!"),
            line("Zoë", "You have some explaining to do."),
            placement=episode_pb2.PLACEMENT_EXT,
            time_of_day="night",
            act="Act One",
        ),
        scene("airlock", placement=episode_pb2.PLACEMENT_INT_EXT, act="Act Two"),
    )


def test_title_page_comes_first_then_a_blank_line(sample: episode_pb2.Episode) -> None:
    text = render_episode(sample)
    assert text.startswith(
        "Title: The Moon Rent\n"
        "Credit: Written by\n"
        "Author: Doppelganger Studio (procedural)\n"
        'Source: Based on "I Love Lucy"\n'
        "\n"
    )
    assert parse_fountain(text).title_page == {
        "Title": "The Moon Rent",
        "Credit": "Written by",
        "Author": "Doppelganger Studio (procedural)",
        "Source": 'Based on "I Love Lucy"',
    }


def test_headings_carry_placement_and_scene_numbers(sample: episode_pb2.Episode) -> None:
    lines = render_episode(sample).splitlines()
    assert "INT. HYDROPONICS BAY - DAY #1#" in lines
    assert "EXT. MOON SURFACE - NIGHT #2#" in lines
    assert "INT./EXT. AIRLOCK - DAY #3#" in lines


def test_explicit_scene_numbers_win_over_positions() -> None:
    text = render_episode(episode(scene("lab", number=7), scene("hall")))
    assert [s.number for s in parse_fountain(text).scenes] == ["7", "2"]


def test_heading_without_placement_is_forced() -> None:
    text = render_scene(
        scene("the void", placement=episode_pb2.PLACEMENT_UNSPECIFIED, time_of_day="")
    )
    assert text == ".THE VOID\n"
    (parsed,) = parse_fountain(text).scenes
    assert (parsed.heading, parsed.number) == ("THE VOID", None)


def test_hash_in_location_cannot_fake_a_scene_number() -> None:
    text = render_scene(scene("room #12#"), number=3)
    (parsed,) = parse_fountain(text).scenes
    assert parsed.number == "3"
    assert parsed.heading == "INT. ROOM 12 - DAY"


def test_acts_become_sections_when_they_change(sample: episode_pb2.Episode) -> None:
    text = render_episode(sample)
    assert text.count("# ACT ONE\n") == 1
    assert text.count("# ACT TWO\n") == 1
    assert text.index("# ACT ONE") < text.index("#1#") < text.index("#2#")
    assert text.index("#2#") < text.index("# ACT TWO") < text.index("#3#")


def test_cues_are_capitals_with_extensions_and_parentheticals_own_lines(
    sample: episode_pb2.Episode,
) -> None:
    lines = render_episode(sample).splitlines()
    # Non-ASCII cues are forced with @: strict parsers only recognise [A-Z] cues.
    cue = lines.index("@ZOË")
    assert lines[cue + 1 : cue + 3] == ["(whispering)", "Is that thing legal?"]
    assert "@ŁUKASZ (V.O.)" in lines
    luna = lines.index("LUNA (O.S.)")
    assert lines[luna + 1 : luna + 3] == ["(panicking)", "Ricky's coming!"]
    assert "RICKY" in lines


def test_transitions_end_in_to_or_are_forced() -> None:
    text = render_scene(scene("lab", transition("cut to:"), transition("Fade out.")))
    assert "\n\nCUT TO:\n" in text
    assert "\n\n> FADE OUT.\n" in text
    kinds = [b.kind for b in parse_fountain(text).scenes[0].blocks if isinstance(b, Element)]
    assert kinds == [ElementKind.TRANSITION, ElementKind.TRANSITION]


def test_elements_are_separated_by_one_blank_line(sample: episode_pb2.Episode) -> None:
    text = render_episode(sample)
    assert "\n\n\n" not in text
    assert text.endswith("\n") and not text.endswith("\n\n")


def test_round_trip_keeps_scenes_speakers_and_dialogue(sample: episode_pb2.Episode) -> None:
    parsed = parse_fountain(render_episode(sample))
    assert [s.heading for s in parsed.scenes] == [
        "INT. HYDROPONICS BAY - DAY",
        "EXT. MOON SURFACE - NIGHT",
        "INT./EXT. AIRLOCK - DAY",
    ]
    assert [s.number for s in parsed.scenes] == ["1", "2", "3"]
    got = [
        [(d.speaker, d.extension, d.parenthetical, d.text) for d in s.dialogue]
        for s in parsed.scenes
    ]
    assert got == [
        [
            ("ZOË", "", "whispering", "Is that thing legal?"),
            ("ŁUKASZ", "V.O.", "", "Nothing up here is legal."),
            ("LUNA", "O.S.", "panicking", "Ricky's coming!"),
        ],
        [("RICKY", "", "", "Luuuna!"), ("ZOË", "", "", "You have some explaining to do.")],
        [],
    ]
    long_action = parsed.scenes[1].blocks[0]
    assert isinstance(long_action, Element) and long_action.text == LONG_ACTION
    assert len(LONG_ACTION) == 5000


def test_output_is_deterministic(sample: episode_pb2.Episode) -> None:
    copy = episode_pb2.Episode()
    copy.CopyFrom(sample)
    assert render_episode(sample) == render_episode(copy)
    assert render_scene(sample.scenes[0], 1) == render_scene(copy.scenes[0], 1)


def test_empty_scene_is_a_heading_alone() -> None:
    text = render_scene(scene("airlock"), number=4)
    assert text == "INT. AIRLOCK - DAY #4#\n"
    (parsed,) = parse_fountain(text).scenes
    assert parsed.blocks == ()


def test_empty_episode_is_a_title_page() -> None:
    parsed = parse_fountain(render_episode(episode_pb2.Episode()))
    assert parsed.title_page["Title"] == "Untitled Episode"
    assert parsed.scenes == () and parsed.blocks == ()


def test_standalone_scene_never_reads_as_a_title_page() -> None:
    text = render_scene(scene("lab: level 2", line("Ricky", "Lucy!")), number=1)
    assert text.startswith("\nINT. LAB: LEVEL 2 - DAY #1#\n")
    parsed = parse_fountain(text)
    assert parsed.title_page == {}
    assert [d.speaker for d in parsed.scenes[0].dialogue] == ["RICKY"]


@pytest.mark.parametrize(
    "text",
    [
        "BOOM\nThe door flies open.",
        "INT. KITCHEN - DAY",
        "Est. 1952, the diner never closed.",
        "i/e is what the sign says",
        "CUT TO:",
        "!bang",
        "@ricky",
        "~ la la la",
        ".hidden",
        "> not a transition",
        ">centred<",
        "# not a section",
        "= not a synopsis",
        "===",
        "SHE SCREAMS.",
        "Quiet.\n# hash on a second line\n!bang on a third",
    ],
)
def test_action_text_stays_action(text: str) -> None:
    parsed = parse_fountain(render_scene(scene("lab", action(text)), number=1))
    (only,) = parsed.scenes
    assert only.blocks == (Element(ElementKind.ACTION, text),)


def test_blank_lines_in_action_make_paragraphs_not_cues() -> None:
    text = "He turns.\n\n\nRICKY\nwalks in."
    parsed = parse_fountain(render_scene(scene("lab", action(text)), number=1))
    blocks = parsed.scenes[0].blocks
    assert blocks == (
        Element(ElementKind.ACTION, "He turns."),
        Element(ElementKind.ACTION, "RICKY\nwalks in."),
    )


def test_notes_and_boneyard_markers_in_text_are_not_swallowed() -> None:
    elements = [action("She hides the [[plans]] here."), line("Ricky", "/* not a comment */ Lucy!")]
    parsed = parse_fountain(render_scene(scene("lab", *elements), number=1))
    first, second = parsed.scenes[0].blocks
    assert isinstance(first, Element) and "plans" in first.text
    assert isinstance(second, DialogueBlock) and "not a comment" in second.text


def test_whitespace_and_line_separators_cannot_break_elements() -> None:
    text = render_scene(scene("lab", line("Ricky", "one\u2028two\tthree\x0bfour")), number=1)
    (block,) = parse_fountain(text).scenes[0].dialogue
    assert block.text == "one two three four"


@pytest.mark.parametrize(
    ("character", "expected"),
    [
        ("Int. Affairs", "INT. AFFAIRS"),  # Would read as a heading unforced.
        ("straße", "STRASSE"),
        ("李", "李"),  # No case at all.
        ("Zoë^", "ZOË"),  # A trailing caret would mean dual dialogue.
        ("", "UNKNOWN"),
    ],
)
def test_any_speaker_name_parses_back_as_a_cue(character: str, expected: str) -> None:
    text = render_scene(scene("lab", line(character, "Hello.")), number=1)
    (block,) = parse_fountain(text).scenes[0].dialogue
    assert (block.speaker, block.text, block.dual) == (expected, "Hello.", False)


def test_dialogue_lines_that_look_like_other_elements_stay_dialogue() -> None:
    spoken = "INT. KITCHEN\n# not a section\n\nCUT TO:"
    text = render_scene(scene("lab", line("Ricky", spoken)), number=1)
    (block,) = parse_fountain(text).scenes[0].blocks
    assert isinstance(block, DialogueBlock)
    assert block.text == "INT. KITCHEN\n# not a section\nCUT TO:"


def test_empty_dialogue_keeps_its_cue() -> None:
    text = render_scene(scene("lab", line("Ricky", ""), line("Lucy", "", "shrugs")), number=1)
    speakers = [
        (d.speaker, d.parenthetical, d.text) for d in parse_fountain(text).scenes[0].dialogue
    ]
    assert speakers == [("RICKY", "", "..."), ("LUCY", "shrugs", "")]


def test_two_hundred_scenes_round_trip() -> None:
    scenes = [
        scene(
            f"set {i}",
            action(f"Beat {i}."),
            line("Ricky", f"Line {i}."),
            line("Zoë", f"Reply {i}.", parenthetical="dry"),
            act=f"Act {1 + i // 50}",
        )
        for i in range(200)
    ]
    parsed = parse_fountain(render_episode(episode(*scenes)))
    assert len(parsed.scenes) == 200
    assert [s.number for s in parsed.scenes] == [str(i) for i in range(1, 201)]
    assert all([d.speaker for d in s.dialogue] == ["RICKY", "ZOË"] for s in parsed.scenes)
    assert parsed.scenes[199].dialogue[1].text == "Reply 199."
    sections = [
        b for b in parsed.blocks if isinstance(b, Element) and b.kind is ElementKind.SECTION
    ]
    assert [s.text for s in sections] == ["ACT 1", "ACT 2", "ACT 3", "ACT 4"]


def test_parser_reads_hand_written_fountain() -> None:
    text = (
        "Title:\n    Big Fish\nAuthor: John August\n\n"
        "/* cut this */\n"
        "EXT. BRICK'S PATIO - DAY #1A#\n\n"
        "[[a note]]\n\n"
        "STEEL (O.S.)\n(beat)\nWhat's going on?\n\n"
        "BRICK ^\nNothing.\n\n"
        "===\n\n"
        "> THE END <\n"
    )
    parsed = parse_fountain(text)
    assert parsed.title_page == {"Title": "Big Fish", "Author": "John August"}
    (only,) = parsed.scenes
    assert (only.heading, only.number) == ("EXT. BRICK'S PATIO - DAY", "1A")
    steel, brick = only.dialogue
    assert (steel.speaker, steel.extension, steel.parenthetical) == ("STEEL", "O.S.", "beat")
    assert (brick.speaker, brick.dual) == ("BRICK", True)
    assert [b.kind for b in only.blocks if isinstance(b, Element)] == [
        ElementKind.PAGE_BREAK,
        ElementKind.CENTERED,
    ]


def test_split_cue() -> None:
    assert split_cue("ZOË (V.O.)") == ("ZOË", "V.O.")
    assert split_cue("BOB") == ("BOB", "")
    assert split_cue("BOB (YOUNG) (CONT'D)") == ("BOB", "YOUNG CONT'D")


def test_summary_is_a_synopsis_and_jokes_are_notes_print_ignores_both() -> None:
    joked = scene(
        "lab",
        action("BOOM"),
        line("Ricky", "Lucy!"),
        line("Lucy", "", parenthetical="shrugs"),
        transition("cut to:"),
        number=2,
    )
    joked.summary = "Ricky finds [[the plans]].\nLucy shrugs."
    joked.jokes.add(id="s1-j1", element_index=1, pattern="slow burn", role=1, score=0.5)
    joked.jokes.add(id="s1-j2", element_index=1, pattern="odd]]pattern", role=2, score=0.25)
    joked.jokes.add(id="s1-j3", element_index=0, pattern="sight gag", role=2, score=0.9)
    joked.jokes.add(id="s1-j4", element_index=2, pattern="shrug", role=99, score=0.1)
    joked.jokes.add(id="s1-j5", element_index=3, pattern="never printed", score=0.1)
    text = render_scene(joked)
    assert text.splitlines()[:3] == [
        "INT. LAB - DAY #2#",
        "",
        "= Ricky finds [ [the plans]]. Lucy shrugs.",
    ]
    assert "!BOOM [[joke s1-j3: sight gag, punchline, score 0.90]]" in text
    assert (
        "Lucy! [[joke s1-j1: slow burn, setup, score 0.50]] "
        "[[joke s1-j2: odd] ]pattern, punchline, score 0.25]]"
    ) in text
    assert "(shrugs) [[joke s1-j4: shrug, score 0.10]]" in text
    assert "\nCUT TO:\n" in text and "never printed" not in text
    (parsed,) = parse_fountain(text).scenes
    synopsis, boom, ricky, lucy, cut = parsed.blocks
    assert synopsis == Element(ElementKind.SYNOPSIS, "Ricky finds [ [the plans]]. Lucy shrugs.")
    assert boom == Element(ElementKind.ACTION, "BOOM")
    assert isinstance(ricky, DialogueBlock) and ricky.text == "Lucy!"
    assert isinstance(lucy, DialogueBlock) and (lucy.parenthetical, lucy.text) == ("shrugs", "")
    assert cut == Element(ElementKind.TRANSITION, "CUT TO:")
