"""ReviseEpisode requests: checked field by field, then planned against the draft they revise.

Pure. `check_revise` checks what needs no draft; `plan_revision` checks the request against the
draft and works out the revised draft's scenes in order: kept, locked, rewritten (with which
notes), inserted (labelled with `label_after`: after 3 comes 3A, then 3B; at most
MAX_LABEL_CHARS characters) and omitted; and its revision set (the next one in the industry
order, dated today in UTC, unless the request names one). Scenes are named by their printed
numbers. Every error is an InvalidRequest naming the field and the limit.
"""

from __future__ import annotations

import datetime
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import store
from services.script.requests import (
    EPISODE_ID_PATTERN,
    MAX_NOTES_CHARS,
    MAX_REQUEST_ID_CHARS,
    REQUEST_ID_PATTERN,
    InvalidRequest,
)
from shared.revisions import (
    HEX_COLOUR_RE,
    MAX_LABEL_CHARS,
    MAX_SET_COLOUR_CHARS,
    MAX_SET_DATE_CHARS,
    MAX_SET_NAME_CHARS,
    colour_position,
    is_label,
    label_after,
    next_revision_set,
    printed_number,
    revision_colour,
)

MAX_INSERTS = 20
MAX_DRAFT_SCENES = 100  # Scenes a revised draft may hold, omitted ones included.
MAX_LABEL_FIELD_CHARS = 16  # A printed number as a request names it ("3", "12AA").
MAX_CARD_TEXT_CHARS = 200  # A card's location, time of day, each name.
MAX_CARD_NAMES = 20  # Names in each of a card's lists.
MAX_CARD_SETUPS = 10
# Part of every revised draft's id: bump when the same request would come out differently.
REVISE_VERSION = "revise-1"

KEEP, LOCK, REWRITE, INSERT, OMIT = "keep", "lock", "rewrite", "insert", "omit"
Finder = Callable[[str, str], int]  # (field, printed number) -> position in the draft, or raises.


@dataclass(frozen=True)
class Slot:
    """One scene of the revised draft, in order."""

    label: str  # Its printed number ("3", "3A").
    action: str  # KEEP, LOCK, REWRITE, INSERT or OMIT.
    source: int = -1  # Its position in the parent draft's scenes; -1 for an inserted scene.
    notes: str = ""  # REWRITE: what to change (may be empty: another take).
    beat: str = ""  # INSERT: what happens.
    card: episode_pb2.Beat | None = None  # INSERT: where, when, who; description = the beat.
    after: str = ""  # INSERT: the printed number of the scene it follows ("0": the first).


@dataclass(frozen=True)
class RevisionPlan:
    draft_id: str  # The revised draft's id (content-derived: see `revised_draft_id`).
    parent_id: str
    slots: tuple[Slot, ...]
    revision_set: episode_pb2.RevisionSet
    lock_numbers: bool  # The first revision: numbers get locked now.
    request_id: str

    def of(self, action: str) -> list[Slot]:
        return [slot for slot in self.slots if slot.action == action]

    @property
    def summary(self) -> str:
        """What the revision did, a line a change: the draft's notes in the library."""
        lines = [f"{self.revision_set.name} ({self.revision_set.date})"]
        if locked := self.of(LOCK):
            lines.append("locked: " + ", ".join(slot.label for slot in locked))
        lines += [
            f"rewrite {slot.label}: {slot.notes or '(another take)'}" for slot in self.of(REWRITE)
        ]
        lines += [
            f"insert {slot.label} after {slot.after}: {slot.beat}" for slot in self.of(INSERT)
        ]
        if omitted := self.of(OMIT):
            lines.append("omit: " + ", ".join(slot.label for slot in omitted))
        return "\n".join(lines)


def revised_draft_id(parent_id: str, request: script_pb2.ReviseEpisodeRequest) -> str:
    """The revised draft's id: a content hash of the parent's id and the whole request, so the
    same request (request_id included) asked again finds the stored draft, and another
    request_id asks for another take."""
    encoded = request.SerializeToString(deterministic=True).hex()
    return "ep-" + store.content_key("revise", REVISE_VERSION, parent_id, encoded)[:20]


# --- Fields that need no draft -------------------------------------------------------------------


def check_revise(request: script_pb2.ReviseEpisodeRequest) -> None:
    """Checks every field that needs no draft; raises InvalidRequest naming it."""
    if not EPISODE_ID_PATTERN.fullmatch(request.draft_id):
        raise InvalidRequest("draft_id must look like 'ep-' followed by 20 hex digits")
    for name, values in (("lock", request.lock), ("omit", request.omit)):
        _check_count(name, len(values), MAX_DRAFT_SCENES, "a draft's scenes")
        for index, value in enumerate(values):
            _check_label(f"{name}[{index}]", value)
    _check_count("notes", len(request.notes), MAX_DRAFT_SCENES, "a draft's scenes")
    for index, scene_notes in enumerate(request.notes):
        _check_label(f"notes[{index}].scene", scene_notes.scene)
        _checked_text(f"notes[{index}].notes", scene_notes.notes, MAX_NOTES_CHARS)
    _checked_text("unlocked_notes", request.unlocked_notes, MAX_NOTES_CHARS)
    if request.unlocked_notes.strip() and not request.rewrite_unlocked:
        raise InvalidRequest("unlocked_notes needs rewrite_unlocked (they are its notes)")
    _check_count("inserts", len(request.inserts), MAX_INSERTS, "scenes a revision inserts")
    for index, insertion in enumerate(request.inserts):
        _check_label(f"inserts[{index}].after", insertion.after)
        _checked_text(f"inserts[{index}].beat", insertion.beat, MAX_NOTES_CHARS, required=True)
        if insertion.HasField("card"):
            _check_card(f"inserts[{index}].card", insertion.card)
    _check_set(request.revision_set)
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest(f"request_id must be at most {MAX_REQUEST_ID_CHARS} characters")
    if request.request_id and not REQUEST_ID_PATTERN.fullmatch(request.request_id):
        raise InvalidRequest("request_id may only contain letters, digits and . _ : -")
    if not (request.notes or request.rewrite_unlocked or request.inserts or request.omit):
        raise InvalidRequest(
            "nothing to change: give notes, rewrite_unlocked, inserts or omit (lock alone "
            "keeps everything)"
        )


def _check_count(field: str, count: int, limit: int, what: str) -> None:
    if count > limit:
        raise InvalidRequest(f"{field} has {count} entries; the limit is {limit} ({what})")


def _check_label(field: str, value: str) -> None:
    if not value.strip():
        raise InvalidRequest(f"{field} is required: a scene's printed number, e.g. 3 or 3A")
    if len(value) > MAX_LABEL_FIELD_CHARS:
        raise InvalidRequest(
            f"{field} must be at most {MAX_LABEL_FIELD_CHARS} characters (got {len(value)})"
        )


def _checked_text(field: str, value: str, limit: int, required: bool = False) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidRequest(f"{field} is required")
    if len(value) > limit:
        raise InvalidRequest(f"{field} must be at most {limit} characters (got {len(value)})")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise InvalidRequest(f"{field} must not contain control characters")
    return text


def _check_card(field: str, card: episode_pb2.Beat) -> None:
    _checked_text(f"{field}.description", card.description, MAX_NOTES_CHARS)
    _checked_text(f"{field}.running_gag", card.running_gag, MAX_NOTES_CHARS)
    for name in ("location", "time_of_day"):
        _checked_text(f"{field}.{name}", getattr(card, name), MAX_CARD_TEXT_CHARS)
    if card.placement not in episode_pb2.Placement.values():
        raise InvalidRequest(f"{field}.placement {card.placement} is not a Placement")
    for name in ("characters", "entrances", "exits", "payoffs"):
        values = getattr(card, name)
        _check_count(f"{field}.{name}", len(values), MAX_CARD_NAMES, "names a card holds")
        for index, value in enumerate(values):
            _checked_text(f"{field}.{name}[{index}]", value, MAX_CARD_TEXT_CHARS, required=True)
    _check_count(f"{field}.setups", len(card.setups), MAX_CARD_SETUPS, "setups a card plants")
    for index, setup in enumerate(card.setups):
        _checked_text(f"{field}.setups[{index}].id", setup.id, MAX_CARD_TEXT_CHARS, True)
        _checked_text(f"{field}.setups[{index}].description", setup.description, MAX_NOTES_CHARS)


def _check_set(requested: episode_pb2.RevisionSet) -> None:
    for name, value, limit in (
        ("name", requested.name, MAX_SET_NAME_CHARS),
        ("color", requested.color, MAX_SET_COLOUR_CHARS),
        ("date", requested.date, MAX_SET_DATE_CHARS),
    ):
        _checked_text(f"revision_set.{name}", value, limit)
    if requested.color_hex and not HEX_COLOUR_RE.fullmatch(requested.color_hex):
        raise InvalidRequest(
            f"revision_set.color_hex {requested.color_hex[:12]!r} is not a colour of the form "
            "#RRGGBB"
        )
    if requested.date:
        try:
            datetime.date.fromisoformat(requested.date)
        except ValueError:
            raise InvalidRequest(
                f"revision_set.date {requested.date!r} is not an ISO date (YYYY-MM-DD)"
            ) from None
    if requested.color and colour_position(requested.color) is None and not requested.color_hex:
        raise InvalidRequest(
            f"revision_set.color {requested.color!r} is not a colour of the industry order "
            "(White, Blue, Pink, Yellow, Green, Goldenrod, Buff, Salmon, Cherry, then Double "
            "...); give revision_set.color_hex for another"
        )


# --- The request against the draft ---------------------------------------------------------------


def plan_revision(
    request: script_pb2.ReviseEpisodeRequest, draft: episode_pb2.Episode, today: datetime.date
) -> RevisionPlan:
    """The revised draft's scenes in order, its revision set and its id; raises InvalidRequest
    when the request does not fit the draft (call `check_revise` first)."""
    labels = [printed_number(scene, position) for position, scene in enumerate(draft.scenes, 1)]
    positions = {label: position for position, label in reversed(list(enumerate(labels)))}

    def find(field: str, label: str) -> int:
        position = positions.get(label.strip())
        if position is None:
            raise InvalidRequest(
                f"{field} {label[:MAX_LABEL_FIELD_CHARS]!r} is not a scene of draft {draft.id} "
                f"(its scenes: {_listing(labels)})"
            )
        return position

    locked = _named(request.lock, "lock", find)
    omitted = _named(request.omit, "omit", find)
    for position, field in omitted.items():
        if position in locked:
            raise InvalidRequest(
                f"{field} {labels[position]!r} is locked ({locked[position]}); a locked scene "
                "cannot be omitted"
            )
        if draft.scenes[position].omitted:
            raise InvalidRequest(f"{field} {labels[position]!r} is already omitted")
    rewrites = _rewrites(request, draft, labels, find, locked, omitted)
    anchors = _anchors(request, draft, find)
    if not (rewrites or anchors or omitted):
        raise InvalidRequest(
            "nothing to change: every scene rewrite_unlocked would rewrite is locked or omitted"
        )
    total = len(draft.scenes) + len(request.inserts)
    if total > MAX_DRAFT_SCENES:
        raise InvalidRequest(
            f"inserts would make {total} scenes; the limit is {MAX_DRAFT_SCENES} (a draft's "
            "scenes, omitted ones included)"
        )
    slots: list[Slot] = []
    for position in range(-1, len(draft.scenes)):
        if position >= 0:
            slots.append(_slot(position, labels[position], locked, omitted, rewrites))
        following = labels[position + 1] if position + 1 < len(labels) else None
        anchor = previous = labels[position] if position >= 0 else "0"
        for index in anchors.get(position, []):
            label = _insert_label(f"inserts[{index}]", previous, following)
            slots.append(_inserted(label, request.inserts[index], anchor))
            previous = label
    return RevisionPlan(
        draft_id=revised_draft_id(draft.id, request),
        parent_id=draft.id,
        slots=tuple(slots),
        revision_set=resolve_set(request.revision_set, draft.revision, today),
        lock_numbers=not draft.revision.numbers_locked,
        request_id=request.request_id,
    )


def _named(values: Sequence[str], name: str, find: Finder) -> dict[int, str]:
    """Position -> the field naming it; a scene named twice is refused."""
    named: dict[int, str] = {}
    for index, label in enumerate(values):
        field = f"{name}[{index}]"
        position = find(field, label)
        if position in named:
            raise InvalidRequest(f"{field} {label!r} is named twice (also {named[position]})")
        named[position] = field
    return named


def _rewrites(
    request: script_pb2.ReviseEpisodeRequest,
    draft: episode_pb2.Episode,
    labels: list[str],
    find: Finder,
    locked: dict[int, str],
    omitted: dict[int, str],
) -> dict[int, str]:
    """Position -> notes of every scene to rewrite: those with notes, and with
    rewrite_unlocked every other scene not locked, omitted or already omitted."""
    rewrites: dict[int, str] = {}
    fields: dict[int, str] = {}
    for index, scene_notes in enumerate(request.notes):
        field = f"notes[{index}].scene"
        position = find(field, scene_notes.scene)
        label = labels[position]
        if position in locked:
            raise InvalidRequest(
                f"{field} {label!r} is locked ({locked[position]}); a locked scene comes back "
                "as it is, so it cannot be rewritten"
            )
        if position in omitted:
            raise InvalidRequest(f"{field} {label!r} is omitted ({omitted[position]})")
        if draft.scenes[position].omitted:
            raise InvalidRequest(f"{field} {label!r} is omitted: it has nothing to rewrite")
        if position in fields:
            raise InvalidRequest(f"{field} {label!r} has notes twice (also {fields[position]})")
        fields[position] = field
        rewrites[position] = scene_notes.notes.strip()
    if request.rewrite_unlocked:
        for position, scene in enumerate(draft.scenes):
            if position in locked or position in omitted or scene.omitted:
                continue
            rewrites.setdefault(position, request.unlocked_notes.strip())
    return rewrites


def _anchors(
    request: script_pb2.ReviseEpisodeRequest, draft: episode_pb2.Episode, find: Finder
) -> dict[int, list[int]]:
    """Position of the scene each insert follows (-1: before the first) -> the inserts, in the
    request's order; a card naming someone outside the cast is refused."""
    cast = {character.name for character in draft.cast}
    anchors: dict[int, list[int]] = {}
    for index, insertion in enumerate(request.inserts):
        after = insertion.after.strip()
        position = -1 if after == "0" else find(f"inserts[{index}].after", after)
        anchors.setdefault(position, []).append(index)
        card = insertion.card
        for name in ("characters", "entrances", "exits"):
            for number, who in enumerate(getattr(card, name)):
                if cast and who.strip() not in cast:
                    raise InvalidRequest(
                        f"inserts[{index}].card.{name}[{number}] {who[:40]!r} is not in the "
                        f"cast ({', '.join(sorted(cast))})"
                    )
    return anchors


def _slot(
    position: int,
    label: str,
    locked: dict[int, str],
    omitted: dict[int, str],
    rewrites: dict[int, str],
) -> Slot:
    if position in locked:
        return Slot(label, LOCK, position)
    if position in omitted:
        return Slot(label, OMIT, position)
    if position in rewrites:
        return Slot(label, REWRITE, position, notes=rewrites[position])
    return Slot(label, KEEP, position)


def _inserted(label: str, insertion: script_pb2.SceneInsertion, after: str) -> Slot:
    card = episode_pb2.Beat()
    card.CopyFrom(insertion.card)
    card.description = card.description.strip() or insertion.beat.strip()
    return Slot(label, INSERT, beat=insertion.beat.strip(), card=card, after=after)


def _insert_label(field: str, previous: str, following: str | None) -> str:
    """The label after `previous` and before `following` (None: nothing, or a label the
    order does not know, such as an imported A1)."""
    if following is not None and not is_label(following):
        following = None
    try:
        label = label_after(previous, following)
    except ValueError:
        raise InvalidRequest(
            f"{field}.after: no scene number fits after {previous!r} (inserted scenes follow "
            f"numbers such as 3 or 3A{'' if following is None else f', before {following!r}'})"
        ) from None
    if not is_label(label):
        raise InvalidRequest(
            f"{field}.after: the scene after {previous!r} would be {label!r}, longer than "
            f"{MAX_LABEL_CHARS} characters; insert it after another scene"
        )
    return label


def resolve_set(
    requested: episode_pb2.RevisionSet, state: episode_pb2.RevisionState, today: datetime.date
) -> episode_pb2.RevisionSet:
    """The pass's set: the next in the industry order dated `today`, with whatever the request
    names instead (a named colour gets its paper tint; the id is always the next one)."""
    revision_set = next_revision_set(state, today)
    if colour := " ".join(requested.color.split()):
        position = colour_position(colour)
        if position is not None:
            colour, hex_colour = revision_colour(position)
            revision_set.color_hex = hex_colour
        revision_set.color = colour
        revision_set.name = f"{colour} Revision"
    if requested.color_hex:
        revision_set.color_hex = requested.color_hex.upper()
    if name := " ".join(requested.name.split()):
        revision_set.name = name
    if requested.date:
        revision_set.date = requested.date
    return revision_set


def _listing(labels: list[str], limit: int = 30) -> str:
    shown = ", ".join(labels[:limit])
    return shown + (f", ... ({len(labels)} in all)" if len(labels) > limit else "")
