"""PDF in the standard screenplay layout, drawn with reportlab from our own paginator.

The pages come from `layout.layout_script` (the same pages that give every format its page
count), so (MORE) / (CONT'D), headings kept with what follows and 55 lines a page are decided in
one place. This module only places each line: US Letter, Courier 12 pt (10 characters an inch, 6
lines an inch), action and headings at 1.5", dialogue 2.5", parenthetical 3.1", character cue
3.7", transitions flush right at 7.5", scene numbers in both margins, page numbers ("2.") top
right from page 2, and a title page that is not numbered.

Revisions: every line of a changed paragraph gets an asterisk at 7.75" in the right margin (on a
heading line, one column after its scene number), and a revised page (one holding a mark) names
the newest set on it and its date in its header, left of the page number. With `page_colour`
(off by default) a revised page is also tinted that set's paper colour.

Text is drawn in the standard Courier font (one of the PDF base fonts: nothing embedded). Courier
covers Windows-1252; any other character (Ł, Ő, €...) is drawn from Courier Prime, the
screenwriting font that ships with `screenplain`, embedded as a subset and metric-compatible with
Courier, so columns stay aligned. Characters neither font has (CJK, emoji) print as the font's
missing-glyph box; the HTML and FDX versions keep them. Output is byte-identical for identical
input (reportlab's invariant mode: no timestamps or random ids).

Thread safety: the scene service renders PDFs on several worker threads at once, and reportlab
keeps one registered TTFont (with one parsed face) per font name for the whole process. What it
shares across documents is guarded here; see `SubsetLockedTTFont`.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import logging
import threading

from reportlab.lib.colors import HexColor
from reportlab.lib.pagesizes import LETTER
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from services.scene.layout import (
    CHARS_PER_INCH,
    GEOMETRY,
    LEFT_MARGIN_INCHES,
    LINES_PER_INCH,
    PAGE_NUMBER_TOP_INCHES,
    RIGHT_EDGE_INCHES,
    SCENE_NUMBER_RIGHT_INCHES,
    TOP_MARGIN_INCHES,
    Line,
    LineKind,
    Page,
    TitleLine,
    revision_mark_inches,
    title_page_lines,
)
from services.scene.screenplay import RevisionStyle, Screenplay

log = logging.getLogger(__name__)

MEDIA_TYPE = "application/pdf"
INCH = 72.0
FONT = "Courier"
FONT_SIZE = 12
CHAR_WIDTH = INCH / CHARS_PER_INCH  # 7.2 pt: Courier's advance at 12 pt.
LINE_HEIGHT = INCH / LINES_PER_INCH  # 12 pt.
BASELINE_DROP = 9.0  # From the top of a line to its baseline.
PAGE_HEIGHT = LETTER[1]
LEFT = LEFT_MARGIN_INCHES * INCH
RIGHT = RIGHT_EDGE_INCHES * INCH
LEFT_SCENE_NUMBER_END = LEFT - 0.25 * INCH  # Right-aligned in the left margin.
RIGHT_SCENE_NUMBER_START = SCENE_NUMBER_RIGHT_INCHES * INCH
REVISION_MARK = "*"
HEADER_GAP_CHARS = 6  # Between a revised page's header and the page number column's end.
# A longer header (validation keeps names shorter) is cut so it starts in the left margin.
HEADER_MAX_CHARS = int((RIGHT - LEFT_SCENE_NUMBER_END) / CHAR_WIDTH) - HEADER_GAP_CHARS
FALLBACK_FONT = "DoppelCourierPrime"
FALLBACK_FONT_FILE = ("screenplain.export", "courier_prime", "Courier Prime.ttf")


def write_pdf(screenplay: Screenplay, page_colour: bool = False) -> bytes:
    """The screenplay as PDF: title page (when it has one), then the numbered body pages;
    `page_colour` tints each revised page in its set's colour."""
    buffer = io.BytesIO()
    pdf = Canvas(
        buffer, pagesize=LETTER, invariant=True, pageCompression=True, initialFontName=FONT
    )
    pdf.setTitle(screenplay.title)
    pdf.setAuthor(screenplay.author)
    pdf.setCreator("Doppelganger Studio")
    drawn = False
    if screenplay.script.title_page:
        _draw_title_page(pdf, title_page_lines(screenplay.script.title_page))
        drawn = True
    for number, page in enumerate(screenplay.layout.pages, start=1):
        revision = screenplay.page_revision(page)
        if revision is not None and page_colour:
            _tint_page(pdf, revision.hex)
        _draw_body_page(pdf, page, number, revision)
        drawn = True
    if not drawn:  # A PDF needs a page; an empty script gets a blank one.
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def _draw_title_page(pdf: Canvas, lines: list[TitleLine]) -> None:
    for line in lines:
        width = len(line.text) * CHAR_WIDTH
        if line.align == "center":
            x = (LEFT + RIGHT - width) / 2
        elif line.align == "right":
            x = RIGHT - width
        else:
            x = LEFT
        y = _baseline(line.row)
        _draw_text(pdf, x, y, line.text)
        if line.underline:
            pdf.line(x, y - 2, x + width, y - 2)
    pdf.showPage()


def _draw_body_page(pdf: Canvas, page: Page, number: int, revision: RevisionStyle | None) -> None:
    top = PAGE_HEIGHT - PAGE_NUMBER_TOP_INCHES * INCH - BASELINE_DROP
    if revision is not None:
        header = revision.header[:HEADER_MAX_CHARS]
        _draw_text(pdf, RIGHT - (len(header) + HEADER_GAP_CHARS) * CHAR_WIDTH, top, header)
    if number > 1:
        label = f"{number}."
        _draw_text(pdf, RIGHT - len(label) * CHAR_WIDTH, top, label)
    for row, line in enumerate(page):
        if line.kind is LineKind.BLANK or not line.text:
            continue
        y = _baseline(row)
        # Left to right, so text extraction reads the line in order.
        if line.scene_number:
            width = len(line.scene_number) * CHAR_WIDTH
            _draw_text(pdf, LEFT_SCENE_NUMBER_END - width, y, line.scene_number)
        _draw_text(pdf, _line_x(line), y, line.text)
        if line.scene_number:
            _draw_text(pdf, RIGHT_SCENE_NUMBER_START, y, line.scene_number)
        if line.revision:
            _draw_text(pdf, revision_mark_x(line), y, REVISION_MARK)
    pdf.showPage()


def revision_mark_x(line: Line) -> float:
    """Where a changed line's asterisk goes, in points from the page's left edge."""
    return revision_mark_inches(line.scene_number) * INCH


def _tint_page(pdf: Canvas, hex_colour: str) -> None:
    """Fills the page with a revision set's paper colour, under everything drawn after it."""
    pdf.saveState()
    pdf.setFillColor(HexColor(hex_colour))
    pdf.rect(0, 0, LETTER[0], PAGE_HEIGHT, stroke=0, fill=1)
    pdf.restoreState()


def _baseline(row: int) -> float:
    return PAGE_HEIGHT - TOP_MARGIN_INCHES * INCH - row * LINE_HEIGHT - BASELINE_DROP


def _line_x(line: Line) -> float:
    """Where the line starts: its indent, flush right for transitions, centred for centred."""
    width = len(line.text) * CHAR_WIDTH
    if line.kind is LineKind.TRANSITION:
        return RIGHT - width
    if line.kind is LineKind.CENTERED:
        return (LEFT + RIGHT - width) / 2
    indent, _ = GEOMETRY[line.kind]
    return LEFT + indent * CHAR_WIDTH


def _draw_text(pdf: Canvas, x: float, y: float, content: str) -> None:
    """Draws `content` from (x, y), one character a column, switching fonts where needed.

    One text object a line: text extractors then keep every line apart."""
    text = pdf.beginText()
    for run, font in font_runs(content):
        text.setTextOrigin(x, y)  # Courier Prime's advance differs from 7.2 pt by 0.005 pt.
        text.setFont(font, FONT_SIZE)
        text.textOut(run)
        x += len(run) * CHAR_WIDTH
    pdf.drawText(text)


def font_runs(content: str) -> list[tuple[str, str]]:
    """`content` split into runs of one font: Courier where it has the glyph, else the
    fallback font."""
    if content.isascii():
        return [(content, FONT)]
    runs: list[tuple[str, str]] = []
    for char in content:
        font = FONT if _in_courier(char) else (_fallback_font() or FONT)
        if runs and runs[-1][1] == font:
            runs[-1] = (runs[-1][0] + char, font)
        else:
            runs.append((char, font))
    return runs


@functools.lru_cache(maxsize=4096)
def _in_courier(char: str) -> bool:
    """Courier (a PDF base font) is encoded as WinAnsi, which is Windows-1252."""
    try:
        char.encode("cp1252")
    except UnicodeEncodeError:
        return False
    return True


class SubsetLockedTTFont(TTFont):
    """A TTFont whose subsetting runs one document at a time.

    Why (reportlab 5.1, pdfbase/ttfonts.py): every document that uses a registered TTFont
    shares its one `TTFontFace`, and `TTFontFace.makeSubset` (called from `TTFont.addObjects`
    when a canvas is saved) walks composite glyphs with the face's single read cursor
    (`seek` / `skip` / `read_ushort` move `self._pos`). Two threads subsetting at once move each
    other's cursor: one reads component glyph ids from the wrong offset, and then fails on
    `glyphSet[glyphIdx]` (KeyError), on `glyphPos[...]` (IndexError), or silently embeds wrong
    glyphs. The rest of TTFont's per-document state lives in `TTFont.state`, a dict keyed by
    document: each thread reads and writes only its own document's entry, one dict operation
    at a time (atomic under the GIL). So the lock covers `addObjects` only (about 1% of a
    40-page episode's render, some 15% of a short scene dense with accents); drawing stays
    concurrent.
    """

    _subset_lock = threading.Lock()

    def addObjects(self, doc: object) -> None:
        with self._subset_lock:
            super().addObjects(doc)


_fallback_lock = threading.Lock()


@functools.cache
def _fallback_font() -> str | None:
    """Registers Courier Prime (shipped with screenplain) once; None when it cannot be loaded.

    Under a lock: two renders starting together must not register two font objects under one
    name (a document would then hold subsets in one and draw with the other)."""
    with _fallback_lock:
        if FALLBACK_FONT in pdfmetrics.getRegisteredFontNames():
            return FALLBACK_FONT
        package, *parts = FALLBACK_FONT_FILE
        try:
            resource = importlib.resources.files(package).joinpath(*parts)
            with importlib.resources.as_file(resource) as path:
                pdfmetrics.registerFont(SubsetLockedTTFont(FALLBACK_FONT, str(path)))
        except Exception as exc:  # A missing or unreadable font only costs glyphs, never the PDF.
            log.warning("fallback font unavailable (%s); non-Latin-1 text prints as boxes", exc)
            return None
        return FALLBACK_FONT


pdfmetrics.getFont(FONT)  # Registers Courier now rather than racing to on first use.
