"""Validation of GenerateEpisode requests: every limit in one place, every error names its field."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Collection
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, script_pb2
from shared import catalog

MAX_SHOW_CHARS = 200
MAX_SETTING_CHARS = 2000
MIN_SCENES = 1
MAX_SCENES = 20
MAX_REQUEST_ID_CHARS = 128
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


def _check_text(field: str, value: str, limit: int) -> str:
    text = value.strip()
    if not text:
        raise InvalidRequest(f"{field} is required")
    if len(value) > limit:
        raise InvalidRequest(f"{field} must be at most {limit} characters (got {len(value)})")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise InvalidRequest(f"{field} must not contain control characters")
    return text


def validate_generate(
    request: script_pb2.GenerateEpisodeRequest,
    default_scenes: int,
    default_writer: str,
    writers: Collection[str],
) -> EpisodeOrder:
    """Checks every field; raises InvalidRequest or UnknownShow with the field named."""
    show_query = _check_text("show", request.show, MAX_SHOW_CHARS)
    setting_text = _check_text("setting", request.setting, MAX_SETTING_CHARS)
    scene_count = request.scene_count if request.HasField("scene_count") else default_scenes
    if not MIN_SCENES <= scene_count <= MAX_SCENES:
        raise InvalidRequest(
            f"scene_count must be between {MIN_SCENES} and {MAX_SCENES} (got {scene_count})"
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
    return EpisodeOrder(
        show=show,
        setting=catalog.resolve_setting(setting_text),
        scene_count=scene_count,
        seed=request.seed,
        request_id=request.request_id,
        writer=writer,
    )


def validate_episode_id(episode_id: str) -> str:
    if not EPISODE_ID_PATTERN.fullmatch(episode_id):
        raise InvalidRequest("episode_id must look like 'ep-' followed by 20 hex digits")
    return episode_id
