"""Final Draft XML (FDX), written with ElementTree from the parsed Fountain.

Root `<FinalDraft DocumentType="Script" Template="No" Version="5">` holding `<Content>` (the body)
and `<TitlePage>`. Each element is a `<Paragraph Type="...">` with one `<Text>` run a line:
Scene Heading (with `Number`, the scene number), Action (centred text with `Alignment="Center"`),
Character (the cue with its extension), Parenthetical, Dialogue (one paragraph a line of speech)
and Transition. A `===` page break sets `StartsNewPage="Yes"` on the next paragraph. Final Draft
paginates by itself, so dialogue is never split here and (MORE) / (CONT'D) are left to it.
Sections (acts), synopses and notes are not printed in a screenplay and are left out.

Revisions (see REFERENCE.md, "Revisions and production practice"): a draft with revision sets
gets `<Revisions ActiveSet=...>` after the title page, one `<Revision ID Name Color Mark="*"
...>` a set (colours as Final Draft writes them, 16 bits a channel: `#BFBFD7D7FFFF`), and every
`<Text>` run of a changed paragraph carries `RevisionID`. Each paragraph here is one printed
paragraph of shared/printed.py (a dialogue's cue, parenthetical and each line of speech are
paragraphs of their own, each marked on its own), so the paragraphs carrying a RevisionID number
exactly the changed paragraphs the draft comparison counts. Locked numbers are the heading's
`Number`; an omitted scene is a Scene Heading reading OMITTED with its number.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from services.scene.fountain import Block, DialogueBlock, Element, ElementKind
from services.scene.layout import title_page_lines
from services.scene.screenplay import RevisionStyle, Screenplay

MEDIA_TYPE = "application/xml"
FDX_VERSION = "5"
DECLARATION = '<?xml version="1.0" encoding="UTF-8" standalone="no" ?>\n'
# Characters XML 1.0 does not allow (the Fountain renderer already removes control characters).
NOT_XML_RE = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
PARAGRAPH_TYPES = {
    ElementKind.HEADING: "Scene Heading",
    ElementKind.ACTION: "Action",
    ElementKind.CENTERED: "Action",
    ElementKind.LYRICS: "Action",
    ElementKind.TRANSITION: "Transition",
    ElementKind.PARENTHETICAL: "Parenthetical",
    ElementKind.DIALOGUE: "Dialogue",
}
TITLE_INDENTS = {"LeftIndent": "1.00", "RightIndent": "7.50", "FirstIndent": "0.00"}
# The <Revisions> settings open exporters write: marks at 7.75", active set shown, no page colour.
REVISIONS_SETTINGS = {
    "Location": "7.75",
    "RevisionMode": "No",
    "RevisionsShown": "Active",
    "ShowAllMarks": "No",
    "ShowAllSets": "No",
    "ShowPageColor": "No",
}
REVISION_MARK = "*"
WHITE_PAGE = "#FFFFFFFFFFFF"


def write_fdx(screenplay: Screenplay) -> bytes:
    root = ET.Element(
        "FinalDraft", {"DocumentType": "Script", "Template": "No", "Version": FDX_VERSION}
    )
    _body(ET.SubElement(root, "Content"), screenplay.script.blocks)
    _title_page(ET.SubElement(ET.SubElement(root, "TitlePage"), "Content"), screenplay)
    if screenplay.revisions:
        _revisions(root, screenplay)
    ET.indent(root, space="  ")
    return (DECLARATION + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")


def _body(content: ET.Element, blocks: tuple[Block, ...]) -> None:
    new_page = False
    for block in blocks:
        if isinstance(block, DialogueBlock):
            first = _paragraph(content, "Character", block.cue, revision=block.cue_revision)
            for part in block.parts:
                _paragraph(content, PARAGRAPH_TYPES[part.kind], part.text, revision=part.revision)
        elif block.kind is ElementKind.PAGE_BREAK:
            new_page = True
            continue
        elif block.kind in PARAGRAPH_TYPES:
            first = _element_paragraph(content, block)
        else:  # Sections, synopses: not part of the printed script.
            continue
        if new_page:
            first.set("StartsNewPage", "Yes")
            new_page = False


def _element_paragraph(content: ET.Element, element: Element) -> ET.Element:
    paragraph = _paragraph(
        content, PARAGRAPH_TYPES[element.kind], element.text, revision=element.revision
    )
    if element.kind is ElementKind.HEADING and element.scene_number:
        paragraph.set("Number", _xml_text(element.scene_number))
    if element.kind is ElementKind.CENTERED:
        paragraph.set("Alignment", "Center")
    return paragraph


def _paragraph(
    parent: ET.Element,
    kind: str | None,
    text: str,
    revision: int = 0,
    attributes: Mapping[str, str] | None = None,
) -> ET.Element:
    """A paragraph with one Text run a line; every line but the last ends in a line break; each
    run of a changed paragraph names its revision set. Title page paragraphs have no type, only
    an alignment."""
    typed = {"Type": kind} if kind else {}
    paragraph = ET.SubElement(parent, "Paragraph", {**(attributes or {}), **typed})
    lines = text.split("\n")
    run_attributes = {"RevisionID": str(revision)} if revision > 0 else {}
    for index, line in enumerate(lines):
        run = ET.SubElement(paragraph, "Text", run_attributes)
        run.text = _xml_text(line) + ("\n" if index < len(lines) - 1 else "")
    return paragraph


def _revisions(root: ET.Element, screenplay: Screenplay) -> None:
    """`<Revisions>`: the active set and one `<Revision>` a set of the draft."""
    active = str(screenplay.active_revision)
    revisions = ET.SubElement(root, "Revisions", {"ActiveSet": active, **REVISIONS_SETTINGS})
    for style in screenplay.revisions:
        ET.SubElement(revisions, "Revision", _revision_attributes(style))


def _revision_attributes(style: RevisionStyle) -> dict[str, str]:
    return {
        "ID": str(style.id),
        "Name": _xml_text(style.name),
        "Color": fdx_colour(style.hex),
        "Mark": REVISION_MARK,
        "FullRevision": "No",
        "PageColor": WHITE_PAGE,
        "Style": "",
    }


def fdx_colour(hex_colour: str) -> str:
    """`#RRGGBB` as Final Draft writes colours, 16 bits a channel: `#BF` -> `#BFBF`."""
    channels = (hex_colour[1:3], hex_colour[3:5], hex_colour[5:7])
    return "#" + "".join(channel.upper() * 2 for channel in channels)


def _title_page(content: ET.Element, screenplay: Screenplay) -> None:
    """The title page as laid out for print: one paragraph a row, empty ones for blank rows."""
    row = 0
    for line in sorted(title_page_lines(screenplay.script.title_page)):
        while row < line.row:
            _paragraph(content, None, "", attributes={"Alignment": "Left", **TITLE_INDENTS})
            row += 1
        alignment = line.align.capitalize()
        attributes = {"Alignment": alignment, **TITLE_INDENTS}
        paragraph = _paragraph(content, None, line.text, attributes=attributes)
        if line.underline:
            for run in paragraph:
                run.set("Style", "Underline")
        row = max(row, line.row + 1)


def _xml_text(text: str) -> str:
    return NOT_XML_RE.sub("", text)
