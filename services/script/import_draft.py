"""ImportDraft: a writer's hand-edited script (Fountain, FDX or episode JSON) as a new draft.

Checked before anything is read: content present and at most DOPPEL_IMPORT_MAX_BYTES (the gRPC
receive limit, DOPPEL_SCRIPT_MAX_RECEIVE_BYTES, refuses larger messages before they get here),
UTF-8 text without NUL bytes. Then parsed (script_reader for Fountain and JSON, fdx_reader for
FDX); every speaker must be one of the cast (or already speak in the parent draft), matched
ignoring case and extensions, and is then spelt as the cast spells it. The cast is the parent
draft's (the transformed cast), else the JSON's own, else the show's as catalogued. An unknown
speaker is INVALID_ARGUMENT naming the line (Fountain, FDX) or the scene and element (JSON) and
the cast.

The parent is `parent_draft_id`, else the draft the file names (the JSON's `id`, or an id in the
file name), when the library holds it: a Fountain or FDX edit keeps the parent's show, setting,
cast, relationships, writer and (when the scene count is the same) outline; its scenes are the
file's. The new draft's id is a hash of its parent and content, so importing the same file twice
is one draft. The draft is validated (the report is stored with it, a low score is not a
refusal), rendered, and stored as `imported` in one transaction; nothing is stored on failure.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog, comedy
from services.script.fdx_reader import read_fdx
from services.script.requests import MAX_SHOW_CHARS, InvalidRequest, validate_episode_id
from services.script.script_reader import (
    ScriptReadError,
    decode,
    detect_format,
    read_fountain,
    read_json,
)

MAX_NOTES_CHARS = 2000
MAX_FILE_NAME_CHARS = 255
_DRAFT_ID = re.compile(r"ep-[0-9a-f]{20}")
_BASED_ON = re.compile(r'Based on "(.+)"')
_EXTENSION = re.compile(r"\s*\([^()]*\)\s*$")


@dataclass(frozen=True)
class ImportOrder:
    """A checked ImportDraft request."""

    content: bytes
    format: str
    file_name: str
    parent_draft_id: str
    show: str
    notes: str


@dataclass
class ParsedScript:
    """What the content holds, before it is tied to a parent: a JSON episode, or scenes."""

    kind: str  # "fountain", "fdx", "json"
    text: str
    title: str
    scenes: list[episode_pb2.Scene]
    episode: episode_pb2.Episode | None  # The JSON's episode.
    named_parent: list[str]  # Draft ids the file names, most likely first.


def check_import(request: script_pb2.ImportDraftRequest, max_bytes: int) -> ImportOrder:
    """Checks the fields; raises InvalidRequest naming the field and the limit."""
    if not request.content.strip():
        raise InvalidRequest("content is empty: send the script's bytes")
    if len(request.content) > max_bytes:
        raise InvalidRequest(
            f"content must be at most {max_bytes} bytes (DOPPEL_IMPORT_MAX_BYTES); "
            f"got {len(request.content)}"
        )
    if len(request.file_name) > MAX_FILE_NAME_CHARS:
        raise InvalidRequest(f"file_name must be at most {MAX_FILE_NAME_CHARS} characters")
    if len(request.show) > MAX_SHOW_CHARS:
        raise InvalidRequest(f"show must be at most {MAX_SHOW_CHARS} characters")
    if len(request.notes) > MAX_NOTES_CHARS:
        raise InvalidRequest(f"notes must be at most {MAX_NOTES_CHARS} characters")
    if request.parent_draft_id:
        try:
            validate_episode_id(request.parent_draft_id)
        except InvalidRequest:
            raise InvalidRequest(
                "parent_draft_id must look like 'ep-' followed by 20 hex digits"
            ) from None
    return ImportOrder(
        content=request.content,
        format=request.format,
        file_name=request.file_name,
        parent_draft_id=request.parent_draft_id,
        show=request.show.strip(),
        notes=request.notes.strip(),
    )


def parse(order: ImportOrder) -> ParsedScript:
    """The content read in its format; InvalidRequest naming the line when it cannot be."""
    try:
        text = decode(order.content)
        kind = detect_format(text, order.format, order.file_name)
        named = _DRAFT_ID.findall(order.file_name)
        if kind == "json":
            episode = read_json(text)
            if not episode.scenes:
                raise ScriptReadError("content: the episode JSON has no scenes")
            ids = [episode.id, episode.parent_episode_id, *named]
            return ParsedScript(kind, text, episode.outline.title, list(episode.scenes), episode,
                                [i for i in ids if _DRAFT_ID.fullmatch(i)])  # fmt: skip
        script = read_fdx(text) if kind == "fdx" else read_fountain(text)
    except ScriptReadError as exc:
        raise InvalidRequest(str(exc)) from None
    return ParsedScript(kind, text, script.title, script.scenes, None, named)


def _cue_line(text: str, speaker: str, kind: str) -> int:
    """The first line of the file where `speaker` stands as a cue (1-based; 0: not found)."""
    wanted = speaker.casefold()
    for number, line in enumerate(text.split("\n"), start=1):
        candidate = line.strip()
        if kind == "fdx":
            candidate = re.sub(r"<[^>]*>", "", candidate).strip()
        candidate = _EXTENSION.sub("", candidate.lstrip("@").rstrip("^").strip())
        if candidate.casefold() == wanted:
            return number
    return 0


def _cast_names(cast: list[episode_pb2.Character]) -> dict[str, str]:
    return {character.name.casefold(): character.name for character in cast if character.name}


def map_speakers(
    parsed: ParsedScript,
    cast: list[episode_pb2.Character],
    who: str,
    parent: episode_pb2.Episode | None = None,
) -> None:
    """Spells every speaker as the cast does; InvalidRequest naming the line of one outside it.
    Someone who already speaks in the parent draft (a waiter an LLM writer added) is allowed."""
    names = _cast_names(cast)
    if parent is not None:
        for scene in parent.scenes:
            for element in scene.elements:
                if element.HasField("dialogue") and (name := element.dialogue.character):
                    names.setdefault(name.casefold(), name)
    listed = ", ".join(names.values()) or "no one"
    for scene_number, scene in enumerate(parsed.scenes, start=1):
        for element_number, element in enumerate(scene.elements):
            if not element.HasField("dialogue"):
                continue
            cue = _EXTENSION.sub("", element.dialogue.character).strip()
            known = names.get(cue.casefold())
            if known is None:
                if parsed.kind == "json":
                    where = f"scenes[{scene_number - 1}].elements[{element_number}]"
                else:
                    where = f"line {_cue_line(parsed.text, cue, parsed.kind)}"
                raise InvalidRequest(
                    f"content: {where} (scene {scene_number}): speaker {cue[:60]!r} is not in "
                    f"the cast of {who} ({listed}); use a cast member's name as the cue"
                )
            element.dialogue.character = known
        scene.characters[:] = list(
            dict.fromkeys(e.dialogue.character for e in scene.elements if e.HasField("dialogue"))
        )


def show_for(order: ImportOrder, parsed: ParsedScript) -> episode_pb2.Show:
    """The show of a script with no parent: the request's, else the title page's `Based on`."""
    query = order.show
    if not query and (match := _BASED_ON.search(parsed.text[:4000])):
        query = match.group(1)
    if not query:
        raise InvalidRequest(
            "show is required for a script with no parent draft (parent_draft_id, or the "
            "episode JSON's id, names none the library holds)"
        )
    show = catalog.find_show(query)
    if show is None:
        raise InvalidRequest(f"show {query[:80]!r} is not in the catalog; ListShows lists them")
    return show


def _outline(parsed: ParsedScript, parent: episode_pb2.Episode | None) -> episode_pb2.Outline:
    """The parent's outline when it has as many scenes; else one beat a scene."""
    if parent is not None and parent.outline.scene_count == len(parsed.scenes):
        outline = episode_pb2.Outline()
        outline.CopyFrom(parent.outline)
        return outline
    beats = [
        episode_pb2.Beat(
            scene_index=index,
            plot=episode_pb2.PLOT_LINE_A,
            description=scene.summary or scene.slugline.location,
        )
        for index, scene in enumerate(parsed.scenes)
    ]
    outline = episode_pb2.Outline(
        title=parsed.title or (parent.outline.title if parent else "") or "Untitled Episode",
        logline=parent.outline.logline if parent else "",
        acts=[episode_pb2.Act(name="Script", beats=beats)],
    )
    outline.scene_count = len(parsed.scenes)
    return outline


def build_episode(
    order: ImportOrder,
    parsed: ParsedScript,
    parent: episode_pb2.Episode | None,
    default_writer: str,
) -> episode_pb2.Episode:
    """The imported draft (without validation and render), its id a hash of parent and content.
    InvalidRequest when a speaker is outside the cast or the show is unknown."""
    episode = episode_pb2.Episode()
    if parsed.episode is not None:
        episode.CopyFrom(parsed.episode)
        if not episode.cast and parent is not None:
            episode.cast.extend(parent.cast)
        who = episode.show.title or episode.show.id or "the episode"
    elif parent is not None:
        episode.CopyFrom(parent)
        who = parent.show.title or parent.show.id
    else:
        show = show_for(order, parsed)
        episode.show.CopyFrom(show)
        episode.cast.extend(show.characters)
        episode.relationships.extend(show.relationships)
        episode.writer = default_writer  # RegenerateScene rewrites its scenes with it.
        who = show.title
    map_speakers(parsed, list(episode.cast), who, parent)
    if parsed.episode is None:
        episode.outline.CopyFrom(_outline(parsed, parent))
        del episode.scenes[:]
        for index, scene in enumerate(parsed.scenes):
            scene.index = index
            scene.number = index + 1
            for joke in scene.jokes:
                joke.scene_index = index
            episode.scenes.append(scene)
        # What the file cannot carry (or the parent's run measured) does not describe it.
        for name in ("comedy", "refinement_rounds", "attempts", "revision", "continuity_notes"):
            episode.ClearField(name)  # type: ignore[arg-type]
        episode.comedy.mean_after = comedy.mean_score(j for s in episode.scenes for j in s.jokes)
    else:
        episode.ClearField("scenes")
        episode.scenes.extend(parsed.scenes)
    for name in ("validation", "usage", "fountain", "page_count", "render_error", "id"):
        episode.ClearField(name)  # type: ignore[arg-type]
    episode.runtime_seconds = round(sum(s.duration_seconds for s in episode.scenes), 1)
    episode.kind = episode_pb2.DRAFT_KIND_IMPORTED
    episode.notes = import_notes(order)
    episode.parent_episode_id = parent.id if parent is not None else ""
    episode.lineage_id = ""
    digest = hashlib.sha256(b"import\0" + episode.SerializeToString(deterministic=True))
    episode.id = "ep-" + digest.hexdigest()[:20]
    return episode


def import_notes(order: ImportOrder) -> str:
    """The draft's notes: the writer's, else where it came from."""
    if order.notes:
        return order.notes
    name = order.file_name.replace("\\", "/").rsplit("/", 1)[-1]
    return f"imported from {name}" if name else "imported"
