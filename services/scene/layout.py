"""Page layout of a Fountain script, for page counts and runtime estimates. Pure functions.

The layout follows the usual screenplay page (see REFERENCE.md, "Page layout"): US Letter,
Courier 12 pt at 10 characters an inch, 55 body lines a page. Widths in characters from the left
margin at 1.5": action and headings 60 (to 7.5"), cue from 3.7" (38), parenthetical 3.1" to 5.5"
(24, brackets included), dialogue 2.5" wide 3.5" (35), transitions 20 flush right at 7.5".

Rules: every element is word-wrapped (words longer than the width are broken); one blank line
separates elements and is dropped at the top of a page; sections and synopses are not printed;
a scene heading is never the last thing on a page (it moves over with the blank line and at least
one line of what follows); action splits between any two lines; dialogue splits only after a
dialogue line, with `(MORE)` at the bottom and the cue repeated as `NAME (CONT'D)` on the next
page, both counted; `===` starts a new page. Each character counts as one column (wide East Asian
characters are not doubled).

The title page is a page of its own but is not counted: `page_count` is the number of body pages
(the numbered pages), and the runtime estimate is one minute per body page.
"""

from __future__ import annotations

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

LINES_PER_PAGE = 55
SECONDS_PER_PAGE = 60.0
MORE = "(MORE)"
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


def _lines_of(kind: LineKind, text: str) -> list[Line]:
    return [Line(kind, line) for line in wrap(text, GEOMETRY[kind][1])]


def _element_lines(element: Element) -> list[Line]:
    return _lines_of(LineKind(element.kind.value), element.text)


def _dialogue_body(block: DialogueBlock) -> list[Line]:
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
        cue = _lines_of(LineKind.CHARACTER, block.cue)
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
                self._put([*cue, *body[:split], Line(LineKind.MORE, MORE)])
                body = body[split:]
                cue = _lines_of(LineKind.CHARACTER, _continued_cue(block.cue))
            self._new_page()

    def _split_point(self, body: list[Line], room: int) -> int:
        """Body lines to keep on this page: the most that fit and end with dialogue (0: none).

        On an empty page any split is accepted, so a block longer than a page always progresses.
        """
        limit = min(room, len(body) - 1)
        for count in range(limit, 0, -1):
            if body[count - 1].kind is LineKind.DIALOGUE:
                return count
        return max(limit, 0) if not self._page else 0

    def finish(self) -> tuple[Page, ...]:
        return tuple(tuple(page) for page in self.pages if page)
