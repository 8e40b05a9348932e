"""ValidateEpisode: the validator's report on a stored draft, or on a script a writer sends.

A script comes as bytes (at most MAX_CONTENT_BYTES) in Fountain, FDX or episode JSON; nothing is
stored. Fountain is read by the script service's own reader (script_reader.py), FDX by
fdx_reader.py (through the same reader). A script with a parent draft takes the parent's cast,
relationships, show, setting and (when the scene count matches) outline with its scene cards;
speakers map onto the cast case-insensitively, extensions apart. Without a parent, the show is the
request's `show` or the one the title page names (`Source: Based on "..."`, as doppel writes it),
the cast is the script's own speakers, and the outline is one beat a scene: the checks that need
cards have none, the rest (names, presence read from the text, headings, times, comedy, runtime)
apply.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog
from services.script.fdx_reader import read_fdx
from services.script.requests import (
    MAX_SHOW_CHARS,
    InvalidRequest,
    UnknownShow,
    validate_episode_id,
)
from services.script.script_reader import (
    ReadScript,
    ScriptReadError,
    decode,
    detect_format,
    read_fountain,
    read_json,
)
from services.script.validation import validate_episode

MAX_CONTENT_BYTES = 2 * 1024 * 1024  # as ImportDraft's DOPPEL_IMPORT_MAX_BYTES default
MAX_FILE_NAME_CHARS = 255
_BASED_ON = re.compile(r'Based on "(.+)"')

LoadDraft = Callable[[str], Awaitable[episode_pb2.Episode]]
FindShow = Callable[[str], Awaitable[episode_pb2.Show | None]]


@dataclass(frozen=True)
class ValidateOrder:
    """A checked ValidateEpisode request."""

    draft_id: str
    content: bytes
    format: str
    file_name: str
    show: str
    parent_draft_id: str


def _draft_id(field: str, value: str) -> str:
    try:
        return validate_episode_id(value)
    except InvalidRequest:
        raise InvalidRequest(f"{field} must look like 'ep-' followed by 20 hex digits") from None


def check_validate(request: script_pb2.ValidateEpisodeRequest) -> ValidateOrder:
    """Checks the fields; raises InvalidRequest naming the field and the limit."""
    if request.draft_id and request.content:
        raise InvalidRequest("draft_id and content: give one of them, not both")
    if not request.draft_id and not request.content:
        raise InvalidRequest("draft_id or content is required")
    draft_id = _draft_id("draft_id", request.draft_id) if request.draft_id else ""
    if len(request.content) > MAX_CONTENT_BYTES:
        raise InvalidRequest(
            f"content must be at most {MAX_CONTENT_BYTES} bytes (got {len(request.content)})"
        )
    if len(request.file_name) > MAX_FILE_NAME_CHARS:
        raise InvalidRequest(f"file_name must be at most {MAX_FILE_NAME_CHARS} characters")
    if len(request.show) > MAX_SHOW_CHARS:
        raise InvalidRequest(f"show must be at most {MAX_SHOW_CHARS} characters")
    if request.parent_draft_id:
        _draft_id("parent_draft_id", request.parent_draft_id)
    return ValidateOrder(
        draft_id=draft_id,
        content=request.content,
        format=request.format,
        file_name=request.file_name,
        show=request.show.strip(),
        parent_draft_id=request.parent_draft_id,
    )


def _speaker_map(cast: list[episode_pb2.Character]) -> dict[str, str]:
    return {character.name.casefold(): character.name for character in cast}


def _speaker(cue: str, names: dict[str, str]) -> str:
    return names.get(cue.casefold(), cue.title() if cue == cue.upper() else cue)


def _outline(script: ReadScript, parent: episode_pb2.Episode | None) -> episode_pb2.Outline:
    """The parent's outline when it fits the script's scenes; else one beat a scene."""
    if parent is not None and parent.outline.scene_count == len(script.scenes):
        return parent.outline
    beats = [
        episode_pb2.Beat(
            scene_index=scene.index,
            plot=episode_pb2.PLOT_LINE_A,
            description=scene.summary or scene.slugline.location,
        )
        for scene in script.scenes
    ]
    outline = episode_pb2.Outline(
        title=script.title or (parent.outline.title if parent else ""),
        logline=parent.outline.logline if parent else "",
        acts=[episode_pb2.Act(name="Script", beats=beats)],
    )
    outline.scene_count = len(script.scenes)
    return outline


def _show_of(
    order: ValidateOrder, text: str, resolved: episode_pb2.Show | None
) -> episode_pb2.Show | None:
    query = order.show
    if not query and (match := _BASED_ON.search(text[:2000])):
        query = match.group(1)
    if not query:
        return None
    show = resolved or catalog.find_show(query)
    if show is None and order.show:
        raise UnknownShow(
            f"show {order.show[:80]!r} is not in the catalog nor a user's show; "
            "ListShows lists them"
        )
    return show


def episode_from_script(
    order: ValidateOrder,
    parent: episode_pb2.Episode | None,
    resolved: episode_pb2.Show | None = None,
) -> episode_pb2.Episode:
    """The episode a script describes (see the module docstring)."""
    text = decode(order.content)
    kind = detect_format(text, order.format, order.file_name)
    if kind == "json":
        return read_json(text)
    script = read_fdx(text) if kind == "fdx" else read_fountain(text)
    episode = episode_pb2.Episode(kind=episode_pb2.DRAFT_KIND_IMPORTED, notes=order.file_name)
    if parent is not None:
        episode.show.CopyFrom(parent.show)
        episode.setting.CopyFrom(parent.setting)
        episode.cast.extend(parent.cast)
        episode.relationships.extend(parent.relationships)
        episode.parent_episode_id = parent.id
    elif (show := _show_of(order, text, resolved)) is not None:
        episode.show.CopyFrom(show)
    names = _speaker_map(list(episode.cast))
    for scene in script.scenes:
        for element in scene.elements:
            if element.HasField("dialogue"):
                element.dialogue.character = _speaker(element.dialogue.character, names)
        scene.characters[:] = [_speaker(name, names) for name in scene.characters]
    if parent is None:
        speakers = dict.fromkeys(name for scene in script.scenes for name in scene.characters)
        episode.cast.extend(episode_pb2.Character(name=name) for name in speakers)
    episode.outline.CopyFrom(_outline(script, parent))
    episode.scenes.extend(script.scenes)
    episode.runtime_seconds = round(sum(s.duration_seconds for s in episode.scenes), 1)
    return episode


async def validate_request(
    request: script_pb2.ValidateEpisodeRequest,
    load: LoadDraft,
    threshold: float,
    find_show: FindShow | None = None,
) -> script_pb2.ValidateEpisodeResponse:
    """The report on the draft or the script; raises InvalidRequest (bad fields or content) or
    UnknownShow. `load` fetches a stored draft (and fails the call when it is missing);
    `find_show` resolves the request's `show` (a user's show too; shows.py)."""
    order = check_validate(request)
    if order.draft_id:
        episode = await load(order.draft_id)
    else:
        parent = await load(order.parent_draft_id) if order.parent_draft_id else None
        resolved = await find_show(order.show) if find_show and order.show else None
        try:
            episode = episode_from_script(order, parent, resolved)
        except ScriptReadError as exc:
            raise InvalidRequest(str(exc)) from None
    report = validate_episode(episode, threshold)
    return script_pb2.ValidateEpisodeResponse(report=report, episode=episode)
