"""Final Draft XML (FDX), written with ElementTree from the parsed Fountain.

Root `<FinalDraft DocumentType="Script" Template="No" Version="5">` holding `<Content>` (the body)
and `<TitlePage>`. Each element is a `<Paragraph Type="...">` with one `<Text>` run a line:
Scene Heading (with `Number`, the scene number), Action (centred text with `Alignment="Center"`),
Character (the cue with its extension), Parenthetical, Dialogue (one paragraph a line of speech)
and Transition. A `===` page break sets `StartsNewPage="Yes"` on the next paragraph. Final Draft
paginates by itself, so dialogue is never split here and (MORE) / (CONT'D) are left to it.
Sections (acts), synopses and notes are not printed in a screenplay and are left out.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from services.scene.fountain import Block, DialogueBlock, Element, ElementKind
from services.scene.layout import title_page_lines
from services.scene.screenplay import Screenplay

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


def write_fdx(screenplay: Screenplay) -> bytes:
    root = ET.Element(
        "FinalDraft", {"DocumentType": "Script", "Template": "No", "Version": FDX_VERSION}
    )
    _body(ET.SubElement(root, "Content"), screenplay.script.blocks)
    _title_page(ET.SubElement(ET.SubElement(root, "TitlePage"), "Content"), screenplay)
    ET.indent(root, space="  ")
    return (DECLARATION + ET.tostring(root, encoding="unicode") + "\n").encode("utf-8")


def _body(content: ET.Element, blocks: tuple[Block, ...]) -> None:
    new_page = False
    for block in blocks:
        if isinstance(block, DialogueBlock):
            first = _paragraph(content, "Character", block.cue)
            for part in block.parts:
                _paragraph(content, PARAGRAPH_TYPES[part.kind], part.text)
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
    paragraph = _paragraph(content, PARAGRAPH_TYPES[element.kind], element.text)
    if element.kind is ElementKind.HEADING and element.scene_number:
        paragraph.set("Number", _xml_text(element.scene_number))
    if element.kind is ElementKind.CENTERED:
        paragraph.set("Alignment", "Center")
    return paragraph


def _paragraph(parent: ET.Element, kind: str | None, text: str, **attributes: str) -> ET.Element:
    """A paragraph with one Text run a line; every line but the last ends in a line break.
    Title page paragraphs have no type, only an alignment."""
    typed = {"Type": kind} if kind else {}
    paragraph = ET.SubElement(parent, "Paragraph", {**attributes, **typed})
    lines = text.split("\n")
    for index, line in enumerate(lines):
        run = ET.SubElement(paragraph, "Text")
        run.text = _xml_text(line) + ("\n" if index < len(lines) - 1 else "")
    return paragraph


def _title_page(content: ET.Element, screenplay: Screenplay) -> None:
    """The title page as laid out for print: one paragraph a row, empty ones for blank rows."""
    row = 0
    for line in sorted(title_page_lines(screenplay.script.title_page)):
        while row < line.row:
            _paragraph(content, None, "", Alignment="Left", **TITLE_INDENTS)
            row += 1
        alignment = line.align.capitalize()
        paragraph = _paragraph(content, None, line.text, Alignment=alignment, **TITLE_INDENTS)
        if line.underline:
            for run in paragraph:
                run.set("Style", "Underline")
        row = max(row, line.row + 1)


def _xml_text(text: str) -> str:
    return NOT_XML_RE.sub("", text)
