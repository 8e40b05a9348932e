"""read_fdx: Final Draft XML read into the same scenes as the Fountain it was written from, errors
naming the line, and untrusted XML (DTDs, entities) refused."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2
from services.scene import fdx
from services.scene.screenplay import Screenplay
from services.script.fdx_reader import read_fdx
from services.script.script_reader import ScriptReadError, read_fountain

FOUNTAIN = """Title: The Airlock
Credit: Written by
Author: Doppelganger Studio (procedural)

# ACT ONE

INT. OBSERVATION DOME - MORNING #1#

The lights dim. LUX and RICO reach for the last algae loaf.

LUX
(whispering)
Hand me the rover key, Rico.
Carefully.

RICO (V.O.)
I'm fine. The floor broke my fall.

CUT TO:

EXT. CRATER RIM - NIGHT #2#

Echo waits, arms folded.

ECHO
Ay, ay, ay!
"""


def _without_jokes(scene: episode_pb2.Scene) -> list[episode_pb2.ScriptElement]:
    elements = []
    for element in scene.elements:
        copy = episode_pb2.ScriptElement()
        copy.CopyFrom(element)
        if copy.HasField("dialogue"):
            copy.dialogue.joke_id = ""
        elements.append(copy)
    return elements


def test_fdx_reads_as_the_fountain_it_was_written_from() -> None:
    document = fdx.write_fdx(Screenplay.from_fountain(FOUNTAIN)).decode()
    from_fdx = read_fdx(document)
    from_fountain = read_fountain(FOUNTAIN)
    assert from_fdx.title.lower() == "the airlock"
    assert len(from_fdx.scenes) == len(from_fountain.scenes) == 2
    for ours, theirs in zip(from_fdx.scenes, from_fountain.scenes, strict=True):
        assert ours.slugline == theirs.slugline
        assert _without_jokes(ours) == _without_jokes(theirs)
        assert ours.characters == theirs.characters
    first = from_fdx.scenes[0].elements[1].dialogue
    assert (first.character, first.parenthetical, first.text) == (
        "LUX",
        "whispering",
        "Hand me the rover key, Rico.\nCarefully.",
    )
    assert from_fdx.scenes[0].elements[2].dialogue.extension == "V.O."


def test_scene_numbers_and_omitted_scenes() -> None:
    document = """<?xml version="1.0" encoding="UTF-8"?>
<FinalDraft DocumentType="Script" Version="5">
  <Content>
    <Paragraph Type="Scene Heading" Number="3"><Text>INT. KITCHEN - DAY</Text></Paragraph>
    <Paragraph Type="Action"><Text>Lucy hides.</Text></Paragraph>
    <Paragraph Type="Scene Heading" Number="3A"><Text>OMITTED</Text></Paragraph>
    <Paragraph Type="Scene Heading" Number="4"><Text>EXT. YARD - NIGHT</Text></Paragraph>
    <Paragraph Type="Character"><Text>RICKY</Text></Paragraph>
    <Paragraph Type="Dialogue"><Text>Lucy!</Text></Paragraph>
  </Content>
</FinalDraft>"""
    script = read_fdx(document)
    assert [s.slugline.location for s in script.scenes] == ["KITCHEN", "YARD"]
    assert [s.number_label for s in script.scenes] == ["3", "4"]
    assert script.scenes[1].characters == ["RICKY"]


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("<?xml version='1.0'?>\n<FinalDraft>\n<Content>\n<Paragraph>", "line 4"),
        ("<Script><Content/></Script>", "not <FinalDraft>"),
        ("<FinalDraft>\n</FinalDraft>", "has no <Content>"),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">]>\n'
            "<FinalDraft><Content/></FinalDraft>",
            "DTD",
        ),
        (
            '<?xml version="1.0"?>\n<!DOCTYPE x SYSTEM "file:///etc/passwd">\n<FinalDraft/>',
            "DTD",
        ),
        (
            "<FinalDraft>\n<Content>\n"
            '<Paragraph Type="Character"><Text>LUCY</Text></Paragraph>\n'
            '<Paragraph Type="Dialogue"><Text>Hi</Text></Paragraph>\n</Content></FinalDraft>',
            "line 3 is dialogue before the first scene heading",
        ),
        (
            '<FinalDraft><Content><Paragraph Type="Action"><Text>Words.</Text></Paragraph>'
            "</Content></FinalDraft>",
            "no scene heading",
        ),
    ],
)
def test_unreadable_fdx_is_refused_naming_the_line(document: str, expected: str) -> None:
    with pytest.raises(ScriptReadError) as caught:
        read_fdx(document)
    assert expected in str(caught.value)
