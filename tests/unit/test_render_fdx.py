"""FDX (Final Draft XML): parsed back as XML, element by element."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pytest
from screenplain.export.fdx import to_fdx
from screenplain.parsers import fountain as screenplain_fountain

from doppelganger.v1 import episode_pb2
from services.scene.fountain import render_episode
from services.scene.render import FDX
from testkit import action, episode, generated_episode, line, scene, transition
from tests.unit.render_checks import SHOW_IDS


def parse(data: bytes) -> ET.Element:
    assert data.startswith(b'<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n')
    return ET.fromstring(data)


def paragraphs(content: ET.Element) -> list[tuple[str, str]]:
    """(Type, text) of each paragraph, its Text runs joined."""
    return [
        (p.get("Type", ""), "".join(t.text or "" for t in p.findall("Text")))
        for p in content.findall("Paragraph")
    ]


@pytest.fixture(scope="module")
def sample() -> ET.Element:
    return parse(
        FDX.render_episode(
            episode(
                scene(
                    "hydroponics bay",
                    action("Luna waters a tomato.\nIt is enormous."),
                    line("Ricky", "Lucy, what is that?", parenthetical="stunned"),
                    line("Zoë", "A tomato.\nA big one.", extension="V.O."),
                    transition("cut to:"),
                    act="Act One",
                    number=12,
                ),
                scene("airlock", placement=episode_pb2.PLACEMENT_EXT, act="Act Two"),
            )
        ).data
    )


def test_root_is_a_final_draft_script(sample: ET.Element) -> None:
    assert sample.tag == "FinalDraft"
    assert sample.attrib == {"DocumentType": "Script", "Template": "No", "Version": "5"}
    assert [child.tag for child in sample] == ["Content", "TitlePage"]


def test_body_paragraphs_have_the_final_draft_types(sample: ET.Element) -> None:
    content = sample.find("Content")
    assert content is not None
    assert paragraphs(content) == [
        ("Scene Heading", "INT. HYDROPONICS BAY - DAY"),
        ("Action", "Luna waters a tomato.\nIt is enormous."),
        ("Character", "RICKY"),
        ("Parenthetical", "(stunned)"),
        ("Dialogue", "Lucy, what is that?"),
        ("Character", "ZOË (V.O.)"),
        ("Dialogue", "A tomato."),
        ("Dialogue", "A big one."),
        ("Transition", "CUT TO:"),
        ("Scene Heading", "EXT. AIRLOCK - DAY"),
    ]  # Acts (Fountain sections) are not printed, so they are not paragraphs.
    numbers = [p.get("Number") for p in content if p.get("Type") == "Scene Heading"]
    assert numbers == ["12", "2"]
    assert all(len(p.findall("Text")) >= 1 for p in content)


def test_title_page_is_laid_out_with_centred_paragraphs(sample: ET.Element) -> None:
    title_content = sample.find("TitlePage/Content")
    assert title_content is not None
    printed = [
        (p.get("Alignment"), text)
        for p, (_, text) in zip(title_content, paragraphs(title_content), strict=True)
        if text
    ]
    assert printed == [
        ("Center", "THE MOON RENT"),
        ("Center", "Written by"),
        ("Center", "Doppelganger Studio (procedural)"),
        ("Center", 'Based on "I Love Lucy"'),
    ]
    title_run = title_content.find("Paragraph/Text[.='THE MOON RENT']")
    assert title_run is not None and title_run.get("Style") == "Underline"
    # Blank paragraphs put the title about a third of the way down, as on the PDF.
    texts = [text for _, text in paragraphs(title_content)]
    assert texts.index("THE MOON RENT") == 18


def test_text_is_escaped_and_xml_safe() -> None:
    nasty = 'Ricky & Lucy <b>"quoted"</b> ]]> \ufffe\uffff end'
    data = FDX.render_scene(scene("lab", action(nasty), line("Ricky", nasty))).data
    content = parse(data).find("Content")
    assert content is not None
    texts = [text for _, text in paragraphs(content)]
    assert texts[1] == texts[3] == 'Ricky & Lucy <b>"quoted"</b> ]]> end'
    assert b"<b>" not in data and b"&lt;b&gt;" in data


@pytest.mark.parametrize("show_id", SHOW_IDS)
def test_paragraphs_match_screenplains_own_fdx_of_our_fountain(show_id: str) -> None:
    """screenplain reads our Fountain and writes its FDX; ours has the same paragraphs."""
    generated = generated_episode(show_id, scene_count=8, seed=11)
    ours = parse(FDX.render_episode(generated).data).find("Content")
    out = io.StringIO()
    to_fdx(screenplain_fountain.parse(io.StringIO(render_episode(generated))), out)
    theirs = ET.fromstring(out.getvalue().encode("utf-8")).find("Content")
    assert ours is not None and theirs is not None
    assert paragraphs(ours) == paragraphs(theirs)
    kinds = {kind for kind, _ in paragraphs(ours)}
    assert {"Scene Heading", "Action", "Character", "Dialogue", "Transition"} <= kinds


def test_two_hundred_scenes_and_empty_ones() -> None:
    scenes = [scene(f"set {i}", line("Ricky", f"Line {i}.")) for i in range(199)]
    content = parse(FDX.render_episode(episode(*scenes, scene("void"))).data).find("Content")
    assert content is not None
    headings = [p for p in content if p.get("Type") == "Scene Heading"]
    assert len(headings) == 200 and headings[-1].get("Number") == "200"
    assert paragraphs(content)[-1] == ("Scene Heading", "INT. VOID - DAY")
    empty = parse(FDX.render_episode(episode_pb2.Episode()).data).find("Content")
    assert empty is not None and len(empty) == 0
