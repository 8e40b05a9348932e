"""What each script element prints, paragraph by paragraph. Pure.

One definition shared by the Fountain renderer (services/scene/fountain.py), which prints the
paragraphs, and the draft comparison (screenplay_diff.py), which compares and marks them: a
revision mark names an element and one of its parts (RevisionMark.part), so both must agree on
the parts, or a mark would land on the wrong line and FDX would count other paragraphs than the
comparison.

Text is taken as the page shows it: control characters are spaces and whitespace runs one space,
so text that prints nothing is no paragraph. An element's parts, numbered from 1 in print order:
- action: each run of non-blank lines (a blank line parts two paragraphs);
- dialogue: the cue (speaker in capitals, its extension in brackets), the parenthetical, then
  each line of speech; a line opening with a bracketed aside prints the aside as a parenthetical
  line of its own (an unclosed one as `[`); a speech with nothing to say prints "..." unless it
  has a parenthetical;
- transition: its text in capitals without a trailing `<`, when there is any.
Fountain's own escaping (forcing characters, broken note openers) is the renderer's business and
changes no part.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from doppelganger.v1 import episode_pb2

# Characters printed as a space: control characters, and the two noncharacters XML cannot hold.
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff]")
LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
UNKNOWN_SPEAKER = "UNKNOWN"
SILENT_LINE = "..."
ACTION, CHARACTER, PARENTHETICAL, DIALOGUE, TRANSITION = (
    "action",
    "character",
    "parenthetical",
    "dialogue",
    "transition",
)


class Part(NamedTuple):
    """One printed paragraph of an element: what prints it, and its lines as printed."""

    kind: str  # ACTION, CHARACTER (a cue), PARENTHETICAL, DIALOGUE (a line of speech), TRANSITION.
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return " ".join(self.lines)


def element_parts(element: episode_pb2.ScriptElement) -> list[Part]:
    """The element's printed paragraphs in order (RevisionMark.part k is the k-th)."""
    kind = element.WhichOneof("element")
    if kind == "action":
        return [Part(ACTION, lines) for lines in action_paragraphs(element.action.text)]
    if kind == "dialogue":
        return dialogue_parts(element.dialogue)
    if kind == "transition" and (text := transition_text(element.transition.text)):
        return [Part(TRANSITION, (text,))]
    return []


def speaker(line: episode_pb2.DialogueLine) -> str:
    """The speaker as the cue prints it (capitals; a trailing `^` would read as dual dialogue)."""
    return inline(line.character).upper().rstrip("^ ") or UNKNOWN_SPEAKER


def dialogue_parts(line: episode_pb2.DialogueLine) -> list[Part]:
    extension = collapse(inline(line.extension).upper().replace("(", " ").replace(")", " "))
    name = speaker(line)
    parts = [Part(CHARACTER, (f"{name} ({extension})" if extension else name,))]
    parenthetical = inline(line.parenthetical)
    if parenthetical.startswith("(") and parenthetical.endswith(")"):
        parenthetical = parenthetical[1:-1].strip()
    if parenthetical:
        parts.append(Part(PARENTHETICAL, (f"({parenthetical})",)))
    spoken = spoken_lines(line.text) or ([] if parenthetical else [SILENT_LINE])
    parts += [Part(PARENTHETICAL if s.startswith("(") else DIALOGUE, (s,)) for s in spoken]
    return parts


def action_paragraphs(text: str) -> list[tuple[str, ...]]:
    """The action's paragraphs, each its non-blank lines."""
    paragraphs: list[list[str]] = [[]]
    for line in lines(text):
        if line:
            paragraphs[-1].append(line)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [tuple(paragraph) for paragraph in paragraphs if paragraph]


def spoken_lines(text: str) -> list[str]:
    """The speech's lines. A line opening with `(` would read as a parenthetical (in screenplain,
    so would the lines after it until one ends with `)`): a leading `(...)` becomes a line of its
    own, and an unclosed leading `(` becomes `[`."""
    spoken: list[str] = []
    for text_line in lines(text):
        rest = text_line
        while rest.startswith("("):
            close = rest.find(")")
            if close < 0:
                rest = "[" + rest[1:]
                break
            spoken.append(rest[: close + 1])
            rest = rest[close + 1 :].strip()
        if rest:
            spoken.append(rest)
    return spoken


def transition_text(text: str) -> str:
    """As printed: capitals, without a trailing `<` (it would read as centred text)."""
    return inline(text).upper().rstrip("< ")


def lines(text: str) -> list[str]:
    """The text's lines, control characters as spaces and whitespace collapsed ("" when blank)."""
    return [collapse(CONTROL_RE.sub(" ", raw)) for raw in LINE_BREAK_RE.split(text)]


def inline(text: str) -> str:
    """The text as one line."""
    return collapse(" ".join(lines(text)))


def collapse(text: str) -> str:
    return " ".join(text.split())
