"""Page layout of a Fountain script, for page counts and runtime estimates. Pure functions.

The layout follows the usual screenplay page (see REFERENCE.md, "Page layout"): US Letter,
Courier 12 pt at 10 characters an inch, 55 body lines a page. Widths in characters from the left
margin at 1.5": action and headings 60 (to 7.5"), cue from 3.7" (38), parenthetical 3.1" to 5.5"
(24, brackets included), dialogue 2.5" wide 3.5" (35), transitions 20 flush right at 7.5".

Rules: every element is word-wrapped (words longer than the width are broken; a parenthetical's
continuation lines start one column in, under its text); one blank line separates elements and is
dropped at the top of a page; sections and synopses are not printed; a scene heading is never the
last thing on a page (it moves over with the blank line and at least one line of what follows);
action splits between any two lines; dialogue splits only after a dialogue line that ends a
sentence (on a page of its own, after any dialogue line), with `(MORE)` at the bottom and the cue
repeated as `NAME (CONT'D)` on the next page, both counted; `===` starts a new page. Each
character counts as one column (wide East Asian characters are not doubled). Every line of a
paragraph changed in a revision set carries that set (`Line.revision`), so the formats mark it;
in a dialogue block the cue, each parenthetical and each line of speech are paragraphs of their
own. (MORE) and the (CONT'D) cue are marked when a changed passage runs on through the break
(the lines on both sides of it are marked), and the (CONT'D) cue also when the cue changed.

The title page is a page of its own but is not counted: `page_count` is the number of body pages
(the numbered pages), and the runtime estimate is one minute per body page.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple

from services.scene.fountain import (
    Block,
    DialogueBlock,
    Element,
    ElementKind,
    ParsedScript,
    parse_fountain,
)
from shared.revisions import MAX_LABEL_CHARS

LINES_PER_PAGE = 55
SECONDS_PER_PAGE = 60.0
# The printed page (PDF and HTML draw from these): US Letter, Courier 12 pt.
PAGE_WIDTH_INCHES = 8.5
PAGE_HEIGHT_INCHES = 11.0
LEFT_MARGIN_INCHES = 1.5  # Action and headings start here; GEOMETRY indents count from it.
RIGHT_EDGE_INCHES = 7.5  # Transitions and page numbers end here.
TOP_MARGIN_INCHES = 1.0
PAGE_NUMBER_TOP_INCHES = 0.5
CHARS_PER_INCH = 10
LINES_PER_INCH = 6
SCENE_NUMBER_RIGHT_INCHES = 7.75  # Right scene numbers start here (left ones end at 1.25").
REVISION_MARK_INCHES = 7.75  # A changed line's asterisk (FDX's <Revisions Location>).
MORE = "(MORE)"
# A line that ends a sentence: dialogue is broken across pages only there when it can be.
SENTENCE_END_RE = re.compile("[.!?\u2026:;\u2014][\"'\u201d\u2019)\\]]*\\s*$")
CONTINUED = "(CONT'D)"


class LineKind(StrEnum):
    HEADING = "heading"
    ACTION = "action"
    CHARACTER = "character"
    PARENTHETICAL = "parenthetical"
    DIALOGUE = "dialogue"
    TRANSITION = "transition"
    CENTERED = "centered"
    LYRICS = "lyrics"
    MORE = "more"
    BLANK = "blank"


# (indent from the 1.5" left margin, width), both in characters.
GEOMETRY: dict[LineKind, tuple[int, int]] = {
    LineKind.HEADING: (0, 60),
    LineKind.ACTION: (0, 60),
    LineKind.CENTERED: (0, 60),
    LineKind.LYRICS: (10, 35),
    LineKind.CHARACTER: (22, 38),
    LineKind.MORE: (22, 38),
    LineKind.PARENTHETICAL: (16, 24),
    LineKind.DIALOGUE: (10, 35),
    LineKind.TRANSITION: (40, 20),
    LineKind.BLANK: (0, 0),
}


class Line(NamedTuple):
    """One printed line (a tuple: cheap to build by the hundred thousand)."""

    kind: LineKind
    text: str
    scene_number: str = ""  # Set on the first line of a numbered scene heading only.
    revision: int = 0  # The revision set that changed its paragraph (0: none): it gets a mark.


Page = tuple[Line, ...]


@dataclass(frozen=True)
class Layout:
    pages: tuple[Page, ...]  # Body pages only.
    has_title_page: bool

    @property
    def page_count(self) -> int:
        """Numbered (body) pages; the title page is not counted."""
        return len(self.pages)

    @property
    def runtime_seconds(self) -> float:
        return runtime_seconds(self.page_count)


def revision_mark_inches(scene_number: str) -> float:
    """Where a changed line's asterisk starts, from the page's left edge: 7.75", or after the
    right scene number of a heading (one column after it while there is room on the page)."""
    if not scene_number:
        return REVISION_MARK_INCHES
    gap = 1 if len(scene_number) < MAX_LABEL_CHARS else 0
    return SCENE_NUMBER_RIGHT_INCHES + (len(scene_number) + gap) / CHARS_PER_INCH


def runtime_seconds(page_count: int) -> float:
    """One page is about one minute of screen time."""
    return page_count * SECONDS_PER_PAGE


def count_pages(script: ParsedScript | str) -> int:
    """Body pages of a parsed script or of Fountain text."""
    return layout_script(script).page_count


def layout_script(script: ParsedScript | str, lines_per_page: int = LINES_PER_PAGE) -> Layout:
    """Lays the body out into pages of `lines_per_page` lines."""
    parsed = parse_fountain(script) if isinstance(script, str) else script
    pager = _Pager(lines_per_page)
    printed = [block for block in parsed.blocks if _is_printed(block)]
    for index, block in enumerate(printed):
        if isinstance(block, DialogueBlock):
            pager.place_dialogue(block)
        elif block.kind is ElementKind.PAGE_BREAK:
            pager.break_page()
        elif block.kind is ElementKind.HEADING:
            pager.place_heading(_element_lines(block), followed=index + 1 < len(printed))
        else:
            pager.place_splittable(_element_lines(block))
    return Layout(pager.finish(), bool(parsed.title_page))


def wrap(text: str, width: int) -> list[str]:
    """Greedy word wrap of each line of `text`; over-long words are broken at `width`."""
    wrapped: list[str] = []
    for raw in text.split("\n"):
        if len(raw) <= width:  # The common case: nothing to wrap.
            wrapped.append(raw.strip())
            continue
        line = ""
        for word in raw.split():
            if line and len(line) + 1 + len(word) <= width:
                line += " " + word
                continue
            if line:
                wrapped.append(line)
            while len(word) > width:
                wrapped.append(word[:width])
                word = word[width:]
            line = word
        wrapped.append(line)
    return wrapped


def _is_printed(block: Block) -> bool:
    return isinstance(block, DialogueBlock) or block.kind not in (
        ElementKind.SECTION,
        ElementKind.SYNOPSIS,
    )


def _lines_of(kind: LineKind, text: str, revision: int = 0) -> list[Line]:
    width = GEOMETRY[kind][1]
    if kind is LineKind.PARENTHETICAL and text.startswith("(") and len(text) > width:
        return _hanging(kind, text, width, revision)
    return [Line(kind, line, "", revision) for line in wrap(text, width)]


def _hanging(kind: LineKind, text: str, width: int, revision: int) -> list[Line]:
    """A wrapped parenthetical: lines after the first start one column in, under its text."""
    first, *rest = wrap(text, width)
    rest = wrap(" ".join(rest), width - 1) if rest else []
    return [
        Line(kind, first, "", revision),
        *(Line(kind, " " + line, "", revision) for line in rest),
    ]


def _element_lines(element: Element, revision: int | None = None) -> list[Line]:
    """The element's lines, marked with `revision` (default: its own)."""
    revision = element.revision if revision is None else revision
    lines = _lines_of(LineKind(element.kind.value), element.text, revision)
    if element.scene_number and lines:
        lines[0] = lines[0]._replace(scene_number=element.scene_number)
    return lines


def _dialogue_body(block: DialogueBlock) -> list[Line]:
    """The block's parentheticals and speech, each line marked with its own part's revision."""
    body: list[Line] = []
    for part in block.parts:
        body.extend(_element_lines(part))
    return body


def _continued_cue(cue: str) -> str:
    return cue if CONTINUED in cue.upper() else f"{cue} {CONTINUED}"


class _Pager:
    """Fills pages line by line; the placing rules are in the module docstring."""

    def __init__(self, lines_per_page: int) -> None:
        self.size = lines_per_page
        self.pages: list[list[Line]] = [[]]

    @property
    def _page(self) -> list[Line]:
        return self.pages[-1]

    def _room(self) -> int:
        """Lines free for the next element, after its separating blank line."""
        gap = 1 if self._page else 0
        return self.size - len(self._page) - gap

    def _new_page(self) -> None:
        if self._page:
            self.pages.append([])

    def _put(self, lines: list[Line]) -> None:
        if self._page:
            self._page.append(Line(LineKind.BLANK, ""))
        self._page.extend(lines)

    def break_page(self) -> None:
        self._new_page()

    def place_heading(self, lines: list[Line], followed: bool) -> None:
        needed = len(lines) + (2 if followed else 0)
        if needed > self._room():
            self._new_page()
        self._put(lines)

    def place_splittable(self, lines: list[Line]) -> None:
        while lines:
            room = self._room()
            if room <= 0:
                self._new_page()
                continue
            self._put(lines[:room])
            lines = lines[room:]
            if lines:
                self._new_page()

    def place_dialogue(self, block: DialogueBlock) -> None:
        cue = _lines_of(LineKind.CHARACTER, block.cue, block.cue_revision)
        body = _dialogue_body(block)
        while True:
            room = self._room()
            if len(cue) + len(body) <= room:
                self._put(cue + body)
                return
            split = self._split_point(body, room - len(cue) - 1)
            if split == 0 and not self._page:  # Cannot split sensibly: fill line by line.
                self.place_splittable(cue + body)
                return
            if split > 0:
                before, after = body[split - 1].revision, body[split].revision
                runs_on = max(before, after) if before and after else 0
                self._put([*cue, *body[:split], Line(LineKind.MORE, MORE, "", runs_on)])
                body = body[split:]
                cue_revision = max(block.cue_revision, runs_on)
                cue = _lines_of(LineKind.CHARACTER, _continued_cue(block.cue), cue_revision)
            self._new_page()

    def _split_point(self, body: list[Line], room: int) -> int:
        """Body lines to keep on this page: the most that fit and end a sentence of dialogue,
        else (on an empty page only) the most that end a dialogue line; 0: move the block.

        On an empty page any split is accepted, so a block longer than a page always progresses.
        """
        limit = min(room, len(body) - 1)
        ends = [count for count in range(limit, 0, -1) if body[count - 1].kind is LineKind.DIALOGUE]
        for count in ends:
            if SENTENCE_END_RE.search(body[count - 1].text):
                return count
        if self._page:
            return 0
        return ends[0] if ends else max(limit, 0)

    def finish(self) -> tuple[Page, ...]:
        return tuple(tuple(page) for page in self.pages if page)


# --- Title page ----------------------------------------------------------------------------------

TITLE_ROW = 18  # The title sits about a third of the way down the page.
TITLE_WIDTH = 60
BOTTOM_LEFT_KEYS = ("contact", "notes", "copyright")
BOTTOM_RIGHT_KEYS = ("draft date", "date")
CENTRED_KEYS = ("title", "credit", "author", "authors", "source")
GAP_BEFORE = {"credit": 3, "author": 1, "authors": 1, "source": 3}


class TitleLine(NamedTuple):
    """One line of the title page on the same 55-line grid as body pages."""

    row: int
    text: str
    align: str  # "center", "left" or "right"
    underline: bool = False


def title_page_lines(title_page: Mapping[str, str]) -> list[TitleLine]:
    """Title, credit, author and source centred from `TITLE_ROW`; contact bottom left, draft
    date bottom right; any other key centred after the source. Lines that do not fit are cut
    (the full text stays in the Fountain and FDX versions)."""
    fields = {key.strip().lower(): value for key, value in title_page.items() if value.strip()}
    bottom_left = _title_block(fields, BOTTOM_LEFT_KEYS)
    bottom_right = _title_block(fields, BOTTOM_RIGHT_KEYS)
    bottom_row = LINES_PER_PAGE - max(len(bottom_left), len(bottom_right))
    placed = (*CENTRED_KEYS, *BOTTOM_LEFT_KEYS, *BOTTOM_RIGHT_KEYS)
    others = [key for key in fields if key not in placed]
    centred = [key for key in (*CENTRED_KEYS, *others) if key in fields]
    lines: list[TitleLine] = []
    row = TITLE_ROW
    for index, key in enumerate(centred):
        row += GAP_BEFORE.get(key, 1) if index else 0  # Blank lines before the field.
        text = fields[key].upper() if key == "title" else fields[key]
        for wrapped in wrap(text, TITLE_WIDTH):
            if row >= bottom_row - 1:
                break
            lines.append(TitleLine(row, wrapped, "center", underline=key == "title"))
            row += 1
    for block, align in ((bottom_left, "left"), (bottom_right, "right")):
        start = LINES_PER_PAGE - len(block)
        lines += [TitleLine(start + i, text, align) for i, text in enumerate(block) if text]
    return lines


def _title_block(fields: Mapping[str, str], keys: tuple[str, ...]) -> list[str]:
    """The wrapped lines of `keys` (a blank line between two of them), at most 12 lines."""
    block: list[str] = []
    for key in keys:
        if key in fields:
            block += ([""] if block else []) + wrap(fields[key], TITLE_WIDTH // 2)
    return block[:12]
