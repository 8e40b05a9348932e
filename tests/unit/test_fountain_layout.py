"""Page layout: line counts worked out by hand from the rules in services/scene/layout.py."""

from __future__ import annotations

from doppelganger.v1 import episode_pb2
from services.scene.fountain import parse_fountain, render_episode
from services.scene.layout import (
    LINES_PER_PAGE,
    Line,
    LineKind,
    TitleLine,
    count_pages,
    layout_script,
    runtime_seconds,
    title_page_lines,
    wrap,
)

SIXTY = "x" * 59 + "."  # Exactly one action line.


def action_paragraph(lines: int) -> str:
    return "\n".join([SIXTY] * lines)


def dialogue(speaker: str, lines: int, parenthetical: str = "") -> str:
    body = [f"({parenthetical})"] if parenthetical else []
    return "\n".join([speaker, *body, *(f"Line {i}." for i in range(lines))])


def test_wrap_is_greedy_and_breaks_long_words() -> None:
    assert wrap("aa bb cc", 5) == ["aa bb", "cc"]
    assert wrap("abcdefghij", 4) == ["abcd", "efgh", "ij"]
    assert wrap("one\n\ntwo", 10) == ["one", "", "two"]
    assert wrap(SIXTY, 60) == [SIXTY]


def test_fifty_five_action_lines_fill_one_page_exactly() -> None:
    assert count_pages(action_paragraph(55)) == 1
    assert count_pages(action_paragraph(56)) == 2
    assert LINES_PER_PAGE == 55


def test_heading_and_blank_line_take_two_lines() -> None:
    heading = "INT. LAB - DAY #1#\n\n"
    assert count_pages(heading + action_paragraph(53)) == 1
    assert count_pages(heading + action_paragraph(54)) == 2


def test_long_action_wraps_at_sixty_characters() -> None:
    text = " ".join(["word"] * 1000)  # 4,999 characters, 12 words (59 chars) a line.
    (page_one, page_two) = layout_script(text).pages
    assert len(page_one) == 55 and len(page_two) == 1000 // 12 + 1 - 55
    assert all(len(line.text) <= 60 for line in page_one)


def test_separating_blank_lines_are_dropped_at_the_top_of_a_page() -> None:
    layout = layout_script(action_paragraph(55) + "\n\n" + "Then this.")
    assert layout.pages[1] == (Line(LineKind.ACTION, "Then this."),)


def test_heading_is_not_left_at_the_bottom_of_a_page() -> None:
    # 52 lines + blank + heading would leave the heading on line 54 with only a blank after it.
    text = action_paragraph(52) + "\n\nINT. LAB - DAY\n\nShe enters."
    first, second = layout_script(text).pages
    assert len(first) == 52
    assert second[0] == Line(LineKind.HEADING, "INT. LAB - DAY")


def test_dialogue_split_adds_more_and_contd() -> None:
    # Page one: 50 action + blank + cue + 2 dialogue + (MORE) = 55 lines; the other 8 go over.
    text = action_paragraph(50) + "\n\n" + dialogue("RICKY", 10)
    first, second = layout_script(text).pages
    assert len(first) == 55
    assert first[-4:] == (
        Line(LineKind.CHARACTER, "RICKY"),
        Line(LineKind.DIALOGUE, "Line 0."),
        Line(LineKind.DIALOGUE, "Line 1."),
        Line(LineKind.MORE, "(MORE)"),
    )
    assert second[0] == Line(LineKind.CHARACTER, "RICKY (CONT'D)")
    assert [line.text for line in second[1:]] == [f"Line {i}." for i in range(2, 10)]


def test_dialogue_that_cannot_split_moves_whole() -> None:
    # Room for the cue and (MORE) only: no dialogue line would stay, so the block moves.
    text = action_paragraph(52) + "\n\n" + dialogue("RICKY", 3)
    first, second = layout_script(text).pages
    assert len(first) == 52
    assert [line.kind for line in second] == [LineKind.CHARACTER] + [LineKind.DIALOGUE] * 3


def test_dialogue_never_splits_right_after_a_parenthetical() -> None:
    # Room: 55 - 51 = 4 lines (cue, parenthetical, one line, MORE) would work; with room for
    # cue, parenthetical and MORE only, the split must not fall after the parenthetical.
    text = action_paragraph(51) + "\n\n" + dialogue("LUCY", 4, parenthetical="beat")
    first, second = layout_script(text).pages
    assert len(first) == 51
    assert second[0] == Line(LineKind.CHARACTER, "LUCY")


def test_dialogue_longer_than_a_page_continues_on_every_page() -> None:
    layout = layout_script(dialogue("RICKY", 120))
    # Page one: cue + 53 + MORE; page two: cue + 53 + MORE; page three: cue + 14.
    assert [len(page) for page in layout.pages] == [55, 55, 15]
    assert all(page[-1].kind is LineKind.MORE for page in layout.pages[:-1])
    assert all(page[0].text == "RICKY (CONT'D)" for page in layout.pages[1:])


def test_sections_and_synopses_are_not_printed() -> None:
    text = "# ACT ONE\n\n= Luna hides the tomato.\n\n" + action_paragraph(55)
    assert count_pages(text) == 1


def test_page_break_forces_a_new_page() -> None:
    assert count_pages("One line.\n\n===\n\nAnother.") == 2


def test_title_page_is_not_counted() -> None:
    ep = episode_pb2.Episode(
        outline=episode_pb2.Outline(title="Pilot"),
        scenes=[episode_pb2.Scene(slugline=episode_pb2.Slugline(placement=1, location="LAB"))],
    )
    layout = layout_script(render_episode(ep))
    assert layout.has_title_page
    assert layout.page_count == 1
    assert layout.runtime_seconds == 60.0


def test_count_pages_takes_text_or_parsed_script() -> None:
    text = action_paragraph(100)
    assert count_pages(text) == count_pages(parse_fountain(text)) == 2
    assert runtime_seconds(3) == 180.0
    assert count_pages("") == 0


def test_narrow_columns_wrap_dialogue_and_parentheticals() -> None:
    speech = " ".join(["blah"] * 14)  # 69 characters: two lines at 35.
    aside = "(" + " ".join(["very"] * 6) + ")"  # 31 characters: two lines at 24.
    (page,) = layout_script(f"RICKY\n{aside}\n{speech}").pages
    assert [line.kind for line in page] == [
        LineKind.CHARACTER,
        LineKind.PARENTHETICAL,
        LineKind.PARENTHETICAL,
        LineKind.DIALOGUE,
        LineKind.DIALOGUE,
    ]


def test_dialogue_breaks_at_the_end_of_a_sentence() -> None:
    # Seven four-letter words fill a 35-column dialogue line; a sentence ends on line two.
    first_sentence = " ".join(["word"] * 13 + ["done."])
    second_sentence = " ".join(["more"] * 27 + ["end."])
    text = action_paragraph(49) + f"\n\nRICKY\n{first_sentence} {second_sentence}"
    first, second = layout_script(text).pages
    # Room for the cue, three lines and (MORE); the third line is mid-sentence, so two stay.
    assert [line.kind for line in first[-4:]] == [
        LineKind.CHARACTER,
        LineKind.DIALOGUE,
        LineKind.DIALOGUE,
        LineKind.MORE,
    ]
    assert first[-2].text.endswith("done.")
    assert second[0] == Line(LineKind.CHARACTER, "RICKY (CONT'D)")
    assert len(second) == 1 + 4


def test_dialogue_without_a_sentence_end_in_reach_moves_whole() -> None:
    speech = " ".join(["more"] * 41 + ["end."])  # Six lines, one sentence.
    first, second = layout_script(action_paragraph(49) + f"\n\nRICKY\n{speech}").pages
    assert len(first) == 49
    assert [line.kind for line in second] == [LineKind.CHARACTER] + [LineKind.DIALOGUE] * 6


def test_title_page_rows_centre_the_title_and_put_contact_bottom_left() -> None:
    lines = title_page_lines(
        {
            "Title": "The Moon Rent",
            "Credit": "Written by",
            "Author": "Doppelganger Studio",
            "Source": 'Based on "I Love Lucy"',
            "Draft date": "1 May 2157",
            "Contact": "Mars Colony\nDome 4",
        }
    )
    assert lines == [
        TitleLine(18, "THE MOON RENT", "center", underline=True),
        TitleLine(22, "Written by", "center"),
        TitleLine(24, "Doppelganger Studio", "center"),
        TitleLine(28, 'Based on "I Love Lucy"', "center"),
        TitleLine(53, "Mars Colony", "left"),
        TitleLine(54, "Dome 4", "left"),
        TitleLine(54, "1 May 2157", "right"),
    ]


def test_a_title_longer_than_the_page_is_cut_above_the_bottom_block() -> None:
    lines = title_page_lines({"Title": "word " * 2000, "Contact": "Dome 4"})
    rows = [line.row for line in lines]
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert max(line.row for line in lines if line.align == "center") < 53
    assert lines[-1] == TitleLine(54, "Dome 4", "left")
    assert all(len(line.text) <= 60 for line in lines)
