"""The continuity ledger: what the episode has established, scene by scene, and where a scene
contradicts it.

Scenes are drafted in parallel, each from its own card, so none of them has seen the others'
text. The ledger reads the draft in order, from the cards and the text: who is in the room at the
start and the end of each scene and who left (presence.py), which setups were planted and who was
there to hear them, which were paid off, and where the setting's props were last seen. A scene
that contradicts it gets notes in its own time base, for the writer's `revise_scene`:

- `absent_speaker`: "at 0:45, Luna speaks but left at 0:30 and has not re-entered"; across
  scenes when a scene continues the one before it (CONTINUOUS, in the same set) without a card
  of its own: "... but left in scene 3 and has not re-entered".
- `missing_payoff`: the card pays off a setup the text never mentions.
- `missing_setup`: the card plants a setup the text never mentions (a later scene needs it).
- `location`: the heading is not the card's place (location, INT/EXT).
- `time`: the heading says CONTINUOUS although the scene before played somewhere else, and the
  card gives the scene a time of its own.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from doppelganger.v1 import episode_pb2
from services.script.checks.places import set_of
from services.script.checks.presence import read_presence
from services.script.checks.threads import carries
from services.script.script_text import SceneText, cast_names, clock, read_episode, word_pattern

_CONTINUOUS = re.compile(r"\bCONTINUOUS\b")
_PLACEMENTS = {
    episode_pb2.PLACEMENT_INT: "INT.",
    episode_pb2.PLACEMENT_EXT: "EXT.",
    episode_pb2.PLACEMENT_INT_EXT: "INT./EXT.",
}


@dataclass(frozen=True)
class Note:
    """One contradiction: what kind, about whom or what, and the note the writer gets."""

    scene_index: int
    kind: str  # "absent_speaker", "missing_payoff", "missing_setup", "location", "time"
    subject: str  # the character, the setup id, or the heading
    message: str

    @property
    def key(self) -> tuple[str, str]:
        return self.kind, self.subject


@dataclass(frozen=True)
class Planted:
    """A setup as the ledger knows it."""

    setup_id: str
    description: str
    scene_index: int
    heard_by: tuple[str, ...]  # in the room when it was planted
    carried: bool  # the planting scene's text does carry it


@dataclass
class SceneEntry:
    """What one scene established."""

    index: int
    location: str
    present_start: set[str]
    present_end: set[str]
    left: dict[str, int] = field(default_factory=dict)  # who left, and in which scene
    planted: list[str] = field(default_factory=list)
    paid: list[str] = field(default_factory=list)
    props: list[str] = field(default_factory=list)


@dataclass
class Ledger:
    """The episode's continuity so far, scene by scene."""

    scenes: list[SceneEntry] = field(default_factory=list)
    setups: dict[str, Planted] = field(default_factory=dict)
    props: dict[str, tuple[int, str]] = field(default_factory=dict)  # prop -> (scene, location)
    notes: list[Note] = field(default_factory=list)


def _continues(before: SceneText | None, scene: SceneText) -> bool:
    """Whether the scene picks up the one before it in the same place, with no card of its own
    to say who is there."""
    if before is None or scene.has_card:
        return False
    slugline, previous = scene.scene.slugline, before.scene.slugline
    if not _CONTINUOUS.search(slugline.time_of_day.upper()):
        return False
    return set_of(slugline.location) == set_of(previous.location)


def _heading(placement: int, location: str) -> str:
    return f"{_PLACEMENTS.get(placement, '')} {location}".strip()


def _location_note(scene: SceneText) -> Note | None:
    card = scene.card
    if card is None or not card.location:
        return None
    slugline = scene.scene.slugline
    same_place = " ".join(card.location.upper().split()) == " ".join(
        slugline.location.upper().split()
    )
    same_side = not card.placement or card.placement == slugline.placement
    if same_place and same_side:
        return None
    wanted = _heading(card.placement or slugline.placement, card.location)
    return Note(
        scene.index,
        "location",
        wanted,
        f"the card puts this scene in {wanted}, but its heading says "
        f"{_heading(slugline.placement, slugline.location)}: play it where the card says",
    )


def _time_note(before: SceneText | None, scene: SceneText) -> Note | None:
    """A CONTINUOUS heading that cannot continue the scene before (another place), when the card
    says when the scene plays."""
    card = scene.card
    if before is None or card is None or not card.time_of_day:
        return None
    heading = scene.scene.slugline
    if not _CONTINUOUS.search(heading.time_of_day.upper()):
        return None
    if _CONTINUOUS.search(card.time_of_day.upper()):
        return None
    if set_of(heading.location) == set_of(before.scene.slugline.location):
        return None
    wanted = card.time_of_day.upper()
    return Note(
        scene.index,
        "time",
        wanted,
        f"the heading says CONTINUOUS, but the scene before plays in "
        f"{before.scene.slugline.location}: play it at {wanted}, as the card says",
    )


def _heard_by(planted: Planted) -> str:
    if not planted.heard_by:
        return ""
    return f", heard by {', '.join(planted.heard_by)}"


class LedgerBuilder:
    """Builds the ledger scene by scene (`add`), so a revised scene can be checked against the
    ledger as it stood before it (`notes_for`)."""

    def __init__(self, episode: episode_pb2.Episode) -> None:
        self.names = cast_names(episode.cast)
        self.props = [prop for prop in episode.setting.props if prop]
        self.ledger = Ledger()
        self._previous: SceneText | None = None

    def notes_for(self, scene: SceneText) -> list[Note]:
        """The scene's contradictions with the ledger as it stands (the scene is not added)."""
        notes, _ = self._read(scene)
        return notes

    def add(self, scene: SceneText) -> list[Note]:
        notes, entry = self._read(scene)
        self._record(scene, entry)
        self.ledger.notes.extend(notes)
        self._previous = scene
        return notes

    def _start(self, scene: SceneText) -> tuple[set[str] | None, dict[str, int]]:
        """Who is in the room when the scene starts, when the ledger knows (a continued scene),
        and who had left by then."""
        if not _continues(self._previous, scene) or not self.ledger.scenes:
            return None, {}
        last = self.ledger.scenes[-1]
        return set(last.present_end), dict(last.left)

    def _read(self, scene: SceneText) -> tuple[list[Note], SceneEntry]:
        start, left_before = self._start(scene)
        presence = read_presence(scene, self.names, start)
        notes: list[Note] = []
        for fault in presence.faults:
            who, detail = fault.character, fault.detail
            if who in left_before and who not in presence.left:
                detail = (
                    f"at {clock(fault.line.offset)}, {who} speaks but left in scene "
                    f"{left_before[who] + 1} and has not re-entered"
                )
            notes.append(Note(scene.index, "absent_speaker", who, detail))
        left = {who: i for who, i in left_before.items() if who not in presence.entered}
        left.update({who: scene.index for who in presence.left})
        entry = SceneEntry(
            index=scene.index,
            location=scene.scene.slugline.location,
            present_start=set(presence.start),
            present_end=set(presence.end),
            left=left,
        )
        notes.extend(self._thread_notes(scene, entry))
        for place_or_time in (_location_note(scene), _time_note(self._previous, scene)):
            if place_or_time is not None:
                notes.append(place_or_time)
        return notes, entry

    def _thread_notes(self, scene: SceneText, entry: SceneEntry) -> list[Note]:
        card = scene.card
        if card is None:
            return []
        notes = []
        for setup in card.setups:
            description = setup.description or setup.id
            if carries(scene, description):
                entry.planted.append(setup.id)
                continue
            notes.append(
                Note(
                    scene.index,
                    "missing_setup",
                    setup.id,
                    f"setup {setup.id} ({description!r}) is not planted: plant it in this "
                    "scene, a later scene pays it off",
                )
            )
        for setup_id in card.payoffs:
            planted = self.ledger.setups.get(setup_id)
            if planted is None:
                continue  # An outline fault (the validator's orphan_payoff), not this scene's.
            if carries(scene, planted.description):
                entry.paid.append(setup_id)
                continue
            notes.append(
                Note(
                    scene.index,
                    "missing_payoff",
                    setup_id,
                    f"the payoff of setup {setup_id} ({planted.description!r}, planted in scene "
                    f"{planted.scene_index + 1}{_heard_by(planted)}) is missing: pay it off in "
                    "this scene",
                )
            )
        return notes

    def _record(self, scene: SceneText, entry: SceneEntry) -> None:
        ledger = self.ledger
        ledger.scenes.append(entry)
        if scene.card is not None:
            heard = tuple(sorted(entry.present_start | entry.present_end))
            for setup in scene.card.setups:
                if setup.id and setup.id not in ledger.setups:
                    ledger.setups[setup.id] = Planted(
                        setup.id,
                        setup.description or setup.id,
                        scene.index,
                        heard,
                        setup.id in entry.planted,
                    )
        text = scene.text.lower()
        for prop in self.props:
            if word_pattern(prop.lower()).search(text):
                entry.props.append(prop)
                ledger.props[prop] = (scene.index, entry.location)


def build_ledger(episode: episode_pb2.Episode) -> Ledger:
    """The ledger of the whole episode, with every scene's notes."""
    builder = LedgerBuilder(episode)
    for scene in read_episode(episode):
        builder.add(scene)
    return builder.ledger


def notes_by_scene(notes: Sequence[Note]) -> dict[int, list[Note]]:
    grouped: dict[int, list[Note]] = {}
    for note in notes:
        grouped.setdefault(note.scene_index, []).append(note)
    return grouped
