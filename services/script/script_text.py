"""Reading a script: runtime estimates, whole-word patterns, and a scene as a list of lines.

A leaf on purpose: the validator (validation.py), its craft checks (checks/), the continuity pass
and the procedural writer all read scripts the same way, and none of them imports another to do
so. `SceneText` is a scene as the checks see it: every element with its index, its kind, its
speaker and its offset into the scene (the scene's own time base, "at 0:45"), and the scene's
card (its outline beat) when the outline has one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache

from doppelganger.v1 import episode_pb2

SPOKEN_WORDS_PER_MINUTE = 150.0
ACTION_BASE_SECONDS = 1.5  # an action line takes time to play even when it is short
ACTION_SECONDS_PER_WORD = 0.2

_WORD = re.compile(r"[\w']+")
# Extensions and parentheticals of a line heard, not seen: the speaker need not be in the room.
_UNSEEN_EXTENSIONS = re.compile(r"\b(?:O\.?S|O\.?C|V\.?O|OFF|FILTERED|PRE-?LAP|PHONE)\b", re.I)
_UNSEEN_ASIDES = re.compile(
    r"\b(?:phone|radio|intercom|comm|walkie|off(?:-| )?screen|from off|from the (?:other|next) "
    r"room|through the door|over the speaker)\b",
    re.IGNORECASE,
)


def dialogue_seconds(text: str) -> float:
    """Runtime estimate of a dialogue line: 150 words a minute."""
    return len(_WORD.findall(text)) * 60.0 / SPOKEN_WORDS_PER_MINUTE


def action_seconds(text: str) -> float:
    """Runtime estimate of an action line: a little slower than speech, never instant."""
    return ACTION_BASE_SECONDS + ACTION_SECONDS_PER_WORD * len(_WORD.findall(text))


def element_seconds(element: episode_pb2.ScriptElement) -> float:
    """Runtime estimate of one element (transitions take no time)."""
    kind = element.WhichOneof("element")
    if kind == "dialogue":
        return dialogue_seconds(element.dialogue.text)
    if kind == "action":
        return action_seconds(element.action.text)
    return 0.0


@lru_cache(maxsize=16384)
def word_pattern(phrase: str) -> re.Pattern[str]:
    """`phrase` as a whole word or words (compiled once; the `re` module's cache is small)."""
    return re.compile(rf"(?<!\w){re.escape(phrase)}(?!\w)")


@lru_cache(maxsize=4096)
def name_pattern(name: str) -> re.Pattern[str]:
    """A proper name as a whole word, as written or in capitals ("Luna", "LUNA"): the case of a
    name tells it from the common word ("Rose" the character, "a rose")."""
    forms = sorted({re.escape(name), re.escape(name.upper())}, key=len, reverse=True)
    return re.compile(rf"(?<![\w'-])(?:{'|'.join(forms)})(?![\w-])")


def mentions(text: str, name: str) -> bool:
    return bool(name) and name_pattern(name).search(text) is not None


def clock(seconds: float) -> str:
    """'0:45' for 45 seconds into a scene."""
    whole = max(0, round(seconds))
    return f"{whole // 60}:{whole % 60:02d}"


def beats_of(outline: episode_pb2.Outline) -> list[episode_pb2.Beat]:
    return [beat for act in outline.acts for beat in act.beats]


def has_card(beat: episode_pb2.Beat | None) -> bool:
    """Whether the beat carries a scene card (older outlines and imported scripts have none)."""
    if beat is None:
        return False
    return bool(
        beat.location
        or beat.characters
        or beat.entrances
        or beat.exits
        or beat.setups
        or beat.payoffs
        or beat.placement
    )


@dataclass(frozen=True)
class Line:
    """One element of a scene as the checks read it."""

    index: int  # into Scene.elements
    kind: str  # "action", "dialogue", "transition"
    text: str
    speaker: str = ""
    seen: bool = True  # False for a line heard, not seen (O.S., V.O., on the phone)
    offset: float = 0.0  # seconds into the scene when the element starts


@dataclass(frozen=True)
class SceneText:
    """A scene's elements in order, with its card."""

    scene: episode_pb2.Scene
    lines: tuple[Line, ...]
    card: episode_pb2.Beat | None

    @property
    def index(self) -> int:
        return self.scene.index

    @property
    def has_card(self) -> bool:
        return has_card(self.card)

    @property
    def dialogue(self) -> list[Line]:
        return [line for line in self.lines if line.kind == "dialogue"]

    @property
    def actions(self) -> list[Line]:
        return [line for line in self.lines if line.kind == "action"]

    @property
    def text(self) -> str:
        """Everything said and done in the scene, one element a line."""
        return "\n".join(line.text for line in self.lines if line.kind != "transition")

    def speakers(self) -> list[str]:
        return list(dict.fromkeys(line.speaker for line in self.dialogue if line.speaker))


def _is_seen(line: episode_pb2.DialogueLine) -> bool:
    if _UNSEEN_EXTENSIONS.search(line.extension):
        return False
    return _UNSEEN_ASIDES.search(line.parenthetical) is None


def read_scene(scene: episode_pb2.Scene, card: episode_pb2.Beat | None = None) -> SceneText:
    lines: list[Line] = []
    offset = 0.0
    for index, element in enumerate(scene.elements):
        kind = element.WhichOneof("element") or ""
        if kind == "dialogue":
            line = element.dialogue
            lines.append(
                Line(index, kind, line.text, line.character, _is_seen(line), round(offset, 1))
            )
        elif kind == "action":
            lines.append(Line(index, kind, element.action.text, offset=round(offset, 1)))
        elif kind == "transition":
            lines.append(Line(index, kind, element.transition.text, offset=round(offset, 1)))
        offset += element_seconds(element)
    return SceneText(scene, tuple(lines), card)


def read_episode(episode: episode_pb2.Episode) -> list[SceneText]:
    """Every scene of the episode with its card (the beat of the same scene_index)."""
    cards = {beat.scene_index: beat for beat in beats_of(episode.outline)}
    return [read_scene(scene, cards.get(scene.index)) for scene in episode.scenes]


def cast_names(cast: Iterable[episode_pb2.Character]) -> list[str]:
    return [character.name for character in cast if character.name]


def named_in(text: str, names: Sequence[str]) -> list[str]:
    """The names that occur in `text` (as proper names), in order of first occurrence."""
    found = sorted(
        (match.start(), name)
        for name in names
        if name and (match := name_pattern(name).search(text)) is not None
    )
    return list(dict.fromkeys(name for _, name in found))


def sentences(text: str) -> Iterator[str]:
    """The sentences of an action line (a rough split on end punctuation)."""
    for part in re.split(r"(?<=[.!?])\s+", text):
        if part.strip():
            yield part.strip()
