"""Request limits of the scene service. Each check returns a message naming the field, or None."""

from __future__ import annotations

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from doppelganger.v1 import episode_pb2, scene_pb2
from services.scene.render import format_error

MAX_SCENES = 500
MAX_ELEMENTS_PER_SCENE = 2000
MAX_TEXT_CHARS = 10_000


def check_episode_request(request: scene_pb2.RenderEpisodeRequest) -> str | None:
    if not request.HasField("episode"):
        return "episode is required"
    if error := format_error(request.format):
        return error
    scenes = request.episode.scenes
    if len(scenes) > MAX_SCENES:
        return f"episode.scenes has {len(scenes)} scenes; the limit is {MAX_SCENES}"
    for index, scene in enumerate(scenes):
        if error := _check_elements(scene, f"episode.scenes[{index}]"):
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


def _check_elements(scene: episode_pb2.Scene, path: str) -> str | None:
    count = len(scene.elements)
    if count > MAX_ELEMENTS_PER_SCENE:
        return f"{path}.elements has {count} elements; the limit is {MAX_ELEMENTS_PER_SCENE}"
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
