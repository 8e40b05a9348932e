"""The library calls the CLI's library commands share: a draft named by id or by file, and a file
brought in as a draft (ImportDraft), with the checks made before anything is sent."""

from __future__ import annotations

import re
from pathlib import Path

import grpc
from google.protobuf import json_format

from doppel.output import DRAFT_ID_RE
from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from shared import security
from shared.config import Settings

CALL_TIMEOUT = 60.0
IMPORT_FORMATS = {".fountain": "fountain", ".spmd": "fountain", ".txt": "fountain",
                  ".fdx": "fdx", ".json": "json"}  # fmt: skip
_STEM_ID = re.compile(r"-([0-9a-f]{8})$")


class LocalRefusal(ValueError):
    """The command refuses before calling: the file is missing, too large, or not a draft."""


def read_draft(settings: Settings, reference: str, latest: bool = False) -> episode_pb2.Episode:
    """The draft an id names (from the script service), or an episode JSON file as it is."""
    path = Path(reference)
    if DRAFT_ID_RE.fullmatch(reference) and not path.exists():
        with security.blocking_channel(settings.script_address, settings) as channel:
            return script_pb2_grpc.ScriptServiceStub(channel).GetEpisode(
                script_pb2.GetEpisodeRequest(episode_id=reference, latest=latest),
                timeout=CALL_TIMEOUT,
            )
    try:
        text = path.read_text(encoding="utf-8")
        return json_format.Parse(text, episode_pb2.Episode(), ignore_unknown_fields=True)
    except (OSError, UnicodeDecodeError, json_format.ParseError) as exc:
        raise LocalRefusal(
            f"cannot read {reference} as a draft id or episode JSON: {exc}"
        ) from None


def sibling_draft_id(path: Path) -> str:
    """The draft a Fountain or FDX file `doppel` wrote came from: the id in the JSON written
    beside it (same name, .json), when that JSON is there and its id matches the file name."""
    if path.suffix.lower() == ".json":
        return ""
    sibling = path.with_suffix(".json")
    if not sibling.is_file():
        return ""
    try:
        episode = json_format.Parse(
            sibling.read_text(encoding="utf-8"), episode_pb2.Episode(), ignore_unknown_fields=True
        )
    except (OSError, UnicodeDecodeError, json_format.ParseError):
        return ""
    match = _STEM_ID.search(path.stem)
    if not DRAFT_ID_RE.fullmatch(episode.id) or (match and episode.id[3:11] != match.group(1)):
        return ""
    return episode.id


def import_request(
    settings: Settings, path: Path, parent: str = "", show: str = "", notes: str = ""
) -> script_pb2.ImportDraftRequest:
    """The ImportDraft request for a file; LocalRefusal when it is missing or over the limit
    (checked from its size before it is read, so a huge file is never loaded)."""
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise LocalRefusal(f"cannot read {path}: {exc.strerror or exc}") from None
    limit = settings.import_max_bytes
    if size > limit:
        raise LocalRefusal(
            f"{path} is {size} bytes; a script may be at most {limit} bytes "
            "(DOPPEL_IMPORT_MAX_BYTES): nothing was sent or stored"
        )
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise LocalRefusal(f"cannot read {path}: {exc.strerror or exc}") from None
    return script_pb2.ImportDraftRequest(
        content=content,
        format=IMPORT_FORMATS.get(path.suffix.lower(), ""),
        file_name=path.name,
        parent_draft_id=parent or sibling_draft_id(path),
        show=show,
        notes=notes,
    )


def import_draft(settings: Settings, request: script_pb2.ImportDraftRequest) -> episode_pb2.Episode:
    """ImportDraft; a message over the server's receive limit is reported as the limit it is."""
    with security.blocking_channel(settings.script_address, settings) as channel:
        try:
            return script_pb2_grpc.ScriptServiceStub(channel).ImportDraft(
                request, timeout=CALL_TIMEOUT
            )
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:  # type: ignore[attr-defined]
                raise LocalRefusal(
                    f"{request.file_name} ({len(request.content)} bytes) is larger than the "
                    "script service accepts (DOPPEL_SCRIPT_MAX_RECEIVE_BYTES): nothing was stored"
                ) from None
            raise
