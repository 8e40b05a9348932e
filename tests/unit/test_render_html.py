"""HTML: parsed back with html.parser into a small tree and checked for structure and style."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2
from services.scene.fountain import render_episode
from services.scene.html_page import write_html
from services.scene.render import HTML
from services.scene.screenplay import Screenplay
from testkit import action, episode, generated_episode, line, scene, transition
from tests.unit.render_checks import TreeBuilder, parse


@pytest.fixture(scope="module")
def sample() -> TreeBuilder:
    return parse(
        HTML.render_episode(
            episode(
                scene(
                    "hydroponics bay",
                    action("Luna waters a tomato the size of a beach ball."),
                    line("Ricky", "Lucy, what is that?", parenthetical="stunned"),
                    line("Zoë", "A tomato.", extension="V.O."),
                    transition("cut to:"),
                    number=12,
                ),
                scene("airlock", placement=episode_pb2.PLACEMENT_EXT),
            )
        ).data
    )


def test_a_complete_styled_printable_document(sample: TreeBuilder) -> None:
    assert sample.doctype.lower() == "doctype html"
    (html,) = sample.root.find_all("html")
    assert html.attrs["lang"] == "en"
    assert sample.root.find_all("meta")[0].attrs == {"charset": "utf-8"}
    assert sample.root.find_all("title")[0].text == "The Moon Rent"
    css = sample.root.find_all("style")[0].text
    assert "@page { size: 8.5in 11in; margin: 0; }" in css
    assert "@media print" in css and "break-after: page" in css
    assert "Courier" in css and "font-size: 12pt" in css
    assert not sample.root.find_all("script")


def test_pages_mirror_the_printed_layout(sample: TreeBuilder) -> None:
    title_page, page = sample.root.find_all("section", "page")
    assert "title-page" in title_page.classes
    title_lines = [p.text for p in title_page.find_all("p")]
    assert title_lines == [
        "THE MOON RENT",
        "Written by",
        "Doppelganger Studio (procedural)",
        'Based on "I Love Lucy"',
    ]
    assert page.attrs["id"] == "page-1" and not page.find_all("p", "page-number")
    blocks = [
        (sorted(d.classes - {"block"}), [p.text for p in d.find_all("p")])
        for d in page.find_all("div", "block")
    ]
    assert blocks == [
        (["heading"], ["12INT. HYDROPONICS BAY - DAY12"]),
        (["action"], ["Luna waters a tomato the size of a beach ball."]),
        (["speech"], ["RICKY", "(stunned)", "Lucy, what is that?"]),
        (["speech"], ["ZOË (V.O.)", "A tomato."]),
        (["transition"], ["CUT TO:"]),
        (["heading"], ["2EXT. AIRLOCK - DAY2"]),
    ]
    speech = page.find_all("div", "speech")[0]
    assert [sorted(p.classes) for p in speech.find_all("p")] == [
        ["character", "line"],
        ["line", "parenthetical"],
        ["dialogue", "line"],
    ]
    numbers = page.find_all("span", "scene-number")
    assert [(sorted(n.classes), n.text) for n in numbers[:2]] == [
        (["left", "scene-number"], "12"),
        (["right", "scene-number"], "12"),
    ]


def test_same_pages_and_lines_as_the_layout() -> None:
    generated = generated_episode("frasier", scene_count=10, seed=5)
    document = HTML.render_episode(generated)
    layout = Screenplay.from_fountain(render_episode(generated)).layout
    pages = parse(document.data).root.find_all("section", "page")[1:]
    assert len(pages) == document.page_count == layout.page_count >= 5
    for number, (page, laid_out) in enumerate(zip(pages, layout.pages, strict=True), start=1):
        assert page.attrs["data-page"] == str(number)
        labels = [p.text for p in page.find_all("p", "page-number")]
        assert labels == ([] if number == 1 else [f"{number}."])
        printed = [(p.own_text, sorted(p.classes - {"line"})) for p in page.find_all("p", "line")]
        assert printed == [(text, [kind.value]) for kind, text, *_ in laid_out if text]


def test_text_is_escaped() -> None:
    nasty = '<script>alert("x")</script> & <b>bold</b> \ufffe'
    data = HTML.render_scene(scene("lab", action(nasty), line("Ricky & <Co>", nasty))).data
    tree = parse(data)
    assert not tree.root.find_all("script") and not tree.root.find_all("b")
    texts = [p.text for p in tree.root.find_all("p", "line")]
    assert '<script>alert("x")</script> & <b>bold</b>' in texts
    assert "RICKY & <CO>" in texts
    assert b"&lt;script&gt;" in data and "\ufffe" not in data.decode("utf-8")


def test_forced_split_shows_more_and_contd() -> None:
    speech = "\n".join(f"Line {i} of the speech." for i in range(10))
    sixty = "x" * 59 + "."
    text = "INT. LAB - DAY\n\n" + "\n".join([sixty] * 48) + f"\n\nRICKY\n{speech}\n"
    first, second = parse(write_html(Screenplay.from_fountain(text))).root.find_all("section")
    assert first.find_all("p", "more")[0].text == "(MORE)"
    assert second.find_all("p", "character")[0].text == "RICKY (CONT'D)"
    assert second.find_all("p", "page-number")[0].text == "2."


def test_empty_scene_and_empty_episode() -> None:
    hollow = parse(HTML.render_scene(scene("void")).data)
    (page,) = hollow.root.find_all("section", "page")
    assert [p.text for p in page.find_all("p")] == ["INT. VOID - DAY"]
    empty = parse(HTML.render_episode(episode_pb2.Episode()).data)
    (title_page,) = empty.root.find_all("section", "page")
    assert "title-page" in title_page.classes
