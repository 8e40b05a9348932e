"""Request limits of the scene service. Each check returns a message naming the field, or None."""

from __future__ import annotations

import re

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from doppelganger.v1 import episode_pb2, scene_pb2
from services.scene.render import format_error
from shared.printed import element_parts
from shared.revisions import (
    HEX_COLOUR_RE,
    MAX_LABEL_CHARS,
    MAX_SET_COLOUR_CHARS,
    MAX_SET_DATE_CHARS,
    MAX_SET_NAME_CHARS,
)

MAX_SCENES = 500
MAX_ELEMENTS_PER_SCENE = 2000
MAX_TEXT_CHARS = 10_000
# What a Fountain scene number can hold (`#3A#`), short enough for the page's right margin;
# letters may precede the number ("A1", as an imported script may have it).
SCENE_LABEL_RE = re.compile(rf"[0-9A-Za-z][0-9A-Za-z.\-]{{0,{MAX_LABEL_CHARS - 1}}}")
MAX_REVISION_SETS = 100


def check_episode_request(request: scene_pb2.RenderEpisodeRequest) -> str | None:
    if not request.HasField("episode"):
        return "episode is required"
    if error := format_error(request.format):
        return error
    scenes = request.episode.scenes
    if len(scenes) > MAX_SCENES:
        return f"episode.scenes has {len(scenes)} scenes; the limit is {MAX_SCENES}"
    if error := _check_revision_state(request.episode.revision):
        return error
    set_ids = {revision_set.id for revision_set in request.episode.revision.sets}
    for index, scene in enumerate(scenes):
        if error := _check_elements(scene, f"episode.scenes[{index}]", set_ids):
            return error
    return find_long_text(request.episode, "episode")


def check_scene_request(request: scene_pb2.RenderSceneRequest) -> str | None:
    if not request.HasField("scene"):
        return "scene is required"
    if error := format_error(request.format):
        return error
    if error := _check_elements(request.scene, "scene"):
        return error
    if error := find_long_text(request.scene, "scene"):
        return error
    for index, character in enumerate(request.cast):
        if error := find_long_text(character, f"cast[{index}]"):
            return error
    return None


def _check_elements(
    scene: episode_pb2.Scene, path: str, set_ids: set[int] | None = None
) -> str | None:
    """Element count, the locked label, and marks that name a printed paragraph (an element and
    one of its parts, shared/printed.py) and a set (any positive set when the request has no
    revision state: a lone scene's marks print in the order's colours)."""
    count = len(scene.elements)
    if count > MAX_ELEMENTS_PER_SCENE:
        return f"{path}.elements has {count} elements; the limit is {MAX_ELEMENTS_PER_SCENE}"
    label = scene.number_label
    if label and not SCENE_LABEL_RE.fullmatch(label):
        return (
            f"{path}.number_label {label[: MAX_LABEL_CHARS + 4]!r} is not a scene number: up to "
            f"{MAX_LABEL_CHARS} letters, digits, '.' or '-' (e.g. 3A)"
        )
    if not scene.revision_marks:
        return None
    # Printed paragraphs by element (-1: the heading); a mark names one, or a whole element.
    parts = {-1: 1, **{i: len(element_parts(e)) for i, e in enumerate(scene.elements)}}
    limit = sum(parts.values()) + count + 1
    if len(scene.revision_marks) > limit:
        return (
            f"{path}.revision_marks has {len(scene.revision_marks)} marks; the limit is one a "
            f"printed paragraph or element ({limit})"
        )
    for index, mark in enumerate(scene.revision_marks):
        where = f"{path}.revision_marks[{index}]"
        if not -1 <= mark.element_index < count:
            return (
                f"{where}.element_index {mark.element_index} is out of range: -1 (the heading) "
                f"to {count - 1}"
            )
        if not 0 <= mark.part <= parts[mark.element_index]:
            return (
                f"{where}.part {mark.part} is out of range: 0 (the whole element) to "
                f"{parts[mark.element_index]} (its printed paragraphs)"
            )
        if mark.revision_id < 1:
            return f"{where}.revision_id {mark.revision_id} must be at least 1"
        if set_ids and mark.revision_id not in set_ids:
            return f"{where}.revision_id {mark.revision_id} is not in episode.revision.sets"
    return None


def _check_revision_state(state: episode_pb2.RevisionState) -> str | None:
    """Sets with unique positive ids, printable names, dates and colours; a known active set."""
    if len(state.sets) > MAX_REVISION_SETS:
        return f"episode.revision.sets has {len(state.sets)} sets; the limit is {MAX_REVISION_SETS}"
    seen: set[int] = set()
    for index, revision_set in enumerate(state.sets):
        where = f"episode.revision.sets[{index}]"
        if revision_set.id < 1 or revision_set.id in seen:
            return f"{where}.id {revision_set.id} must be at least 1 and unique"
        seen.add(revision_set.id)
        for name, value, limit in (
            ("name", revision_set.name, MAX_SET_NAME_CHARS),
            ("color", revision_set.color, MAX_SET_COLOUR_CHARS),
            ("date", revision_set.date, MAX_SET_DATE_CHARS),
        ):
            if len(value) > limit:
                return f"{where}.{name} is {len(value)} characters; the limit is {limit}"
        if revision_set.color_hex and not HEX_COLOUR_RE.fullmatch(revision_set.color_hex):
            return (
                f"{where}.color_hex {revision_set.color_hex[:12]!r} is not a colour of the "
                "form #RRGGBB"
            )
    if state.active_set and state.active_set not in seen:
        return f"episode.revision.active_set {state.active_set} is not in episode.revision.sets"
    return None


def find_long_text(message: Message, path: str, limit: int = MAX_TEXT_CHARS) -> str | None:
    """The first string field anywhere in `message` longer than `limit` characters.

    A message whose encoding is at most `limit` bytes cannot hold such a string, so most of the
    tree is skipped without being visited.
    """
    if message.ByteSize() <= limit:
        return None
    for field, value in message.ListFields():
        name = f"{path}.{field.name}"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            error = _check_map(value, name, limit)
        elif field.is_repeated:
            error = _check_items(field, list(value), name, limit)
        else:
            error = _check_value(field, value, name, limit)
        if error:
            return error
    return None


def _check_items(field: FieldDescriptor, items: list[object], path: str, limit: int) -> str | None:
    for index, item in enumerate(items):
        if error := _check_value(field, item, f"{path}[{index}]", limit):
            return error
    return None


def _check_map(mapping: object, path: str, limit: int) -> str | None:
    for key, value in dict(mapping).items():  # type: ignore[call-overload]
        if isinstance(key, str) and len(key) > limit:
            return _too_long(f"{path} key", key, limit)
        if isinstance(value, Message):
            error = find_long_text(value, f"{path}[{key!r}]", limit)
        elif isinstance(value, str) and len(value) > limit:
            error = _too_long(f"{path}[{key!r}]", value, limit)
        else:
            error = None
        if error:
            return error
    return None


def _check_value(field: FieldDescriptor, value: object, path: str, limit: int) -> str | None:
    if isinstance(value, Message):
        return find_long_text(value, path, limit)
    if field.type == FieldDescriptor.TYPE_STRING and isinstance(value, str) and len(value) > limit:
        return _too_long(path, value, limit)
    return None


def _too_long(path: str, value: str, limit: int) -> str:
    return f"{path} is {len(value)} characters; the limit is {limit}"
