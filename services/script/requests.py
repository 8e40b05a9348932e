"""Validation of ScriptService requests: every limit in one place, every error names its field.

A request's cast (casting.py) and outline (outline_input.py) have their own modules; this one
resolves the show and setting, checks the scalar fields and the premise, and puts it all together
as an `EpisodeOrder`.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog, procedural
from services.script.casting import Casting, resolve_cast
from services.script.fields import InvalidRequest, UnknownShow, check_text
from services.script.outline_input import check_outline
from services.script.premise import MAX_PREMISE_CHARS
from services.script.validation import MAX_SCENE_SECONDS, MIN_SCENE_SECONDS

__all__ = [
    "MAX_PREMISE_CHARS",
    "EpisodeOrder",
    "InvalidRequest",
    "OutlineOrder",
    "RuntimeDefaults",
    "SceneRequest",
    "UnknownShow",
    "check_scene_index",
    "validate_episode_id",
    "validate_generate",
    "validate_propose",
    "validate_regenerate",
]

MAX_SHOW_CHARS = 200
MAX_SETTING_CHARS = 2000
MIN_SCENES = 1
MAX_SCENES = 20
MAX_REQUEST_ID_CHARS = 128
MAX_NOTES_CHARS = 2000
MIN_PROPOSALS, MAX_PROPOSALS, DEFAULT_PROPOSALS = 1, 5, 3
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
EPISODE_ID_PATTERN = re.compile(r"ep-[0-9a-f]{20}")


@dataclass(frozen=True)
class EpisodeOrder:
    """A validated request, with the show, setting and cast resolved, and the premise and any
    outline the request sent in the episode's world."""

    show: episode_pb2.Show
    setting: episode_pb2.Setting
    scene_count: int
    seed: int
    request_id: str
    writer: str
    target_runtime_seconds: float
    premise: str  # as the request sent it
    world_premise: str  # in the new world (original and renamed names renamed)
    cast: tuple[episode_pb2.Character, ...]
    relationships: tuple[episode_pb2.Relationship, ...]
    custom_cast: bool  # the request sent a cast or relationships of its own
    outline: episode_pb2.Outline | None  # the request's outline, checked


@dataclass(frozen=True)
class OutlineOrder:
    """A validated ProposeOutlines request: the episode it would be, and how many outlines."""

    episode: EpisodeOrder
    count: int


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


def _check_common(
    show: str,
    setting: str,
    request_id: str,
    writer: str,
    default_writer: str,
    writers: Collection[str],
) -> tuple[str, str, str]:
    show_query = check_text("show", show, MAX_SHOW_CHARS)
    setting_text = check_text("setting", setting, MAX_SETTING_CHARS)
    if len(request_id) > MAX_REQUEST_ID_CHARS:
        raise InvalidRequest(f"request_id must be at most {MAX_REQUEST_ID_CHARS} characters")
    if request_id and not REQUEST_ID_PATTERN.fullmatch(request_id):
        raise InvalidRequest("request_id may only contain letters, digits and . _ : -")
    chosen = writer or default_writer
    if chosen not in writers:
        raise InvalidRequest(
            f"writer must be one of: {', '.join(sorted(writers))} (got {chosen[:40]!r})"
        )
    return show_query, setting_text, chosen


def _find_show(query: str, resolved: episode_pb2.Show | None) -> episode_pb2.Show:
    """The show the caller resolved (services/script/shows.py: catalog, then the library), else
    the catalog's."""
    show = resolved or catalog.find_show(query)
    if show is None:
        raise UnknownShow(
            f"show {query[:80]!r} is not in the catalog nor a user's show; ListShows lists them"
        )
    return show


def _scene_count_field(scene_count: int | None) -> None:
    if scene_count is not None and not MIN_SCENES <= scene_count <= MAX_SCENES:
        raise InvalidRequest(
            f"scene_count must be between {MIN_SCENES} and {MAX_SCENES} (got {scene_count})"
        )


def _runtime(
    show: episode_pb2.Show,
    seed: int,
    scene_count: int | None,
    outline: episode_pb2.Outline | None,
    runtime: RuntimeDefaults,
) -> tuple[int, float]:
    """(scene count, runtime target): the outline's beats and its own target (or a scene's
    length each), the request's count, or an open count that fills the episode target."""
    if outline is not None:
        count = outline.scene_count
        target = outline.target_runtime_seconds or count * runtime.scene_seconds
        if not count * MIN_SCENE_SECONDS <= target <= count * MAX_SCENE_SECONDS:
            raise InvalidRequest(
                f"outline.target_runtime_seconds must be {MIN_SCENE_SECONDS:.0f}-"
                f"{MAX_SCENE_SECONDS:.0f} s a scene ({count} scenes; got {target:.0f} s)"
            )
        return count, target
    if scene_count is not None:
        return scene_count, scene_count * runtime.scene_seconds
    target = runtime.episode_seconds
    return procedural.auto_scene_count(show, seed, target, runtime.scene_seconds), target


def _order(
    *,
    show_query: str,
    setting_text: str,
    writer: str,
    seed: int,
    request_id: str,
    scene_count: int | None,
    premise: str,
    cast: Collection[episode_pb2.Character],
    relationships: Collection[episode_pb2.Relationship],
    outline: episode_pb2.Outline | None,
    runtime: RuntimeDefaults,
    resolved: episode_pb2.Show | None,
) -> EpisodeOrder:
    _scene_count_field(scene_count)
    premise = check_text("premise", premise, MAX_PREMISE_CHARS, required=False)
    show = _find_show(show_query, resolved)
    setting = catalog.resolve_setting(setting_text)
    casting: Casting = resolve_cast(show, setting, list(cast), list(relationships))
    checked = None
    if outline is not None:
        checked = check_outline(outline, casting.names, casting.to_world, scene_count)
        premise = premise or outline.premise.strip()
    world_premise = casting.to_world(premise)
    if checked is not None:
        checked.premise = world_premise
    count, target = _runtime(show, seed, scene_count, checked, runtime)
    return EpisodeOrder(
        show=show,
        setting=setting,
        scene_count=count,
        seed=seed,
        request_id=request_id,
        writer=writer,
        target_runtime_seconds=round(target, 1),
        premise=premise,
        world_premise=world_premise,
        cast=casting.cast,
        relationships=casting.relationships,
        custom_cast=casting.edited,
        outline=checked,
    )


def validate_generate(
    request: script_pb2.GenerateEpisodeRequest,
    runtime: RuntimeDefaults,
    default_writer: str,
    writers: Collection[str],
    show: episode_pb2.Show | None = None,
) -> EpisodeOrder:
    """Checks every field; raises InvalidRequest or UnknownShow with the field named. `show` is
    the show the request names when the caller has resolved it (a user's show); else the
    catalog's."""
    show_query, setting_text, writer = _check_common(
        request.show, request.setting, request.request_id, request.writer, default_writer, writers
    )
    return _order(
        show_query=show_query,
        setting_text=setting_text,
        writer=writer,
        seed=request.seed,
        request_id=request.request_id,
        scene_count=request.scene_count if request.HasField("scene_count") else None,
        premise=request.premise,
        cast=request.cast,
        relationships=request.relationships,
        outline=request.outline if request.HasField("outline") else None,
        runtime=runtime,
        resolved=show,
    )


def validate_propose(
    request: script_pb2.ProposeOutlinesRequest,
    runtime: RuntimeDefaults,
    default_writer: str,
    writers: Collection[str],
    show: episode_pb2.Show | None = None,
) -> OutlineOrder:
    """A ProposeOutlines request: as GenerateEpisode's, and 1-5 outlines (0 means 3)."""
    count = request.count or DEFAULT_PROPOSALS
    if not MIN_PROPOSALS <= count <= MAX_PROPOSALS:
        raise InvalidRequest(
            f"count must be between {MIN_PROPOSALS} and {MAX_PROPOSALS} (got {request.count})"
        )
    show_query, setting_text, writer = _check_common(
        request.show, request.setting, "", request.writer, default_writer, writers
    )
    episode = _order(
        show_query=show_query,
        setting_text=setting_text,
        writer=writer,
        seed=request.seed,
        request_id="",
        scene_count=request.scene_count if request.HasField("scene_count") else None,
        premise=request.premise,
        cast=request.cast,
        relationships=request.relationships,
        outline=None,
        runtime=runtime,
        resolved=show,
    )
    return OutlineOrder(episode, count)


def validate_regenerate(request: script_pb2.RegenerateSceneRequest) -> SceneRequest:
    """Checks the fields that need no episode; the scene index is checked once it is loaded."""
    episode_id = validate_episode_id(request.episode_id)
    if not 0 <= request.scene_index < MAX_SCENES:
        raise InvalidRequest(
            f"scene_index must be between 0 and {MAX_SCENES - 1} (got {request.scene_index})"
        )
    notes = check_text("notes", request.notes, MAX_NOTES_CHARS, required=False)
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
