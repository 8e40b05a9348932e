"""The library's RPCs of ScriptService: ListEpisodes, GetHistory, ImportDraft, CompareDrafts,
ArchiveEpisode, and GetEpisode's `latest`. server.py delegates to `LibraryApi`; the store is
services/script/library, the import rules are import_draft.py, the comparison is
shared/screenplay_diff.py.

Errors: bad fields are INVALID_ARGUMENT naming the field and its limit; a missing draft or
episode is NOT_FOUND; the library's own errors keep their codes (errors.py). Nothing here
writes outside one `save_draft` or `archive` transaction.
"""

from __future__ import annotations

import datetime
from collections.abc import Awaitable, Callable
from typing import NoReturn

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from opentelemetry import trace

from doppelganger.v1 import episode_pb2, library_pb2, script_pb2
from services.script import catalog
from services.script.import_draft import (
    ImportOrder,
    ParsedScript,
    build_episode,
    check_import,
    parse,
)
from services.script.library import DraftInfo, EpisodeSummary, Library, LibraryError, NotFound
from services.script.pipeline import PipelineDeps, render
from services.script.requests import InvalidRequest, validate_episode_id
from services.script.validation import validate_episode
from shared.config import Settings
from shared.screenplay_diff import compare_drafts

# Stores a finished draft (server.ScriptService._record): episode, kind, parent id, notes.
Record = Callable[[episode_pb2.Episode, str, str | None, str], Awaitable[episode_pb2.Episode]]
# Loads a stored draft or aborts the call with NOT_FOUND (server.ScriptService._load).
Load = Callable[[str, grpc.aio.ServicerContext], Awaitable[episode_pb2.Episode]]

KINDS = {
    "generated": episode_pb2.DRAFT_KIND_GENERATED,
    "regenerated": episode_pb2.DRAFT_KIND_REGENERATED,
    "revised": episode_pb2.DRAFT_KIND_REVISED,
    "imported": episode_pb2.DRAFT_KIND_IMPORTED,
    "outline": episode_pb2.DRAFT_KIND_OUTLINE,
}
MAX_HISTORY_DETAILS = 500  # Drafts whose scripts GetHistory reads for score, set and scenes.


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, text: str) -> NoReturn:
    await context.abort(code, text)
    raise AssertionError("unreachable: abort raises")


def _timestamp(moment: datetime.datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _id(field: str, value: str) -> str:
    try:
        return validate_episode_id(value)
    except InvalidRequest:
        raise InvalidRequest(f"{field} must look like 'ep-' followed by 20 hex digits") from None


def summary_proto(
    summary: EpisodeSummary, latest: episode_pb2.Episode | None = None, writer: str = ""
) -> library_pb2.EpisodeSummary:
    """An EpisodeSummary with the latest draft's logline (kept on the episode row); the writer
    from the latest draft when given (a listing gives only the writer: reading every draft's
    script would cost a page 40 ms)."""
    message = library_pb2.EpisodeSummary(
        episode_id=summary.id,
        title=summary.title,
        show_id=summary.show_id,
        show_title=summary.show_title,
        setting=summary.setting_name,
        series_id=summary.series_id or "",
        episode_number=summary.episode_number or 0,
        latest_draft_id=summary.latest_draft_id,
        draft_count=summary.draft_count,
        archived=summary.archived,
        created_at=_timestamp(summary.created_at),
        updated_at=_timestamp(summary.updated_at),
        writer=writer,
        logline=summary.logline,
    )
    if latest is not None:
        message.logline = latest.outline.logline
        message.writer = latest.writer
    return message


def draft_proto(info: DraftInfo, episode: episode_pb2.Episode | None) -> library_pb2.DraftInfo:
    """A DraftInfo; score, revision set and scene count come from the script when given."""
    usage = info.usage
    message = library_pb2.DraftInfo(
        draft_id=info.id,
        episode_id=info.episode_id,
        parent_draft_id=info.parent_id or "",
        kind=KINDS.get(info.kind, episode_pb2.DRAFT_KIND_UNSPECIFIED),
        notes=info.notes,
        writer=info.writer,
        model=info.model,
        usage=episode_pb2.LlmUsage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_tokens,
            cache_read_input_tokens=usage.cache_read_tokens,
            cost_usd=usage.cost_usd,
        ),
        created_at=_timestamp(info.created_at),
        title=info.title,
    )
    if episode is not None:
        message.validation_score = episode.validation.overall
        message.scene_count = len(episode.scenes)
        if info.kind == "revised":
            active = episode.revision.active_set
            message.revision_set = next(
                (s.name for s in episode.revision.sets if s.id == active), ""
            )
    return message


class LibraryApi:
    """The library RPCs' logic; `record` and `load` are the servicer's, so every draft is stored
    and read the one way the other RPCs use."""

    def __init__(
        self,
        library: Library,
        deps: PipelineDeps,
        settings: Settings,
        record: Record,
        load: Load,
    ) -> None:
        self._library = library
        self._deps = deps
        self._settings = settings
        self._record = record
        self._load = load

    async def get_episode(
        self, request: script_pb2.GetEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Episode:
        """The draft named, or with `latest` the newest draft of its episode."""
        try:
            draft_id = _id("episode_id", request.episode_id)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        if not request.latest:
            return await self._load(draft_id, context)
        try:
            return (await self._library.latest_draft(draft_id)).episode
        except NotFound:
            await self._load(draft_id, context)  # An episode only the cache held: stored now.
            return (await self._library.latest_draft(draft_id)).episode
        except LibraryError as exc:
            await _abort(context, exc.grpc_code, str(exc))

    async def list_episodes(
        self, request: script_pb2.ListEpisodesRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.ListEpisodesResponse:
        show = request.show.strip()
        if len(show) > 200:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "show: at most 200 characters")
        if len(request.series_id) > 100:
            await _abort(
                context, grpc.StatusCode.INVALID_ARGUMENT, "series_id: at most 100 characters"
            )
        if show and (found := catalog.find_show(show)) is not None:
            show = found.id  # A title or alias lists the show's episodes too.
        try:
            page = await self._library.list_episodes(
                request.page_size,
                request.page_token,
                show=show or None,
                series_id=request.series_id or None,
                text=request.text or None,
                include_archived=request.include_archived,
            )
            latest = await self._library.draft_infos([i.latest_draft_id for i in page.items])
        except LibraryError as exc:
            await _abort(context, exc.grpc_code, str(exc))
        trace.get_current_span().set_attribute("doppel.library.episodes", len(page.items))
        return script_pb2.ListEpisodesResponse(
            episodes=[
                summary_proto(item, writer=info.writer if info else "")
                for item in page.items
                for info in [latest.get(item.latest_draft_id)]
            ],
            next_page_token=page.next_page_token,
        )

    async def get_history(
        self, request: script_pb2.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.GetHistoryResponse:
        """The lineage, oldest first, each draft with its parent, kind, notes, writer and usage."""
        try:
            any_id = _id("episode_id", request.episode_id)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            try:
                drafts = await self._library.history(any_id)
            except NotFound:
                await self._load(any_id, context)  # Only in the cache: stored now, or NOT_FOUND.
                drafts = await self._library.history(any_id)
            scripts: list[episode_pb2.Episode | None] = [None] * len(drafts)
            for position, info in enumerate(drafts[:MAX_HISTORY_DETAILS]):
                scripts[position] = (await self._library.get_draft(info.id)).episode
        except LibraryError as exc:
            await _abort(context, exc.grpc_code, str(exc))
        return script_pb2.GetHistoryResponse(
            episode_id=drafts[0].episode_id,
            drafts=[draft_proto(info, s) for info, s in zip(drafts, scripts, strict=True)],
        )

    async def compare_drafts(
        self, request: script_pb2.CompareDraftsRequest, context: grpc.aio.ServicerContext
    ) -> library_pb2.DraftComparison:
        try:
            base_id = _id("base_draft_id", request.base_draft_id)
            new_id = _id("draft_id", request.draft_id)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        base = await self._load(base_id, context)
        new = await self._load(new_id, context)
        return compare_drafts(base, new)

    async def archive_episode(
        self, request: script_pb2.ArchiveEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> library_pb2.EpisodeSummary:
        try:
            any_id = _id("episode_id", request.episode_id)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        try:
            summary = await self._library.archive(any_id, archived=not request.restore)
            latest = await self._library.get_draft(summary.latest_draft_id)
        except LibraryError as exc:
            await _abort(context, exc.grpc_code, str(exc))
        return summary_proto(summary, latest.episode)

    async def import_draft(
        self, request: script_pb2.ImportDraftRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Episode:
        """Parsed, checked, validated, rendered and stored as an `imported` draft (see
        import_draft.py); the same file imported again is the stored draft."""
        try:
            order = check_import(request, self._settings.import_max_bytes)
            parsed = parse(order)
            parent = await self._parent(order, parsed, context)
            if parsed.episode is not None and parent is not None and parent == parsed.episode:
                return parent  # The file is that stored draft, unchanged: nothing to import.
            episode = build_episode(order, parsed, parent, self._settings.default_writer)
        except InvalidRequest as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        trace.get_current_span().set_attributes(
            {"doppel.import.format": parsed.kind, "doppel.import.bytes": len(order.content),
             "doppel.import.scenes": len(episode.scenes), "doppel.show": episode.show.id}
        )  # fmt: skip
        episode.validation.CopyFrom(validate_episode(episode, self._settings.validation_threshold))
        await render(self._deps, episode)
        parent_id = parent.id if parent is not None else None
        try:
            return await self._record(episode, "imported", parent_id, episode.notes)
        except LibraryError as exc:
            await _abort(context, exc.grpc_code, str(exc))

    async def _parent(
        self, order: ImportOrder, parsed: ParsedScript, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Episode | None:
        """The draft the edit started from: the one the request names (NOT_FOUND when the
        library lacks it), else the first the file names that the library holds."""
        if order.parent_draft_id:
            return await self._load(order.parent_draft_id, context)
        for draft_id in parsed.named_parent:
            try:
                return (await self._library.get_draft(draft_id)).episode
            except NotFound:
                continue
            except LibraryError as exc:
                await _abort(context, exc.grpc_code, str(exc))
        return None
