"""Fountain 1.1: renders episodes and scenes, and parses Fountain back. Pure functions.

Rendering is deterministic for a given message. User text is normalised so it cannot change the
element it sits in: whitespace runs (tabs, control characters, U+2028...) collapse to one space,
`[[` and `/*` get a space inserted (Fountain has no escape for notes or boneyard, which would
swallow text), action lines that would read as another element are forced with `!`, cues that a
strict parser would not recognise (non-ASCII names, `CONT'D`) are forced with `@`, transitions not
ending in `TO:` are forced with `>`, headings without INT/EXT with `.`; a spoken line opening with
a bracketed aside gets the aside as a parenthetical line of its own.

Besides the printed script, the Fountain carries what a writers' room works with and print leaves
out: acts as `# ACT` sections, each scene's summary as a `= synopsis` under its heading, and a
`[[joke ID: pattern, role, score]]` note at the end of each line that carries a joke.

Locked scene numbers print as `#3A#`; an omitted scene is the forced heading `.OMITTED #6#` and
nothing else. Fountain has no revision syntax, so a printed paragraph changed in revision set N
(shared/printed.py: a heading, an action paragraph, a transition, or one line of a dialogue block:
its cue, a parenthetical, a line of speech) carries a `[[rev N Colour]]` note at the end of its
line (glued to a transition's `TO:`, which must end the line for screenplain); `parse_fountain`
reads it back as that element's or line's `revision`, every other parser drops it as a note.

The forcing rules are chosen so that `screenplain` (whose character cue pattern is ASCII only)
reads the output the same way as `parse_fountain`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from enum import StrEnum

from doppelganger.v1 import episode_pb2
from shared.printed import (
    CONTROL_RE,
    LINE_BREAK_RE,
    action_paragraphs,
    dialogue_parts,
)
from shared.revisions import printed_number

# Scene heading prefixes (Fountain 1.1), matched case-insensitively.
HEADING_RE = re.compile(r"^(?:INT|EXT|EST|INT\.?/EXT\.?|I/E)[ .]", re.IGNORECASE)
# A cue every Fountain parser recognises unforced (screenplain's pattern is this strict).
PLAIN_CUE_RE = re.compile(r"[A-Z][0-9A-Z ._\-']*(?: \([0-9A-Z. ]*\))?")
# Characters that force another element type at the start of a line.
FORCING_CHARS = frozenset("!@~.>#=")

NOTE_OPENER_RE = re.compile(r"\[(?=\[)")
BONEYARD_OPENER_RE = re.compile(r"/(?=\*)")

BONEYARD_RE = re.compile(r"/\*.*?\*/", re.DOTALL)
NOTE_RE = re.compile(r"\[\[.*?\]\]", re.DOTALL)
REVISION_NOTE_RE = re.compile(r"\[\[rev (\d{1,9})\b[^\]]*\]\]")
# What a scene number may hold in every Fountain parser (screenplain's `#([\w\-.]+)#`).
SCENE_LABEL_CHARS_RE = re.compile(r"[^0-9A-Za-z.\-]")
TITLE_KEY_RE = re.compile(r"([^:]+):\s*(.*)")
TITLE_CONTINUATION_RE = re.compile(r"(?:\s{3,}|\t)(.+)")
SCENE_NUMBER_RE = re.compile(r"(.*?)\s*#([\w\-.]+)#\s*$")
SECTION_RE = re.compile(r"^(#{1,6})\s*([^#].*)$")
CENTERED_RE = re.compile(r"\s*>\s*(.*?)\s*<\s*$")
PAGE_BREAK_RE = re.compile(r"^={3,}$")
CUE_SPLIT_RE = re.compile(r"^(.*?)\s*((?:\([^()]*\)\s*)*)$")
CUE_NAME_RE = re.compile(r"[^\W\d][\w .'\-*]*|\*[\w .'\-*]*")

PLACEMENTS = {
    episode_pb2.PLACEMENT_INT: "INT.",
    episode_pb2.PLACEMENT_EXT: "EXT.",
    episode_pb2.PLACEMENT_INT_EXT: "INT./EXT.",
}
ROLE_NAMES = {
    episode_pb2.JOKE_ROLE_SETUP: "setup",
    episode_pb2.JOKE_ROLE_PUNCHLINE: "punchline",
    episode_pb2.JOKE_ROLE_CALLBACK: "callback",
}
OMITTED = "OMITTED"
UNKNOWN_LOCATION = "UNSPECIFIED LOCATION"
HEADING_MARK = (-1, 1)  # (element index, part) of a scene's heading.


# --- Rendering -----------------------------------------------------------------------------------


def render_episode(episode: episode_pb2.Episode) -> str:
    """The whole episode: title page, then `# ACT` sections and scenes with their printed numbers
    (the locked label, else the number, else the position)."""
    blocks = [_title_page(episode)]
    colours = {revision_set.id: revision_set.color for revision_set in episode.revision.sets}
    current_act = ""
    for position, scene in enumerate(episode.scenes, start=1):
        act = _section_text(scene.act)
        if act and act != current_act:
            blocks.append(f"# {act}")
            current_act = act
        label = _scene_label(printed_number(scene, position)) or str(position)
        blocks.extend(_scene_blocks(scene, label, colours))
    return "\n\n".join(blocks) + "\n"


def render_scene(scene: episode_pb2.Scene, number: int | None = None) -> str:
    """One scene without title page; numbered `number`, else its locked label, else
    `scene.number`, else unnumbered."""
    if number is not None:
        label = str(number) if number > 0 else ""
    else:
        label = _scene_label(scene.number_label) or (str(scene.number) if scene.number > 0 else "")
    text = "\n\n".join(_scene_blocks(scene, label, {})) + "\n"
    # A first line with a colon would read as a title page; a leading blank line prevents it.
    return "\n" + text if ":" in text.partition("\n")[0] else text


def _title_page(episode: episode_pb2.Episode) -> str:
    """No `Draft date`: an episode carries no timestamp (pure content), and output is stable."""
    writer = _inline(episode.writer)
    lines = [
        f"Title: {_inline(episode.outline.title) or 'Untitled Episode'}",
        "Credit: Written by",
        f"Author: Doppelganger Studio ({writer})" if writer else "Author: Doppelganger Studio",
    ]
    if show := _inline(episode.show.title):
        lines.append(f'Source: Based on "{show}"')
    return "\n".join(lines)


def _scene_blocks(scene: episode_pb2.Scene, label: str, colours: dict[int, str]) -> list[str]:
    """Heading, the summary as a synopsis, then the elements; a joke's note ends its line, and
    a revision note ends each changed line. An omitted scene is its heading alone."""
    marks = _marks(scene)

    def revised(text: str, index: int, part: int, glue: str = " ") -> str:
        revision = max(marks.get((index, part), 0), marks.get((index, 0), 0))
        return text + glue + _revision_note(revision, colours) if revision > 0 else text

    if scene.omitted:
        heading = "." + OMITTED + (f" #{label}#" if label else "")
        return [revised(heading, *HEADING_MARK)]
    blocks = [revised(_heading(scene.slugline, label), *HEADING_MARK)]
    if summary := _inline(scene.summary):
        blocks.append(f"= {summary}")
    notes = _joke_notes(scene)
    for index, element in enumerate(scene.elements):
        kind = element.WhichOneof("element")
        if kind == "action":
            paragraphs = _action(element.action.text)
            if paragraphs and index in notes:
                paragraphs[-1] += " " + notes[index]
            blocks += [revised(text, index, part) for part, text in enumerate(paragraphs, 1)]
        elif kind == "dialogue":
            lines = _dialogue(element.dialogue)
            if index in notes:
                lines[-1] += " " + notes[index]
            marked = (revised(text, index, part) for part, text in enumerate(lines, 1))
            blocks.append("\n".join(marked))
        elif kind == "transition" and (transition := _transition(element.transition.text)):
            # No joke note, and the revision note glued on: a transition must end in "TO:".
            blocks.append(revised(transition, index, 1, glue=""))
    return blocks


def _marks(scene: episode_pb2.Scene) -> dict[tuple[int, int], int]:
    """(element index, part) -> the newest revision set marking it; part 0: the whole element."""
    marks: dict[tuple[int, int], int] = {}
    for mark in scene.revision_marks:
        key = (mark.element_index, mark.part)
        marks[key] = max(marks.get(key, 0), mark.revision_id)
    return marks


def _revision_note(revision: int, colours: dict[int, str]) -> str:
    """`[[rev 2 Pink]]`: the set's id (what the parser reads) and its colour (for people)."""
    colour = _inline(colours.get(revision, "")).replace("]", " ")
    return f"[[rev {revision} {colour}]]" if colour else f"[[rev {revision}]]"


def _scene_label(label: str) -> str:
    """The label without characters a Fountain scene number cannot hold (validation rejects
    them; this keeps a bad label from ending the heading early)."""
    return SCENE_LABEL_CHARS_RE.sub("", label)


def _joke_notes(scene: episode_pb2.Scene) -> dict[int, str]:
    """Element index -> `[[joke ID: pattern, role, score]]` notes for the jokes it carries."""
    notes: dict[int, list[str]] = {}
    for joke in scene.jokes:
        role = ROLE_NAMES.get(joke.role, "")
        parts = [_inline(joke.pattern), role, f"score {joke.score:.2f}"]
        text = f"joke {_inline(joke.id)}: " + ", ".join(part for part in parts if part)
        notes.setdefault(joke.element_index, []).append(f"[[{text.replace(']]', '] ]')}]]")
    return {index: " ".join(texts) for index, texts in notes.items()}


def _heading(slugline: episode_pb2.Slugline, label: str) -> str:
    location = _heading_part(slugline.location) or UNKNOWN_LOCATION
    time_of_day = _heading_part(slugline.time_of_day)
    placement = PLACEMENTS.get(slugline.placement, "")
    text = f"{placement} {location}" if placement else location
    if time_of_day:
        text += f" - {time_of_day}"
    if not HEADING_RE.match(text):
        text = "." + text.lstrip(".")
    return f"{text} #{label}#" if label else text


def _heading_part(text: str) -> str:
    """Upper case, without `#` (it would end the heading as a scene number)."""
    return _collapse(_inline(text).upper().replace("#", " "))


def _action(text: str) -> list[str]:
    """Action paragraphs (blank lines in the text separate them), forced with `!` where needed."""
    return [
        "\n".join(_force_action([_neutralise(line) for line in lines]))
        for lines in action_paragraphs(text)
    ]


def _force_action(lines: list[str]) -> list[str]:
    """`!` before lines that would otherwise read as another element.

    The first line of a paragraph decides its type: headings, all-capitals lines (cue or
    transition) are forced. Any line starting with a forcing character is forced too, for
    line-oriented parsers; parsers strip one `!` from every action line, so this round-trips.
    """
    forced = []
    for index, line in enumerate(lines):
        risky = line[0] in FORCING_CHARS or (
            index == 0 and (HEADING_RE.match(line) is not None or line == line.upper())
        )
        forced.append("!" + line if risky else line)
    return forced


def _dialogue(line: episode_pb2.DialogueLine) -> list[str]:
    """The block's lines: the cue (forced with `@` where a strict parser would miss it), then
    its parenthetical and speech lines (shared/printed.py), one part a line."""
    cue, *rest = (_neutralise(part.lines[0]) for part in dialogue_parts(line))
    if not PLAIN_CUE_RE.fullmatch(cue) or HEADING_RE.match(cue):
        cue = "@" + cue
    return [cue, *rest]


def _transition(text: str) -> str | None:
    transition = _inline(text).upper().rstrip("< ")
    if not transition:
        return None
    lead = transition[:-3]
    natural = (
        transition.endswith("TO:")
        and lead.isupper()
        and transition[0].isalpha()
        and not HEADING_RE.match(transition)
    )
    return transition if natural else f"> {transition}"


def _section_text(act: str) -> str:
    return _inline(act).upper().lstrip("# ")


def _lines(text: str) -> list[str]:
    """The text's lines, each with whitespace collapsed and notes/boneyard openers broken."""
    return [_neutralise(_collapse(CONTROL_RE.sub(" ", raw))) for raw in LINE_BREAK_RE.split(text)]


def _inline(text: str) -> str:
    """The text as one line."""
    return _collapse(" ".join(_lines(text)))


def _collapse(text: str) -> str:
    return " ".join(text.split())


def _neutralise(text: str) -> str:
    return BONEYARD_OPENER_RE.sub("/ ", NOTE_OPENER_RE.sub("[ ", text))


# --- Parsing -------------------------------------------------------------------------------------


class ElementKind(StrEnum):
    HEADING = "heading"
    ACTION = "action"
    CHARACTER = "character"
    PARENTHETICAL = "parenthetical"
    DIALOGUE = "dialogue"
    TRANSITION = "transition"
    CENTERED = "centered"
    LYRICS = "lyrics"
    SECTION = "section"
    SYNOPSIS = "synopsis"
    PAGE_BREAK = "page_break"


@dataclass(frozen=True)
class Element:
    """A non-dialogue element, or a line inside a dialogue block. `text` is as printed."""

    kind: ElementKind
    text: str
    scene_number: str | None = None  # Headings only.
    level: int = 0  # Sections only.
    # The revision set that last changed it (the newest `[[rev N]]` note on its lines); 0: none.
    revision: int = 0


@dataclass(frozen=True)
class DialogueBlock:
    """A cue and what follows it: parentheticals and dialogue lines, in order. Each line is
    revised on its own: the cue's revision is `cue_revision`, every part carries its own."""

    speaker: str  # Without extension, e.g. "ZOË".
    extension: str  # e.g. "V.O."; "" when none. Several groups are joined with a space.
    parts: tuple[Element, ...]
    dual: bool = False
    cue_revision: int = 0  # As Element.revision, for the cue line.

    @property
    def cue(self) -> str:
        return f"{self.speaker} ({self.extension})" if self.extension else self.speaker

    @property
    def parenthetical(self) -> str:
        """The first parenthetical, without brackets; "" when none."""
        for part in self.parts:
            if part.kind is ElementKind.PARENTHETICAL:
                return part.text[1:-1].strip()
        return ""

    @property
    def text(self) -> str:
        return "\n".join(p.text for p in self.parts if p.kind is ElementKind.DIALOGUE)


Block = Element | DialogueBlock


@dataclass(frozen=True)
class ParsedScene:
    heading: str  # Without the leading `.` of a forced heading and without the scene number.
    number: str | None  # Fountain scene numbers are strings ("12", "12A").
    blocks: tuple[Block, ...]

    @property
    def dialogue(self) -> list[DialogueBlock]:
        return [block for block in self.blocks if isinstance(block, DialogueBlock)]


@dataclass(frozen=True)
class ParsedScript:
    title_page: dict[str, str]  # Keys as written; repeated keys' values joined by newlines.
    blocks: tuple[Block, ...]  # The whole body in order, headings included.
    scenes: tuple[ParsedScene, ...]


def parse_fountain(text: str) -> ParsedScript:
    """Parses Fountain 1.1 (title page, body, scenes); notes and boneyard are dropped."""
    lines = [line.expandtabs(4) for line in LINE_BREAK_RE.split(BONEYARD_RE.sub("", text))]
    title_page, body = _parse_title_page(lines)
    blocks: list[Block] = []
    for paragraph, revisions in _paragraphs(body):
        classified = _classify(paragraph)
        blocks.extend(_revised(classified, revisions) if revisions else classified)
    return ParsedScript(title_page, tuple(blocks), _group_scenes(blocks))


def _parse_title_page(lines: list[str]) -> tuple[dict[str, str], list[str]]:
    """The title page and the body; no title page unless the very first line is `Key: value`."""
    end = lines.index("") if "" in lines else len(lines)
    values: dict[str, list[str]] = {}
    key = None
    for line in lines[:end]:
        continuation = TITLE_CONTINUATION_RE.fullmatch(line)
        match = TITLE_KEY_RE.fullmatch(line)
        if continuation and key is not None:
            values[key].append(continuation.group(1).strip())
        elif match:
            key = match.group(1).strip()
            values.setdefault(key, [])
            if match.group(2).strip():
                values[key].append(match.group(2).strip())
        else:
            return {}, lines
    if not values:
        return {}, lines
    return {k: "\n".join(v) for k, v in values.items()}, lines[end:]


def _is_blank(line: str) -> bool:
    """Fountain: a line of exactly two spaces is content (an intentional blank in dialogue)."""
    return line in ("", " ")


def _paragraphs(lines: list[str]) -> list[tuple[list[str], dict[int, int]]]:
    """The body's paragraphs without their notes, each with the newest revision set the
    `[[rev N]]` notes of each of its lines name (line index -> set; empty: none)."""
    paragraphs: list[tuple[list[str], dict[int, int]]] = []
    current: list[str] = []
    for line in [*lines, ""]:
        if not _is_blank(line):
            current.append(line)
            continue
        if current:
            joined, revisions = _without_notes("\n".join(current))
            if joined.strip():
                paragraphs.append((joined.split("\n"), revisions))
            current = []
    return paragraphs


def _without_notes(raw: str) -> tuple[str, dict[int, int]]:
    """`raw` without its notes, and the revision its `[[rev N]]` notes give each line (counted
    in the text without notes: a note spanning lines joins them)."""
    if "[[" not in raw:
        return raw, {}
    kept: list[str] = []
    revisions: dict[int, int] = {}
    line, position = 0, 0
    for note in NOTE_RE.finditer(raw):
        kept.append(raw[position : note.start()])
        line += kept[-1].count("\n")
        if revision := REVISION_NOTE_RE.fullmatch(note.group()):
            revisions[line] = max(revisions.get(line, 0), int(revision.group(1)))
        position = note.end()
    kept.append(raw[position:])
    return "".join(kept), revisions


def _revised(blocks: list[Block], revisions: dict[int, int]) -> list[Block]:
    """The paragraph's blocks with the revisions of their lines: a dialogue block's cue and each
    of its lines on their own, any other block the newest of its lines' (a paragraph of
    sections and synopses is a block a line)."""
    if len(blocks) == 1:
        block = blocks[0]
        if isinstance(block, DialogueBlock):
            parts = tuple(
                replace(part, revision=revisions.get(line, 0))
                for line, part in enumerate(block.parts, 1)
            )
            return [replace(block, parts=parts, cue_revision=revisions.get(0, 0))]
        return [replace(block, revision=max(revisions.values()))]
    return [
        replace(block, revision=revisions.get(line, 0)) if isinstance(block, Element) else block
        for line, block in enumerate(blocks)
    ]


def _classify(lines: list[str]) -> list[Block]:
    first = lines[0]
    single = len(lines) == 1
    if first.startswith("!"):
        return [_action_block(lines)]
    if single and PAGE_BREAK_RE.match(first.strip()):
        return [Element(ElementKind.PAGE_BREAK, "")]
    if all(line.startswith(("#", "=")) for line in lines):
        return [_outline_element(line) for line in lines]
    if single and (heading := _heading_element(first)):
        return [heading]
    if all(CENTERED_RE.match(line) for line in lines):
        texts = [m.group(1) for m in map(CENTERED_RE.match, lines) if m]
        return [Element(ElementKind.CENTERED, "\n".join(texts))]
    if first.startswith("~"):
        text = "\n".join(line.removeprefix("~").strip() for line in lines)
        return [Element(ElementKind.LYRICS, text)]
    if not single and (dialogue := _dialogue_block(lines)):
        return [dialogue]
    if single and (transition := _transition_element(first)):
        return [transition]
    return [_action_block(lines)]


def _action_block(lines: list[str]) -> Element:
    text = "\n".join(line.removeprefix("!").rstrip() for line in lines)
    return Element(ElementKind.ACTION, text)


def _outline_element(line: str) -> Element:
    match = SECTION_RE.match(line)
    if match:
        return Element(ElementKind.SECTION, match.group(2).strip(), level=len(match.group(1)))
    return Element(ElementKind.SYNOPSIS, line.lstrip("=").strip())


def _heading_element(line: str) -> Element | None:
    stripped = line.strip()
    forced = stripped.startswith(".") and stripped[1:2] not in ("", ".")
    if not forced and not HEADING_RE.match(stripped.upper()):
        return None
    text = stripped[1:].strip() if forced else stripped
    number = None
    if match := SCENE_NUMBER_RE.match(text):
        text, number = match.group(1), match.group(2)
    return Element(ElementKind.HEADING, text.upper(), scene_number=number)


def _dialogue_block(lines: list[str]) -> DialogueBlock | None:
    cue = lines[0]
    if cue.startswith("@") and len(cue.strip()) >= 2:
        cue = cue[1:]
    elif cue.endswith("  ") or not _is_natural_cue(cue):
        return None
    cue = cue.strip()
    dual = cue.endswith("^")
    speaker, extension = split_cue(cue.removesuffix("^").rstrip())
    parts = tuple(_dialogue_part(line.strip()) for line in lines[1:])
    return DialogueBlock(speaker, extension, parts, dual)


def _is_natural_cue(line: str) -> bool:
    name, _ = split_cue(line.strip().removesuffix("^").rstrip())
    return bool(CUE_NAME_RE.fullmatch(name)) and name == name.upper()


def split_cue(cue: str) -> tuple[str, str]:
    """('ZOË', 'V.O.') from 'ZOË (V.O.)'; trailing bracket groups are the extension."""
    match = CUE_SPLIT_RE.match(cue)
    if match is None:  # Unbalanced brackets: everything is the name.
        return cue.strip(), ""
    groups = re.findall(r"\(([^()]*)\)", match.group(2))
    return match.group(1).strip(), " ".join(group.strip() for group in groups)


def _dialogue_part(line: str) -> Element:
    if line.startswith("(") and line.endswith(")"):
        return Element(ElementKind.PARENTHETICAL, line)
    return Element(ElementKind.DIALOGUE, line)


def _transition_element(line: str) -> Element | None:
    stripped = line.strip()
    if stripped.startswith(">"):
        return Element(ElementKind.TRANSITION, stripped[1:].strip().upper())
    lead = stripped[:-3]
    if stripped.endswith("TO:") and lead.isupper():
        return Element(ElementKind.TRANSITION, stripped)
    return None


def _group_scenes(blocks: list[Block]) -> tuple[ParsedScene, ...]:
    scenes: list[ParsedScene] = []
    current: Element | None = None
    members: list[Block] = []
    for block in [*blocks, None]:
        is_heading = isinstance(block, Element) and block.kind is ElementKind.HEADING
        if block is None or is_heading:
            if current is not None:
                scenes.append(ParsedScene(current.text, current.scene_number, tuple(members)))
            current, members = (block if isinstance(block, Element) else None), []
        else:
            members.append(block)
    return tuple(scenes)
