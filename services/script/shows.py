"""Shows for the script service: the bundled catalog and the users' own, in one place.

`ShowService` answers CreateShow, GetShow, ListShows and AnalyzeShow, and `resolve` is the one
lookup every request that names a show goes through (GenerateEpisode, ProposeOutlines): the
catalog first (bundled shows cannot be shadowed: CreateShow refuses their ids and titles), then
the library, by id or title. A user's show is stored whole, as the `Show` CreateShow checked
(show_input.py), in one transaction; nothing is stored when a check fails.

AnalyzeShow reads the scripts the request carries (Fountain, or a plain "NAME: line" transcript;
FDX is refused here until the FDX reader is wired) and returns the offline analysis
(show_analysis.py): a `Show` the writer reviews, then saves with CreateShow.
"""

from __future__ import annotations

import asyncio
from typing import NoReturn

import grpc

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog
from services.script.fdx_reader import read_fdx
from services.script.fields import InvalidRequest, check_text
from services.script.library import Conflict, Library, LibraryError, NotFound
from services.script.script_reader import (
    ReadScript,
    ScriptReadError,
    decode,
    read_fountain,
)
from services.script.show_analysis import analyze_scripts
from services.script.show_input import MAX_TITLE_CHARS, check_show, show_slug
from services.script.transcript import looks_like_transcript, read_transcript

__all__ = ["MAX_SCRIPTS", "MAX_SCRIPT_BYTES", "ShowService", "read_source"]

MAX_QUERY_CHARS = 200
MIN_SCRIPTS, MAX_SCRIPTS = 1, 20
MAX_SCRIPT_BYTES = 2 * 1024 * 1024  # one script, as ValidateEpisode's content
MAX_TOTAL_BYTES = 8 * 1024 * 1024  # all the scripts of one request
SOURCE_FORMATS = ("fountain", "text", "fdx")
OFFLINE_WRITERS = ("", "procedural")


def _catalog_show(show: episode_pb2.Show) -> episode_pb2.Show:
    if not show.source:
        show.source = "catalog"
    return show


def _format_of(source: script_pb2.SourceScript, text: str, field: str) -> str:
    """As declared, else from the file name, else from the content."""
    declared = source.format.strip().lower()
    if declared:
        if declared not in SOURCE_FORMATS:
            raise InvalidRequest(
                f"{field}.format must be one of {', '.join(SOURCE_FORMATS)} (got {declared[:20]!r})"
            )
        return declared
    name = source.file_name.lower()
    head = text.lstrip()[:200]
    if name.endswith(".fdx") or head.startswith("<?xml") or "<FinalDraft" in head:
        return "fdx"
    if name.endswith((".fountain", ".spmd")):
        return "fountain"
    return "text" if looks_like_transcript(text) else "fountain"


def read_source(source: script_pb2.SourceScript, field: str) -> ReadScript:
    """One script of an AnalyzeShow request, read; InvalidRequest naming `field` otherwise."""
    if not source.content.strip():
        raise InvalidRequest(f"{field}.content is empty")
    if len(source.content) > MAX_SCRIPT_BYTES:
        raise InvalidRequest(
            f"{field}.content must be at most {MAX_SCRIPT_BYTES} bytes (got {len(source.content)})"
        )
    named = f"{field} ({source.file_name[:80]})" if source.file_name else field
    try:
        text = decode(source.content)
        kind = _format_of(source, text, field)
        if kind == "fdx":
            return read_fdx(text)
        return read_transcript(text) if kind == "text" else read_fountain(text)
    except ScriptReadError as exc:
        raise InvalidRequest(f"{named}: {exc}") from None


def _analysable_title(title: str) -> str:
    """The title the analysed show gets: never one that names a bundled show."""
    title = title.strip()
    if title and (catalog.find_show(title) or catalog.find_show(show_slug(title))):
        return f"{title} (analysed)"
    return title


class ShowService:
    """The show RPCs and the resolver, over one library."""

    def __init__(self, library: Library) -> None:
        self._library = library

    async def resolve(
        self, query: str, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Show | None:
        """The show a request names (catalog first, then the library), or None; the library
        failing ends the call with its status."""
        bundled = catalog.find_show(query)
        if bundled is not None:
            return bundled
        if not query.strip() or len(query) > MAX_QUERY_CHARS:
            return None  # the request's own checks name the field
        try:
            record = await self._library.find_show(query)
        except LibraryError as exc:
            await _abort(context, exc.grpc_code, str(exc))
        return None if record is None else record.show

    async def ListShows(
        self, request: script_pb2.ListShowsRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.ListShowsResponse:
        shows = [_catalog_show(show) for show in catalog.load_shows()]
        try:
            shows += [record.show for record in await self._library.list_shows()]
        except LibraryError as exc:
            await _abort(context, exc.grpc_code, str(exc))
        return script_pb2.ListShowsResponse(shows=shows, settings=catalog.load_settings())

    async def GetShow(
        self, request: script_pb2.GetShowRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Show:
        try:
            query = check_text("show", request.show, MAX_QUERY_CHARS)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        show = await self.resolve(query, context)
        if show is None:
            await _abort(
                context, grpc.StatusCode.NOT_FOUND,
                f"show {query[:80]!r} is not in the catalog nor a user's show; "
                "ListShows lists them",
            )  # fmt: skip
        return _catalog_show(show)

    async def CreateShow(
        self, request: script_pb2.CreateShowRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Show:
        """Checked, then stored in one transaction; ALREADY_EXISTS for a taken id or title
        (unless `replace`, for the user's own show of that id)."""
        if not request.HasField("show"):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "show is required")
        source = "analysed" if request.show.source == "analysed" else "user"
        try:
            show = check_show(request.show, source)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            record = await self._library.create_show(show, replace=request.replace, source=source)
        except Conflict as exc:
            hint = "" if request.replace else "; set replace to replace your show of that id"
            await _abort(context, grpc.StatusCode.ALREADY_EXISTS, f"{exc}{hint}")
        except (NotFound, LibraryError) as exc:
            await _abort(context, exc.grpc_code, str(exc))
        return record.show

    async def AnalyzeShow(
        self, request: script_pb2.AnalyzeShowRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.AnalyzeShowResponse:
        try:
            scripts, warnings = _read_request(request)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        title = _analysable_title(request.title)
        # CPU-bound (up to 8 MiB of text): off the event loop, so other calls are answered.
        show, analysis = await asyncio.to_thread(analyze_scripts, scripts, title, warnings)
        return script_pb2.AnalyzeShowResponse(show=show, analysis=analysis)


def _read_request(request: script_pb2.AnalyzeShowRequest) -> tuple[list[ReadScript], list[str]]:
    """The scripts, read, and warnings about the request; InvalidRequest naming the field."""
    check_text("title", request.title, MAX_TITLE_CHARS, required=False)
    count = len(request.scripts)
    if not MIN_SCRIPTS <= count <= MAX_SCRIPTS:
        raise InvalidRequest(f"scripts must hold {MIN_SCRIPTS}-{MAX_SCRIPTS} scripts (got {count})")
    total = sum(len(source.content) for source in request.scripts)
    if total > MAX_TOTAL_BYTES:
        raise InvalidRequest(f"scripts must total at most {MAX_TOTAL_BYTES} bytes (got {total})")
    scripts = [read_source(source, f"scripts[{i}]") for i, source in enumerate(request.scripts)]
    warnings = []
    if request.writer.strip() not in OFFLINE_WRITERS:
        warnings.append(
            f"writer {request.writer.strip()[:40]!r}: refining an analysis with an LLM writer is "
            "not available yet; this is the offline analysis"
        )
    return scripts, warnings


async def _abort(
    context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str
) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("unreachable: abort raises")
