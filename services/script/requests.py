"""Validation of ScriptService requests: every limit in one place, every error names its field."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog, procedural

MAX_SHOW_CHARS = 200
MAX_SETTING_CHARS = 2000
MIN_SCENES = 1
MAX_SCENES = 20
MAX_REQUEST_ID_CHARS = 128
MAX_NOTES_CHARS = 2000
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
EPISODE_ID_PATTERN = re.compile(r"ep-[0-9a-f]{20}")


class InvalidRequest(ValueError):
    """A field breaks a documented limit (gRPC INVALID_ARGUMENT)."""


class UnknownShow(LookupError):
    """The show is not in the catalog (gRPC NOT_FOUND)."""


@dataclass(frozen=True)
class EpisodeOrder:
    """A validated request, with the show and setting resolved from the catalog."""

    show: episode_pb2.Show
    setting: episode_pb2.Setting
    scene_count: int
    seed: int
    request_id: str
    writer: str
    target_runtime_seconds: float


@dataclass(frozen=True)
class RuntimeDefaults:
    """The runtime targets: a whole episode when the request leaves scene_count open (the writer
    picks 8-12 scenes to fill it), a scene's length when it sets one."""

    episode_seconds: float
    scene_seconds: float


@dataclass(frozen=True)
class SceneRequest:
    """A validated RegenerateScene request (the scene index is checked against the episode)."""

    episode_id: str
    scene_index: int
    notes: str


def _check_text(field: str, value: str, limit: int, required: bool = True) -> str:
    text = value.strip()
    if required and not text:
        raise InvalidRequest(f"{field} is required")
    if len(value) > limit:
        raise InvalidRequest(f"{field} must be at most {limit} characters (got {len(value)})")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise InvalidRequest(f"{field} must not contain control characters")
    return text


def validate_generate(
    request: script_pb2.GenerateEpisodeRequest,
    runtime: RuntimeDefaults,
    default_writer: str,
    writers: Collection[str],
) -> EpisodeOrder:
    """Checks every field; raises InvalidRequest or UnknownShow with the field named."""
    show_query = _check_text("show", request.show, MAX_SHOW_CHARS)
    setting_text = _check_text("setting", request.setting, MAX_SETTING_CHARS)
    if request.HasField("scene_count") and not MIN_SCENES <= request.scene_count <= MAX_SCENES:
        raise InvalidRequest(
            f"scene_count must be between {MIN_SCENES} and {MAX_SCENES} (got {request.scene_count})"
        )
    if len(request.request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest(f"request_id must be at most {MAX_REQUEST_ID_CHARS} characters")
    if request.request_id and not REQUEST_ID_PATTERN.fullmatch(request.request_id):
        raise InvalidRequest("request_id may only contain letters, digits and . _ : -")
    writer = request.writer or default_writer
    if writer not in writers:
        raise InvalidRequest(
            f"writer must be one of: {', '.join(sorted(writers))} (got {writer[:40]!r})"
        )
    show = catalog.find_show(show_query)
    if show is None:
        raise UnknownShow(f"show {show_query[:80]!r} is not in the catalog; ListShows lists them")
    if request.HasField("scene_count"):
        scene_count = request.scene_count
        target = scene_count * runtime.scene_seconds
    else:
        target = runtime.episode_seconds
        scene_count = procedural.auto_scene_count(show, request.seed, target, runtime.scene_seconds)
    return EpisodeOrder(
        show=show,
        setting=catalog.resolve_setting(setting_text),
        scene_count=scene_count,
        seed=request.seed,
        request_id=request.request_id,
        writer=writer,
        target_runtime_seconds=round(target, 1),
    )


def validate_regenerate(request: script_pb2.RegenerateSceneRequest) -> SceneRequest:
    """Checks the fields that need no episode; the scene index is checked once it is loaded."""
    episode_id = validate_episode_id(request.episode_id)
    if not 0 <= request.scene_index < MAX_SCENES:
        raise InvalidRequest(
            f"scene_index must be between 0 and {MAX_SCENES - 1} (got {request.scene_index})"
        )
    notes = _check_text("notes", request.notes, MAX_NOTES_CHARS, required=False)
    return SceneRequest(episode_id, request.scene_index, notes)


def check_scene_index(scene_index: int, episode: episode_pb2.Episode) -> None:
    if not 0 <= scene_index < len(episode.scenes):
        raise InvalidRequest(
            f"scene_index must be between 0 and {len(episode.scenes) - 1} for episode "
            f"{episode.id} (got {scene_index})"
        )


def validate_episode_id(episode_id: str) -> str:
    if not EPISODE_ID_PATTERN.fullmatch(episode_id):
        raise InvalidRequest("episode_id must look like 'ep-' followed by 20 hex digits")
    return episode_id
