"""Reading a writer's script into scenes, for ValidateEpisode: episode JSON and Fountain.

The scene service owns screenplay formats (rendering); services must not import each other, so
the script service keeps this minimal Fountain 1.1
reader of its own: title page, `# ACT` sections, scene headings (INT/EXT/EST/INT./EXT./I/E or a
forced `.`, with `#3A#` scene numbers; a forced `.OMITTED` heading is a cut scene and is skipped),
`= synopsis` lines as the scene's summary, action (forced `!` included), dialogue blocks (a cue in
capitals or forced with `@`, its extension, parentheticals and speech), transitions (`... TO:` or
forced `>`), boneyard and notes dropped. The `[[joke ID: pattern, role, score S]]` notes doppel
writes are read back as the scene's jokes. Speakers stay as the cue spells them (capitals); the
caller maps them onto a cast.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from google.protobuf import json_format

from doppelganger.v1 import episode_pb2
from services.script.script_text import element_seconds

FORMATS = ("fountain", "fdx", "json")
_ROLES = {
    "setup": episode_pb2.JOKE_ROLE_SETUP,
    "punchline": episode_pb2.JOKE_ROLE_PUNCHLINE,
    "callback": episode_pb2.JOKE_ROLE_CALLBACK,
}
_PLACEMENTS = (
    (
        re.compile(r"^(?:INT\.?/EXT|INT/EXT|I/E|EXT\.?/INT)\.?\s+", re.I),
        episode_pb2.PLACEMENT_INT_EXT,
    ),
    (re.compile(r"^INT\.?\s+", re.I), episode_pb2.PLACEMENT_INT),
    (re.compile(r"^(?:EXT|EST)\.?\s+", re.I), episode_pb2.PLACEMENT_EXT),
)
_HEADING = re.compile(r"^(?:INT|EXT|EST|INT\.?/EXT\.?|I/E)[ .]", re.IGNORECASE)
_SCENE_NUMBER = re.compile(r"(.*?)\s*#([\w\-.]+)#\s*$")
_TIME_WORDS = re.compile(
    r"\b(?:DAY|NIGHT|MORNING|AFTERNOON|EVENING|DAWN|DUSK|NOON|MIDDAY|MIDNIGHT|SUNSET|SUNRISE|"
    r"LATER|CONTINUOUS|SAME|MOMENTS?|NEXT|CONT'?D|FLASHBACK|PRESENT)\b"
)
_BONEYARD = re.compile(r"/\*.*?\*/", re.DOTALL)
_NOTE = re.compile(r"\[\[(.*?)\]\]", re.DOTALL)
_JOKE_NOTE = re.compile(
    r"^joke (\S+?):\s*([^,]*?)\s*(?:,\s*(setup|punchline|callback))?\s*(?:,\s*score ([\d.]+))?$"
)
_TITLE_KEY = re.compile(r"([^:]+):\s*(.*)")
_CUE = re.compile(r"^([^\W\d][\w .'\-*]*?)\s*((?:\([^()]*\)\s*)*)\^?$")


class ScriptReadError(ValueError):
    """The content cannot be read; the message names the field (`content`, `format`) and line."""


@dataclass
class _SceneDraft:
    heading: str
    line: int
    act: str
    label: str = ""
    summary: str = ""
    elements: list[episode_pb2.ScriptElement] = field(default_factory=list)
    notes: dict[int, list[str]] = field(default_factory=dict)  # element index -> joke notes


@dataclass
class ReadScript:
    """A script as read: its title and scenes (speakers as the file spells them)."""

    title: str
    scenes: list[episode_pb2.Scene]


def decode(content: bytes) -> str:
    """The content as text; binary or non-UTF-8 content is refused."""
    if not content.strip():
        raise ScriptReadError("content is empty")
    if b"\x00" in content:
        raise ScriptReadError("content is binary (it holds NUL bytes), not a script")
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ScriptReadError(f"content is not UTF-8 text (byte {exc.start})") from None


def detect_format(text: str, declared: str, file_name: str) -> str:
    """The format: as declared, else from the file name's extension, else from the content."""
    if declared:
        name = declared.strip().lower()
        if name not in FORMATS:
            raise ScriptReadError(f"format must be one of {', '.join(FORMATS)} (got {name[:20]!r})")
        return name
    suffix = file_name.rsplit(".", 1)[-1].lower() if "." in file_name else ""
    if suffix in ("fountain", "spmd", "txt"):
        return "fountain"
    if suffix in FORMATS:
        return suffix
    start = text.lstrip()[:200]
    if start.startswith("{"):
        return "json"
    if start.startswith("<?xml") or "<FinalDraft" in start:
        return "fdx"
    return "fountain"


def read_json(text: str) -> episode_pb2.Episode:
    """An episode in proto3 JSON (what `doppel generate` writes)."""
    try:
        return json_format.Parse(text, episode_pb2.Episode(), ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise ScriptReadError(f"content is not an episode in proto3 JSON: {exc}") from None


def _title_page(lines: list[str]) -> tuple[dict[str, str], int]:
    """The title page's keys and the line where the body starts."""
    if not lines or not _TITLE_KEY.fullmatch(lines[0]) or _HEADING.match(lines[0]):
        return {}, 0
    keys: dict[str, str] = {}
    for number, line in enumerate(lines):
        if not line.strip():
            return keys, number + 1
        if match := _TITLE_KEY.fullmatch(line):
            keys[match.group(1).strip().lower()] = match.group(2).strip()
    return keys, len(lines)


def _paragraphs(lines: list[str], start: int) -> list[tuple[int, list[str]]]:
    """(1-based line number, lines) of every paragraph of the body."""
    found: list[tuple[int, list[str]]] = []
    current: list[str] = []
    first = 0
    for number, line in enumerate([*lines[start:], ""], start=start + 1):
        if line.strip():
            if not current:
                first = number
            current.append(line.rstrip())
        elif current:
            found.append((first, current))
            current = []
    return found


def _heading(text: str) -> tuple[episode_pb2.Slugline, str]:
    """The slugline and the printed scene number of a heading line."""
    label = ""
    if match := _SCENE_NUMBER.match(text):
        text, label = match.group(1), match.group(2)
    text = text.strip().lstrip(".").strip().upper()
    placement = episode_pb2.PLACEMENT_UNSPECIFIED
    for pattern, value in _PLACEMENTS:
        if pattern.match(text):
            placement, text = value, pattern.sub("", text, count=1)
            break
    location, time_of_day = text.strip(), ""
    if " - " in text:
        head, _, tail = text.rpartition(" - ")
        if _TIME_WORDS.search(tail):
            location, time_of_day = head.strip(), tail.strip()
    slugline = episode_pb2.Slugline(placement=placement, location=location, time_of_day=time_of_day)
    return slugline, label


def _cue(line: str) -> tuple[str, str] | None:
    """(speaker, extension) when the line is a character cue."""
    forced = line.startswith("@")
    text = line[1:].strip() if forced else line.strip()
    match = _CUE.match(text)
    if match is None or (not forced and (text != text.upper() or _HEADING.match(text))):
        return None
    if not forced and not any(ch.isalpha() for ch in match.group(1)):
        return None
    extension = " ".join(group.strip() for group in re.findall(r"\(([^()]*)\)", match.group(2)))
    return match.group(1).strip(), extension


def _dialogue(lines: list[str]) -> episode_pb2.ScriptElement | None:
    cue = _cue(lines[0])
    if cue is None or len(lines) < 2:
        return None
    parenthetical = ""
    spoken: list[str] = []
    for line in lines[1:]:
        stripped = line.strip()
        if stripped.startswith("(") and stripped.endswith(")"):
            if not parenthetical and not spoken:
                parenthetical = stripped[1:-1].strip()
            continue
        spoken.append(stripped)
    return episode_pb2.ScriptElement(
        dialogue=episode_pb2.DialogueLine(
            character=cue[0], extension=cue[1], parenthetical=parenthetical, text="\n".join(spoken)
        )
    )


def _transition(line: str) -> episode_pb2.ScriptElement | None:
    stripped = line.strip()
    if stripped.startswith(">") and not stripped.endswith("<"):
        text = stripped[1:].strip().upper()
    elif stripped.endswith("TO:") and stripped == stripped.upper() and stripped[0].isalpha():
        text = stripped
    else:
        return None
    return episode_pb2.ScriptElement(transition=episode_pb2.Transition(text=text))


def _action(lines: list[str]) -> episode_pb2.ScriptElement:
    texts = [line.removeprefix("!").strip() for line in lines]
    texts = [
        text[1:-1].strip() if text.startswith(">") and text.endswith("<") else text
        for text in texts
    ]
    return episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=" ".join(texts)))


def _element(lines: list[str]) -> episode_pb2.ScriptElement:
    if lines[0].startswith("!"):
        return _action(lines)
    if len(lines) == 1 and (transition := _transition(lines[0])):
        return transition
    return _dialogue(lines) or _action(lines)


def _jokes(draft: _SceneDraft, index: int) -> list[episode_pb2.Joke]:
    jokes: list[episode_pb2.Joke] = []
    clock = 0.0
    for position, element in enumerate(draft.elements):
        clock += element_seconds(element)
        for note in draft.notes.get(position, []):
            match = _JOKE_NOTE.match(note.strip())
            if match is None or element.WhichOneof("element") != "dialogue":
                continue
            joke_id, pattern, role, score = match.groups()
            element.dialogue.joke_id = joke_id
            jokes.append(
                episode_pb2.Joke(
                    id=joke_id,
                    scene_index=index,
                    element_index=position,
                    pattern=pattern,
                    role=_ROLES.get(role or "", episode_pb2.JOKE_ROLE_PUNCHLINE),
                    score=float(score) if score else 0.0,
                    offset_seconds=round(clock, 1),
                )
            )
    return jokes


def _scene(draft: _SceneDraft, index: int) -> episode_pb2.Scene:
    slugline, _ = _heading(draft.heading)
    jokes = _jokes(draft, index)
    speakers = [e.dialogue.character for e in draft.elements if e.HasField("dialogue")]
    return episode_pb2.Scene(
        index=index,
        number=index + 1,
        number_label=draft.label if draft.label and draft.label != str(index + 1) else "",
        act=draft.act,
        slugline=slugline,
        summary=draft.summary,
        elements=draft.elements,
        jokes=jokes,
        characters=list(dict.fromkeys(speakers)),
        duration_seconds=round(sum(element_seconds(e) for e in draft.elements), 1),
    )


def read_fountain(text: str) -> ReadScript:
    """The scenes of a Fountain screenplay (see the module docstring)."""
    lines = _BONEYARD.sub("", text.replace("\r\n", "\n").replace("\r", "\n")).split("\n")
    keys, start = _title_page(lines)
    drafts: list[_SceneDraft] = []
    act = ""
    for number, paragraph in _paragraphs(lines, start):
        raw = "\n".join(paragraph)
        notes = [note.strip() for note in _NOTE.findall(raw)]
        cleaned = [line for line in _NOTE.sub("", raw).split("\n") if line.strip()]
        if not cleaned:
            continue
        first = cleaned[0].strip()
        if all(line.startswith("#") for line in cleaned):
            act = cleaned[-1].lstrip("#").strip().title()
            continue
        if first.startswith("=") and not re.fullmatch(r"={3,}", first):
            if drafts and not drafts[-1].elements:
                drafts[-1].summary = " ".join(line.lstrip("=").strip() for line in cleaned)
            continue
        if re.fullmatch(r"={3,}", first):
            continue
        forced = first.startswith(".") and not first.startswith("..")
        if len(cleaned) == 1 and (forced or _HEADING.match(first)):
            drafts.append(_SceneDraft(first, number, act))
            _, drafts[-1].label = _heading(first)
            continue
        element = _element(cleaned)
        if not drafts:
            if element.HasField("dialogue"):
                raise ScriptReadError(
                    f"content: line {number} is dialogue before the first scene heading "
                    "(INT. / EXT. ...): every line of a script belongs to a scene"
                )
            continue  # "FADE IN:" and the like
        draft = drafts[-1]
        draft.elements.append(element)
        if notes:
            draft.notes[len(draft.elements) - 1] = notes
    kept = [d for d in drafts if not d.heading.lstrip(".").upper().startswith("OMITTED")]
    if not kept:
        raise ScriptReadError("content has no scene heading (INT. / EXT. ...): not a screenplay")
    return ReadScript(keys.get("title", ""), [_scene(d, i) for i, d in enumerate(kept)])
