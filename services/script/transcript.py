"""Reading a plain transcript ("NAME: line") into scenes, for AnalyzeShow.

Transcripts found or typed by a writer have no screenplay layout: a speaker's name, a colon and
what they say, one speech a line. A line that is a scene heading (INT./EXT. ...), a bracketed
scene note ("[Scene: Monk's Cafe]", "[Setting: the apartment, later]") or a rule (---, ***)
starts a new scene; the note's text is its location. A speech may run on over the following
lines until the next speaker. Other bracketed or parenthesised lines are stage directions
(action). A transcript without any scene marker is one scene. The result is the same
`ReadScript` the Fountain reader gives, so the analysis reads both alike.
"""

from __future__ import annotations

import re

from doppelganger.v1 import episode_pb2
from services.script.script_reader import ReadScript, ScriptReadError

__all__ = ["looks_like_transcript", "read_transcript"]

_SPEECH = re.compile(r"^\s*([A-Za-z][\w .'\-]{0,40}?)\s*(?:\(([^()]*)\))?\s*:\s+(\S.*)$")
_HEADING = re.compile(r"^\s*(?:INT|EXT|EST|INT\.?/EXT|I/E)[ .]", re.IGNORECASE)
_SCENE_NOTE = re.compile(r"^\s*\[\s*(?:scene|setting|location)\s*:\s*([^\]]+)\]\s*$", re.IGNORECASE)
_RULE = re.compile(r"^\s*(?:-{3,}|\*{3,}|={3,})\s*$")
_DIRECTION = re.compile(r"^\s*[\[(](.*)[\])]\s*$")
_NOT_SPEAKERS = frozenset({"scene", "note", "notes", "title", "written by", "teleplay", "story"})


def _location(note: str) -> str:
    """A scene note as a slugline location: 'Scene: Monk's Cafe, later' -> "MONK'S CAFE"."""
    text = re.split(r"[,;.]| - ", note, maxsplit=1)[0]
    return text.strip().upper()[:100]


def _speech(line: str) -> tuple[str, str, str] | None:
    """(speaker, parenthetical, text) of a 'NAME: line' line."""
    match = _SPEECH.match(line)
    if match is None or match.group(1).strip().lower() in _NOT_SPEAKERS:
        return None
    return match.group(1).strip(), (match.group(2) or "").strip(), match.group(3).strip()


def looks_like_transcript(text: str) -> bool:
    """Most non-blank lines are 'NAME: line' speeches (a Fountain script has almost none)."""
    lines = [line for line in text.splitlines()[:400] if line.strip()]
    speeches = sum(1 for line in lines if _speech(line))
    return bool(lines) and speeches >= max(2, len(lines) // 3)


def read_transcript(text: str) -> ReadScript:
    """The scenes of a transcript (see the module docstring); ScriptReadError without speech."""
    scenes: list[episode_pb2.Scene] = []
    current: episode_pb2.Scene | None = None
    speaking: episode_pb2.DialogueLine | None = None

    def start(location: str) -> episode_pb2.Scene:
        scene = episode_pb2.Scene(index=len(scenes), number=len(scenes) + 1)
        scene.slugline.location = location
        scenes.append(scene)
        return scene

    for raw in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        line = raw.strip()
        if not line:
            speaking = None
            continue
        heading = _HEADING.match(line)
        note = None if heading else _SCENE_NOTE.match(line)
        if heading or note:
            if note is not None:
                location = _location(note.group(1))
            else:
                location = re.sub(r"^\S+\s+", "", line.upper()).split(" - ")[0].strip()
            current, speaking = start(location), None
            continue
        if _RULE.match(line):
            current, speaking = None, None
            continue
        if (speech := _speech(line)) is not None:
            current = current or start("")
            speaker, parenthetical, said = speech
            element = current.elements.add()
            element.dialogue.character = speaker.upper()
            element.dialogue.parenthetical = parenthetical
            element.dialogue.text = said
            speaking = element.dialogue
            if element.dialogue.character not in current.characters:
                current.characters.append(element.dialogue.character)
            continue
        if speaking is not None and not _DIRECTION.match(line):
            speaking.text = f"{speaking.text} {line}"
            continue
        current = current or start("")
        direction = _DIRECTION.match(line)
        current.elements.add().action.text = direction.group(1).strip() if direction else line
    scenes = [scene for scene in scenes if scene.elements]
    if not any(e.HasField("dialogue") for scene in scenes for e in scene.elements):
        raise ScriptReadError("content has no 'NAME: line' speech: not a transcript")
    for index, scene in enumerate(scenes):
        scene.index, scene.number = index, index + 1
    return ReadScript("", scenes)
