"""Reading rendered scripts back, for the render tests and the services' tests that render: the
HTML as a tree, PDF text runs and pages, Fountain parsed by screenplain and by us, the revision
marks each format carries."""

from __future__ import annotations

import contextlib
import io
import re
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser

import pypdf
import pytest
from screenplain.parsers import fountain as screenplain_fountain
from screenplain.types import Dialog, DualDialog, Slug

from doppelganger.v1 import library_pb2
from services.scene.fountain import (
    parse_fountain,
    split_cue,
)
from services.script import catalog


@dataclass
class Node:
    tag: str
    attrs: dict[str, str]
    children: list[Node | str] = field(default_factory=list)

    @property
    def classes(self) -> set[str]:
        return set(self.attrs.get("class", "").split())

    @property
    def text(self) -> str:
        return "".join(c if isinstance(c, str) else c.text for c in self.children)

    @property
    def own_text(self) -> str:
        """Text outside child elements (a heading without its scene numbers)."""
        return "".join(c for c in self.children if isinstance(c, str))

    def find_all(self, tag: str, cls: str = "") -> list[Node]:
        found = []
        for child in self.children:
            if isinstance(child, Node):
                if child.tag == tag and (not cls or cls in child.classes):
                    found.append(child)
                found += child.find_all(tag, cls)
        return found


def parse(data: bytes) -> TreeBuilder:
    builder = TreeBuilder()
    builder.feed(data.decode("utf-8"))
    builder.close()
    assert builder.stack == [builder.root], "unclosed elements"
    return builder


def runs(page: pypdf.PageObject) -> list[Glyphs]:
    found: list[Glyphs] = []

    def visit(text: str, cm: list[float], tm: list[float], *_: object) -> None:
        if text.strip():
            found.append(Glyphs(round(tm[4], 2), round(tm[5], 2), text.strip()))

    page.extract_text(visitor_text=visit)
    return found


SHOW_IDS = [show.id for show in catalog.load_shows()]


@dataclass(frozen=True)
class Structure:
    """What must survive a round trip: per scene, its number, speakers and lines of speech."""

    numbers: list[str]
    speakers: list[list[str]]
    spoken_lines: list[int]


def from_our_parser(text: str) -> Structure:
    scenes = parse_fountain(text).scenes
    return Structure(
        numbers=[s.number or "" for s in scenes],
        speakers=[[d.speaker for d in s.dialogue] for s in scenes],
        spoken_lines=[sum(len(d.text.splitlines()) for d in s.dialogue) for s in scenes],
    )


def from_screenplain(text: str) -> Structure:
    numbers: list[str] = []
    speakers: list[list[str]] = []
    spoken: list[int] = []
    for paragraph in screenplain_fountain.parse(io.StringIO(text)):
        if isinstance(paragraph, Slug):
            numbers.append(str(paragraph.scene_number or ""))
            speakers.append([])
            spoken.append(0)
            continue
        dialogues = [paragraph.left, paragraph.right] if isinstance(paragraph, DualDialog) else []
        for dialogue in [paragraph] if isinstance(paragraph, Dialog) else dialogues:
            speakers[-1].append(split_cue(str(dialogue.character))[0])
            spoken[-1] += sum(1 for is_parenthetical, _ in dialogue.blocks if not is_parenthetical)
    return Structure(numbers, speakers, spoken)


def pdf_pages(data: bytes) -> list[PdfPage]:
    """The body pages (the title page skipped) as lines of text, numbers and marks."""
    reader = pypdf.PdfReader(io.BytesIO(data))
    pages: list[PdfPage] = []
    for number, page in enumerate(reader.pages[1:], start=1):
        by_y: dict[float, PdfLine] = {}
        header = ""
        for glyphs in sorted(runs(page), key=lambda g: (-g.y, g.x)):
            if glyphs.y == pytest.approx(HEADER_BASELINE):
                if glyphs.text != f"{number}.":
                    header = glyphs.text
                continue
            printed = by_y.setdefault(glyphs.y, PdfLine(number, glyphs.y, "", [], []))
            if glyphs.text == "*" and glyphs.x > TEXT_RIGHT:
                printed.marks.append(glyphs.x)
            elif glyphs.x < TEXT_LEFT - 1 or glyphs.x > TEXT_RIGHT:
                printed.numbers.append((glyphs.x, glyphs.text))
            else:
                printed.text = (printed.text + " " + glyphs.text).strip()
        pages.append(PdfPage(header, [by_y[y] for y in sorted(by_y, reverse=True)]))
    return pages


def check_pdf_marks(data: bytes, comparison: library_pb2.DraftComparison, header: str) -> None:
    """Asterisks exactly on the changed lines (same baseline as the changed text, in the right
    margin, nowhere else), and the set's header on exactly the pages holding a mark."""
    pages = pdf_pages(data)
    marked: list[str] = []
    for page in pages:
        for printed in page.lines:
            assert len(printed.marks) <= 1
            if printed.marks:
                assert printed.text, f"a mark on a line without text: {printed}"
                right_numbers = [x for x, _ in printed.numbers if x > TEXT_RIGHT]
                expected_x = 7.75 * INCH
                if right_numbers:  # A heading: one column after its right scene number.
                    label = next(text for x, text in printed.numbers if x > TEXT_RIGHT)
                    expected_x = right_numbers[0] + (len(label) + 1) * 7.2
                assert printed.marks[0] == pytest.approx(expected_x)
                marked.append(printed.text)
        has_marks = any(printed.marks for printed in page.lines)
        assert page.header == (header if has_marks else ""), f"page {page.lines[0].page}"
    assert printed_words(marked) == changed_words(comparison)


def fdx_marked(root: ET.Element) -> list[ET.Element]:
    """The body's paragraphs carrying a RevisionID (on every run: none is partly marked)."""
    marked = []
    for paragraph in root.findall("Content/Paragraph"):
        ids = revision_ids(paragraph)
        assert len(ids) == 1, f"a paragraph partly marked: {ids}"
        if ids != {None}:
            marked.append(paragraph)
    return marked


def check_fdx_marks(data: bytes, comparison: library_pb2.DraftComparison) -> list[ET.Element]:
    """The <Paragraph>s carrying a RevisionID number exactly the changed paragraphs the
    comparison counts, and hold exactly their words; returns the Scene Heading paragraphs."""
    root = ET.fromstring(data)
    marked = fdx_marked(root)
    assert len(marked) == comparison.changed_paragraphs
    texts = ["".join(t.text or "" for t in p.findall("Text")) for p in marked]
    assert " ".join(texts).split() == changed_words(comparison)
    return [p for p in root.findall("Content/Paragraph") if p.get("Type") == "Scene Heading"]


def check_html_marks(data: bytes, comparison: library_pb2.DraftComparison, header: str) -> None:
    marked: list[str] = []
    for page in html_pages(data):
        revised = page.find_all("p", "revised")
        headers = [p.text for p in page.find_all("p", "revision-header")]
        assert headers == ([header] if revised else [])
        for printed in revised:
            assert printed.attrs["data-revision"] == "1"
            assert "background: #BFD7FF" in printed.attrs["style"]
            [mark] = printed.find_all("span", "revision-mark")
            assert mark.text == "*"
            marked.append(printed.own_text)
    assert printed_words(marked) == changed_words(comparison)


PHRASES = (
    "Zażółć gęślą jaźń.",  # Polish
    "Příliš žluťoučký kůň úpěl ďábelské ódy.",  # Czech
    "Árvíztűrő tükörfúrógép.",  # Hungarian
    "Öğretmen İstanbul'a gitti, çiçek getirdi.",  # Turkish
    "Înjurând pițigăiat, zoofobul comandă vexat whisky și tequila.",  # Romanian
    "Glāžšķūņa rūķīši dzērumā čiepj Baha koncertflīģeļu vākus.",  # Latvian
    "Įlinkdama fechtuotojo špaga sublykčiojusi pragręžė apvalų arbūzą.",  # Lithuanian
    "Ħaġa żgħira ċkejkna.",  # Maltese
    "Eĥoŝanĝo ĉiuĵaŭde.",  # Esperanto
    "Gŵr ŷd.",  # Welsh
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία.",  # Greek: boxes
    "Съешь же ещё этих мягких французских булок.",  # Russian: boxes
    "Tiếng Việt có dấu.",  # Vietnamese: partly boxes
)
NAMES = ("ŁUKASZ", "ŐRSÉG", "ŞEYMA", "ĒRIKS", "ĦANNA", "ĈEĤO", "ŴYN", "ŽOFIE")
LATIN_EXTENDED_A = "".join(chr(code) for code in range(0x100, 0x180))


@contextlib.contextmanager
def dense_thread_switching() -> Iterator[None]:
    """Threads switch every 10 µs instead of 5 ms, so the renders interleave inside reportlab's
    subsetting (a few hundred bytecodes) on every run, not once in a while."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(interval)


class TreeBuilder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Node("#document", {})
        self.stack = [self.root]
        self.doctype = ""

    def handle_decl(self, decl: str) -> None:
        self.doctype = decl

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID_TAGS:
            self.stack.append(node)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack[-1].tag == tag, f"</{tag}> closes <{self.stack[-1].tag}>"
        self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


@dataclass(frozen=True)
class Glyphs:
    """A run of text as drawn: left edge and baseline in points, and the text."""

    x: float
    y: float
    text: str

    @property
    def right(self) -> float:
        return self.x + 7.2 * len(self.text)


INCH = 72.0
HEADER_BASELINE = 792 - 0.5 * INCH - 9
TEXT_LEFT, TEXT_RIGHT = 1.5 * INCH, 7.5 * INCH


def changed_words(comparison: library_pb2.DraftComparison) -> list[str]:
    """The printed words of the changed paragraphs, in script order: what the marks must cover
    (a cue's text is the printed cue; a speech line's is the line alone)."""
    words: list[str] = []
    for diff in comparison.scenes:
        for paragraph in diff.paragraphs:
            if paragraph.change in CHANGED_KINDS:
                words += paragraph.text.split()
    return words


def printed_words(lines: list[str]) -> list[str]:
    """Words of printed lines, without what pagination adds: (MORE) and a repeated cue."""
    kept = [text for text in lines if text != "(MORE)" and not CONTINUED_RE.search(text)]
    return " ".join(kept).split()


@dataclass
class PdfLine:
    """One printed line of a body page: its text between the margins, its scene numbers, and
    the revision marks drawn on its baseline."""

    page: int  # 1-based body page.
    y: float
    text: str
    numbers: list[tuple[float, str]]
    marks: list[float]  # x of each asterisk in the right margin.


@dataclass
class PdfPage:
    header: str  # Text on the page-number line, left of the page number.
    lines: list[PdfLine]


def revision_ids(paragraph: ET.Element) -> set[str | None]:
    return {run.get("RevisionID") for run in paragraph.findall("Text")}


def html_pages(data: bytes) -> list[Node]:
    return [
        p for p in parse(data).root.find_all("section", "page") if "title-page" not in p.classes
    ]


VOID_TAGS = frozenset({"meta", "br", "link"})
CHANGED_KINDS = (library_pb2.CHANGE_KIND_CHANGED, library_pb2.CHANGE_KIND_ADDED)
CONTINUED_RE = re.compile(r"\(CONT'D\)$")
