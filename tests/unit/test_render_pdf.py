"""PDF: text read back with pypdf, checked against the screenplay page (REFERENCE.md).

Two readings: pypdf's layout mode (a fixed-width picture of the page, one column a Courier
character, so indents are counted in characters from the action column) and exact glyph
positions (in points: 72 a inch) for the margins.
"""

from __future__ import annotations

import io

import pypdf
import pytest

from doppelganger.v1 import episode_pb2
from services.scene.fountain import render_episode
from services.scene.pdf import font_runs, write_pdf
from services.scene.render import PDF
from services.scene.screenplay import Screenplay
from testkit import action, episode, generated_episode, line, scene, transition
from tests.unit.render_checks import Glyphs, runs

INCH = 72.0
SIXTY = "x" * 59 + "."


def read(data: bytes) -> pypdf.PdfReader:
    return pypdf.PdfReader(io.BytesIO(data))


def layout_lines(page: pypdf.PageObject) -> list[str]:
    """The page as fixed-width text: with scale weight 1, one column is one Courier character."""
    text = page.extract_text(extraction_mode="layout", layout_mode_scale_weight=1.0)
    return text.splitlines()


def font_names(page: pypdf.PageObject) -> set[str]:
    fonts = page["/Resources"].get_object()["/Font"].get_object()  # type: ignore[index]
    return {str(fonts[name].get_object()["/BaseFont"]) for name in fonts}


def column(lines: list[str], text: str) -> int:
    """Column of the first line whose stripped text is `text`."""
    for printed in lines:
        if printed.strip() == text:
            return len(printed) - len(printed.lstrip())
    raise AssertionError(f"{text!r} not on the page: {lines}")


def run(page: pypdf.PageObject, text: str) -> Glyphs:
    matches = [glyphs for glyphs in runs(page) if glyphs.text == text]
    assert matches, f"{text!r} not drawn"
    return matches[0]


@pytest.fixture(scope="module")
def sample_pdf() -> bytes:
    return PDF.render_episode(
        episode(
            scene(
                "hydroponics bay",
                action("Luna waters a tomato the size of a beach ball."),
                line("Ricky", "Lucy, what is that?", parenthetical="stunned"),
                line("Luna", "A tomato. A big one.", extension="V.O."),
                transition("cut to:"),
                number=12,
            ),
            scene("airlock", action("Empty."), placement=episode_pb2.PLACEMENT_EXT),
        )
    ).data


def test_us_letter_courier_and_a_title_page(sample_pdf: bytes) -> None:
    reader = read(sample_pdf)
    assert len(reader.pages) == 2  # Title page and one body page.
    for page in reader.pages:
        assert (float(page.mediabox.width), float(page.mediabox.height)) == (612.0, 792.0)
        assert font_names(page) == {"/Courier"}
    assert reader.metadata is not None and reader.metadata.title == "The Moon Rent"
    title = layout_lines(reader.pages[0])
    printed = [text.strip() for text in title if text.strip()]
    assert printed == [
        "THE MOON RENT",
        "Written by",
        "Doppelganger Studio (procedural)",
        'Based on "I Love Lucy"',
    ]
    heading = run(reader.pages[0], "THE MOON RENT")
    assert heading.x + 7.2 * len("THE MOON RENT") / 2 == pytest.approx(4.5 * INCH)  # Centred.
    assert 3.5 * INCH < 792 - heading.y < 4.5 * INCH  # About a third of the way down.


def test_elements_sit_at_the_standard_indents(sample_pdf: bytes) -> None:
    page = read(sample_pdf).pages[1]
    assert run(page, "INT. HYDROPONICS BAY - DAY").x == 1.5 * INCH
    assert run(page, "Luna waters a tomato the size of a beach ball.").x == 1.5 * INCH
    assert run(page, "RICKY").x == pytest.approx(3.7 * INCH)
    assert run(page, "(stunned)").x == pytest.approx(3.1 * INCH)
    assert run(page, "Lucy, what is that?").x == pytest.approx(2.5 * INCH)
    assert run(page, "LUNA (V.O.)").x == pytest.approx(3.7 * INCH)
    assert run(page, "CUT TO:").right == pytest.approx(7.5 * INCH)  # Flush right.
    numbers = [glyphs for glyphs in runs(page) if glyphs.text == "12"]
    assert round(numbers[0].right / INCH, 2) == 1.25  # Left margin.
    assert round(numbers[1].x / INCH, 2) == 7.75  # Right margin.
    top = run(page, "INT. HYDROPONICS BAY - DAY")
    assert 792 - top.y == pytest.approx(1 * INCH + 9)  # First line 1" from the top.


def test_layout_text_keeps_the_indents_in_characters(sample_pdf: bytes) -> None:
    lines = layout_lines(read(sample_pdf).pages[1])
    action_column = column(lines, "Luna waters a tomato the size of a beach ball.")
    assert lines[0].index("INT. HYDROPONICS BAY - DAY") == action_column
    assert column(lines, "RICKY") - action_column == 22  # 3.7" - 1.5"
    assert column(lines, "(stunned)") - action_column == 16  # 3.1"
    assert column(lines, "Lucy, what is that?") - action_column == 10  # 2.5"
    transition_line = next(text for text in lines if text.strip() == "CUT TO:")
    assert len(transition_line) - action_column == 60  # Ends at 7.5".
    assert "12  INT. HYDROPONICS BAY - DAY" in "\n".join(lines)


def forced_split() -> str:
    """50 lines of action, then a speech that cannot fit: it breaks after two lines."""
    speech = "\n".join(f"Line {i} of the speech." for i in range(10))
    return f"INT. LAB - DAY #1#\n\n{SIXTY}\n" + "\n".join([SIXTY] * 47) + f"\n\nRICKY\n{speech}\n"


def test_dialogue_broken_across_pages_gets_more_and_contd() -> None:
    screenplay = Screenplay.from_fountain(forced_split())
    assert screenplay.layout.page_count == 2
    pages = read(write_pdf(screenplay)).pages
    first, second = (layout_lines(page) for page in pages)
    action_column = column(first, SIXTY)
    body = [text for text in first if text.strip()]
    assert [text.strip() for text in body[-4:]] == [
        "RICKY",
        "Line 0 of the speech.",
        "Line 1 of the speech.",
        "(MORE)",
    ]
    assert column(first, "(MORE)") - action_column == 22  # Under the cue.
    printed = [text for text in second if text.strip()]
    assert printed[0].strip() == "2." and printed[1].strip() == "RICKY (CONT'D)"
    assert [text.strip() for text in printed[2:]] == [
        f"Line {i} of the speech." for i in range(2, 10)
    ]
    # Exact positions (layout mode rounds 86.4 pt / 7.2 pt down to 11 columns here).
    assert run(pages[1], "RICKY (CONT'D)").x == pytest.approx(3.7 * INCH)
    assert run(pages[0], "(MORE)").x == pytest.approx(3.7 * INCH)


def test_pages_are_numbered_top_right_from_page_two() -> None:
    episode_message = generated_episode("seinfeld", scene_count=8, seed=4)
    document = PDF.render_episode(episode_message)
    reader = read(document.data)
    assert len(reader.pages) == document.page_count + 1 >= 4  # Title page not counted.
    _title, first, *rest = reader.pages
    assert not any(
        glyphs.text.endswith(".") and glyphs.text[:-1].isdigit() for glyphs in runs(first)
    )
    for number, page in enumerate(rest, start=2):
        label = run(page, f"{number}.")
        assert label.right == pytest.approx(7.5 * INCH)
        assert 792 - label.y == pytest.approx(0.5 * INCH + 9)
        assert max(glyphs.y for glyphs in runs(page)) == label.y  # Nothing above it.
    assert layout_lines(rest[0])[0].strip() == "2."


def test_body_pages_hold_at_most_55_lines_of_12_points() -> None:
    document = PDF.render_episode(generated_episode("cheers", scene_count=12, seed=8))
    first_baseline = 792 - INCH - 9
    last_rows = []
    for page in read(document.data).pages[1:]:
        body = sorted({g.y for g in runs(page) if g.y <= first_baseline})  # Not the number.
        rows = [(first_baseline - y) / 12 for y in body]
        assert all(row == pytest.approx(round(row)) for row in rows)  # On the 6-lines-an-inch grid.
        assert max(rows) <= 54
        last_rows.append(max(rows))
    assert len(last_rows) == document.page_count
    assert min(last_rows[:-1]) >= 45  # Pages are filled, not cut short.


def test_unicode_names_print_with_the_fallback_font() -> None:
    document = PDF.render_episode(
        episode(
            scene(
                "café",
                line("Zoë", "Ça va?"),
                line("Łukasz", "Dzień dobry."),
                line("李", "你好"),
            )
        )
    )
    reader = read(document.data)
    text = reader.pages[1].extract_text()
    for expected in ("CAFÉ", "ZOË", "Ça va?", "ŁUKASZ", "Dzień dobry."):
        assert expected in text
    names = font_names(reader.pages[1])
    assert "/Courier" in names and any(name.endswith("CourierPrime") for name in names)


def test_font_runs_switch_only_where_courier_lacks_the_glyph() -> None:
    assert font_runs("ZOË (V.O.)") == [("ZOË (V.O.)", "Courier")]
    assert [font for _, font in font_runs("ŁUKASZ")] == ["DoppelCourierPrime", "Courier"]
    assert "".join(text for text, _ in font_runs("a李b")) == "a李b"


def test_long_lines_wrap_inside_the_margins() -> None:
    word = "y" * 10_000
    document = PDF.render_episode(
        episode(scene("lab", action("words " * 1_600), action(word), line("Ricky", word)))
    )
    reader = read(document.data)
    assert len(reader.pages) == document.page_count + 1
    for page in reader.pages[1:]:
        for glyphs in runs(page):
            if glyphs.text.strip(".").isdigit():
                continue  # Page and scene numbers sit in the margins.
            assert glyphs.x >= 1.5 * INCH - 0.01 and glyphs.right <= 7.5 * INCH + 0.01


def test_output_is_deterministic_and_follows_the_content() -> None:
    first = PDF.render_episode(generated_episode("taxi", scene_count=3, seed=1))
    again = PDF.render_episode(generated_episode("taxi", scene_count=3, seed=1))
    other = PDF.render_episode(generated_episode("taxi", scene_count=3, seed=2))
    assert first.data == again.data
    assert first.content_hash != other.content_hash


def test_empty_and_huge_episodes_render() -> None:
    empty = PDF.render_episode(episode_pb2.Episode())
    assert empty.page_count == 0 and len(read(empty.data).pages) == 1  # The title page.
    hollow = PDF.render_scene(scene("void"))
    assert hollow.page_count == 1 and len(read(hollow.data).pages) == 1
    scenes = [
        scene(f"set {i}", action(f"Beat {i}."), line("Ricky", f"Line {i}.")) for i in range(200)
    ]
    big = PDF.render_episode(episode(*scenes))
    reader = read(big.data)
    assert len(reader.pages) == big.page_count + 1
    last = reader.pages[-1].extract_text()
    assert "Line 199." in last and "200" in last
    laid_out = Screenplay.from_fountain(render_episode(episode(*scenes))).layout
    assert big.page_count == laid_out.page_count
