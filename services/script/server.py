"""ScriptService: GenerateEpisode (streaming progress), GetEpisode, RegenerateScene,
ValidateEpisode (validate_service.py), ProposeOutlines (proposals.py), ReviseEpisode (revise.py),
ListShows, GetShow, CreateShow and AnalyzeShow (shows.py, which also resolves a request's show),
CreateSeries, GetSeries, ListSeries and WriteSeason (season.py), and the library's RPCs
(library_api.py)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import logging
import time
from collections.abc import AsyncIterator
from typing import NoReturn

import grpc
from opentelemetry import trace

from doppelganger.v1 import (
    cache_pb2_grpc,
    episode_pb2,
    library_pb2,
    scene_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
    series_pb2,
)
from services.script import batch_rpc, store
from services.script.batch_jobs import BatchJobs, BatchPoller, build_batch_runners
from services.script.coordination import CoordinationClient, LeaseHeld, held_lease
from services.script.library import Conflict, Library, LibraryError, NotFound, open_library
from services.script.library_api import LibraryApi
from services.script.llm.budget import spending_caller
from services.script.pipeline import (
    EpisodePipeline,
    PipelineDeps,
    PipelineMetrics,
    episode_id_for,
    regenerate_scene,
)
from services.script.proposals import propose_outlines
from services.script.refinement import RefinementPolicy
from services.script.requests import (
    EpisodeOrder,
    InvalidRequest,
    RuntimeDefaults,
    UnknownShow,
    check_scene_index,
    validate_generate,
    validate_propose,
    validate_regenerate,
)
from services.script.revise import EpisodeReviser, LockedSceneChanged
from services.script.revision_plan import check_revise, plan_revision
from services.script.season import SeasonService, check_season, rpc_errors
from services.script.shows import ShowService
from services.script.time_limits import steps_within, timeout_message, within
from services.script.validate_service import validate_request
from services.script.writers import build_writers
from services.script.writing import Writer, WriterError
from shared.access import current_caller
from shared.config import Settings
from shared.server import ServiceServer, create_channel, start_server
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

CACHE_CALL_TIMEOUT = 2.0
RETRY_AFTER_MS_RANGE = (100, 30_000)
LEASE_RETRY_MS_RANGE = (250, 5_000)


def caller_identity(context: grpc.aio.ServicerContext) -> str:
    """Who is asking, for the per-caller spending caps: the identity the access layer admitted
    the call with (a token's name or fingerprint, a certificate's name; `anonymous` on an
    open stack). Never the token itself."""
    return current_caller().name


class ScriptService(script_pb2_grpc.ScriptServiceServicer):
    """Writes episodes with the pipeline; every finished one is stored in the library (the
    record) before the client hears of it."""

    def __init__(
        self,
        deps: PipelineDeps,
        settings: Settings,
        library: Library,
        coordination: CoordinationClient | None = None,
        batches: BatchJobs | None = None,
    ) -> None:
        self._deps = deps
        self._batches = batches  # Batch mode (batch_jobs.py); None: not offered.
        self._settings = settings
        self._library = library
        self._coordination = coordination
        self._api = LibraryApi(library, deps, settings, self._record, self._load)
        self._shows = ShowService(library)
        self._season = SeasonService(
            library, deps, self._runtime(), settings.default_writer,
            settings.season_parallel_episodes, settings.episode_timeout_seconds,
        )  # fmt: skip
        self._active = 0  # Episodes being written now; at most max_concurrent_episodes.
        self._typical_seconds = 10.0  # Moving average of episode durations, for retry hints.
        meter = deps.telemetry.meter
        self._active_gauge = meter.create_up_down_counter(
            "doppel.episodes.active", unit="{episode}", description="Episodes being written."
        )
        self._episodes = meter.create_counter(
            "doppel.episodes", unit="{episode}", description="Episodes by show and outcome."
        )
        self._scenes = meter.create_counter(
            "doppel.scenes", unit="{scene}", description="Scenes delivered, by cache result."
        )
        self._duration = meter.create_histogram(
            "doppel.episode.duration",
            unit="s",
            description="Time to generate an episode.",
            explicit_bucket_boundaries_advisory=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
        )

    async def GenerateEpisode(
        self, request: script_pb2.GenerateEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        order = await self._order(request, context)
        if request.batch:  # Submitted and answered at once; the poller writes it.
            yield await batch_rpc.generate_batch(self._batches, request, order, context)
            return
        async with self._slot(order.show.id, context):
            async for event in self._generate(order, context):
                yield event

    @contextlib.asynccontextmanager
    async def _slot(self, show_id: str, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """One of the replica's `max_concurrent_episodes` slots, or RESOURCE_EXHAUSTED."""
        if self._active >= self._settings.max_concurrent_episodes:
            await self._refuse_overload(show_id, context)
        self._active += 1
        self._active_gauge.add(1)
        try:
            yield
        finally:
            self._active -= 1
            self._active_gauge.add(-1)

    @contextlib.asynccontextmanager
    async def _slots(
        self, wanted: int, show_id: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[int]:
        """Up to `wanted` free slots held together (a season's), or RESOURCE_EXHAUSTED."""
        granted = min(wanted, self._settings.max_concurrent_episodes - self._active)
        if granted < 1:
            await self._refuse_overload(show_id, context)
        self._active += granted
        self._active_gauge.add(granted)
        try:
            yield granted
        finally:
            self._active -= granted
            self._active_gauge.add(-granted)

    async def CreateSeries(
        self, request: script_pb2.CreateSeriesRequest, context: grpc.aio.ServicerContext
    ) -> series_pb2.Series:
        async with rpc_errors(context):
            return await self._season.create_series(request)
        raise AssertionError("unreachable: abort raises")

    async def GetSeries(
        self, request: script_pb2.GetSeriesRequest, context: grpc.aio.ServicerContext
    ) -> series_pb2.Series:
        async with rpc_errors(context):
            return await self._season.get_series(request.series_id)
        raise AssertionError("unreachable: abort raises")

    async def ListSeries(
        self, request: script_pb2.ListSeriesRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.ListSeriesResponse:
        async with rpc_errors(context):
            return await self._season.list_series(request)
        raise AssertionError("unreachable: abort raises")

    async def WriteSeason(
        self, request: script_pb2.WriteSeasonRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[script_pb2.SeasonEvent]:
        """A season (season.py): outlines, episodes in parallel on held slots, the bible; with
        batch=true, the outlines and then one batch job for the scenes."""
        async with rpc_errors(context):
            batch_writers = self._batches.runners.keys() if self._batches else ()
            order = check_season(
                request, self._settings.default_writer, self._deps.writers.keys(), batch_writers
            )
            with spending_caller(caller_identity(context)):
                slots = functools.partial(self._slots, show_id=order.show, context=context)
                async for event in self._season.write_season(order, slots, self._batches):
                    yield event

    def _time_allowed(self, context: grpc.aio.ServicerContext) -> float:
        """Seconds the work may take: the client's deadline or DOPPEL_EPISODE_TIMEOUT_SECONDS."""
        remaining = context.time_remaining()
        limit = self._settings.episode_timeout_seconds
        return limit if remaining is None else min(remaining, limit)

    async def _generate(
        self, order: EpisodeOrder, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        await self._claim_request_id(order, context)
        span = trace.get_current_span()
        span.set_attributes(
            {"doppel.show": order.show.id, "doppel.scene_count": order.scene_count,
             "doppel.writer": order.writer, "doppel.seed": order.seed,
             "doppel.target_seconds": order.target_runtime_seconds}
        )  # fmt: skip
        pipeline = EpisodePipeline(self._deps_for(context), order)
        started = time.perf_counter()
        outcome = "error"
        allowed = self._time_allowed(context)
        try:
            async with self._episode_lease(pipeline.episode_id):
                with spending_caller(caller_identity(context)):
                    async for event in steps_within(pipeline.run(), allowed):
                        if event.HasField("episode"):
                            event.episode.CopyFrom(await self._record(event.episode, "generated"))
                            outcome = "ok"
                        yield event
        except LeaseHeld:
            outcome = "duplicate"
            await self._refuse_duplicate(pipeline.episode_id, context)
        except WriterError as exc:
            await _abort_writer_error(context, exc)
        except LibraryError as exc:
            await context.abort(exc.grpc_code, str(exc))
        except TimeoutError:
            outcome = "timeout"
            await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, timeout_message(allowed))
        except asyncio.CancelledError:
            # The client went away or its deadline passed: scene tasks and LLM calls stop too.
            outcome = "cancelled"
            log.info("episode %s cancelled by the client", pipeline.episode_id)
            raise
        finally:
            elapsed = time.perf_counter() - started
            attributes = {"doppel.show": order.show.id, "doppel.outcome": outcome}
            self._episodes.add(1, attributes)
            if outcome != "duplicate":  # Refused at once: no episode's duration.
                self._duration.record(elapsed, attributes)
            if outcome == "ok":
                self._typical_seconds = 0.8 * self._typical_seconds + 0.2 * elapsed
            self._scenes.add(pipeline.scenes_from_cache, {"doppel.cache.hit": True})

    @contextlib.asynccontextmanager
    async def _episode_lease(self, episode_id: str) -> AsyncIterator[None]:
        """One generation of an episode at a time, across replicas; raises LeaseHeld while an
        identical request is being written (without the cache service: no lease)."""
        if self._coordination is None:
            yield
            return
        name = f"episode:{episode_id}"
        async with held_lease(self._coordination, name, self._settings.episode_lease_seconds):
            yield

    async def _refuse_duplicate(self, episode_id: str, context: grpc.aio.ServicerContext) -> None:
        """ABORTED with a retry hint, a quarter of a typical episode (0.25-5 s): retried, the
        request gets the stored episode once the first is done."""
        low, high = LEASE_RETRY_MS_RANGE
        retry_ms = int(min(high, max(low, 1000 * self._typical_seconds / 4)))
        trace.get_current_span().set_attribute("doppel.retry_after_ms", retry_ms)
        await context.abort(
            grpc.StatusCode.ABORTED,
            f"episode {episode_id} is being written for an identical request; retry in "
            f"{retry_ms} ms to get it",
            trailing_metadata=(("retry-after-ms", str(retry_ms)),),
        )

    async def _refuse_overload(self, show_id: str, context: grpc.aio.ServicerContext) -> None:
        """RESOURCE_EXHAUSTED with a retry hint: about when one of the busy slots frees."""
        cap = self._settings.max_concurrent_episodes
        low, high = RETRY_AFTER_MS_RANGE
        retry_ms = int(min(high, max(low, 1000 * self._typical_seconds / cap)))
        self._episodes.add(1, {"doppel.show": show_id, "doppel.outcome": "overloaded"})
        trace.get_current_span().set_attribute("doppel.retry_after_ms", retry_ms)
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{cap} episodes are being written on this replica (DOPPEL_MAX_CONCURRENT_EPISODES); "
            f"retry in {retry_ms} ms",
            trailing_metadata=(("retry-after-ms", str(retry_ms)),),
        )

    async def GetEpisode(
        self, request: script_pb2.GetEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Episode:
        return await self._api.get_episode(request, context)

    async def RegenerateScene(
        self, request: script_pb2.RegenerateSceneRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Episode:
        try:
            wanted = validate_regenerate(request)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        original = await self._load(wanted.episode_id, context)
        try:
            check_scene_index(wanted.scene_index, original)
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        writer = await self._writer_for(original, context)
        trace.get_current_span().set_attributes(
            {"doppel.show": original.show.id, "doppel.scene.index": wanted.scene_index,
             "doppel.notes.chars": len(wanted.notes), "doppel.writer": original.writer}
        )  # fmt: skip
        async with self._slot(original.show.id, context):
            index, notes = wanted.scene_index, wanted.notes
            episode = await self._revise(context, writer, original, index, notes)
            try:
                return await self._record(episode, "regenerated", original.id, notes)
            except LibraryError as exc:
                return await context.abort(exc.grpc_code, str(exc))

    async def _revise(
        self,
        context: grpc.aio.ServicerContext,
        writer: Writer,
        original: episode_pb2.Episode,
        scene_index: int,
        notes: str,
    ) -> episode_pb2.Episode:
        allowed = self._time_allowed(context)
        deps = self._deps_for(context)
        try:
            async with within(allowed):
                with spending_caller(caller_identity(context)):
                    return await regenerate_scene(deps, writer, original, scene_index, notes)
        except WriterError as exc:
            return await _abort_writer_error(context, exc)
        except LibraryError as exc:
            return await context.abort(exc.grpc_code, str(exc))
        except TimeoutError:
            return await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, timeout_message(allowed))

    async def ReviseEpisode(
        self, request: script_pb2.ReviseEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        """A production revision (revise.py), stored as a `revised` draft before its last event."""
        try:
            check_revise(request)
            parent = await self._load(request.draft_id, context)
            plan = plan_revision(request, parent, datetime.datetime.now(datetime.UTC).date())
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        writer = await self._writer_for(parent, context)
        trace.get_current_span().set_attributes(
            {"doppel.show": parent.show.id, "doppel.writer": parent.writer,
             "doppel.revision.scenes": len(plan.slots), "doppel.revision.set": plan.revision_set.id}
        )  # fmt: skip
        reviser = EpisodeReviser(self._deps_for(context), writer, parent, plan)
        allowed = self._time_allowed(context)
        async with self._slot(parent.show.id, context):
            try:
                async with self._episode_lease(plan.draft_id):
                    with spending_caller(caller_identity(context)):
                        async for event in steps_within(reviser.run(), allowed):
                            if event.HasField("episode"):
                                stored = await self._record(
                                    event.episode, "revised", parent.id, plan.summary
                                )
                                event.episode.CopyFrom(stored)
                                yield reviser.stored_event(stored)
                            yield event
            except LeaseHeld:
                await self._refuse_duplicate(plan.draft_id, context)
            except WriterError as exc:
                await _abort_writer_error(context, exc)
            except (LibraryError, LockedSceneChanged) as exc:
                await context.abort(exc.grpc_code, str(exc))
            except TimeoutError:
                await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, timeout_message(allowed))

    async def ProposeOutlines(
        self, request: script_pb2.ProposeOutlinesRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.ProposeOutlinesResponse:
        show = await self._shows.resolve(request.show, context)
        try:
            order = validate_propose(
                request,
                self._runtime(),
                self._settings.default_writer,
                self._deps.writers.keys(),
                show,
            )
        except InvalidRequest as exc:
            return await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except UnknownShow as exc:
            return await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        trace.get_current_span().set_attributes(
            {"doppel.show": order.episode.show.id, "doppel.proposals": order.count,
             "doppel.writer": order.episode.writer, "doppel.premise.chars": len(request.premise)}
        )  # fmt: skip
        allowed = self._time_allowed(context)

        async def save(draft: episode_pb2.Episode) -> episode_pb2.Episode:
            return await self._record(draft, "outline")

        async with self._slot(order.episode.show.id, context):
            try:
                async with within(allowed):
                    deps = self._deps_for(context)
                    return await propose_outlines(deps, order, request.setting.strip(), save)
            except (WriterError, LibraryError) as exc:
                return await context.abort(exc.grpc_code, str(exc))
            except TimeoutError:
                return await context.abort(
                    grpc.StatusCode.DEADLINE_EXCEEDED, timeout_message(allowed)
                )

    async def GetBatch(
        self, request: script_pb2.GetBatchRequest, context: grpc.aio.ServicerContext
    ) -> library_pb2.BatchJob:
        return await batch_rpc.get_batch(self._batches, request, context)

    async def ListShows(
        self, request: script_pb2.ListShowsRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.ListShowsResponse:
        return await self._shows.ListShows(request, context)

    async def GetShow(
        self, request: script_pb2.GetShowRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Show:
        return await self._shows.GetShow(request, context)

    async def CreateShow(
        self, request: script_pb2.CreateShowRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Show:
        return await self._shows.CreateShow(request, context)

    async def AnalyzeShow(
        self, request: script_pb2.AnalyzeShowRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.AnalyzeShowResponse:
        return await self._shows.AnalyzeShow(request, context)

    async def ListEpisodes(
        self, request: script_pb2.ListEpisodesRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.ListEpisodesResponse:
        return await self._api.list_episodes(request, context)

    async def GetHistory(
        self, request: script_pb2.GetHistoryRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.GetHistoryResponse:
        return await self._api.get_history(request, context)

    async def ImportDraft(
        self, request: script_pb2.ImportDraftRequest, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Episode:
        return await self._api.import_draft(request, context)

    async def CompareDrafts(
        self, request: script_pb2.CompareDraftsRequest, context: grpc.aio.ServicerContext
    ) -> library_pb2.DraftComparison:
        return await self._api.compare_drafts(request, context)

    async def ArchiveEpisode(
        self, request: script_pb2.ArchiveEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> library_pb2.EpisodeSummary:
        return await self._api.archive_episode(request, context)

    async def ValidateEpisode(
        self, request: script_pb2.ValidateEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> script_pb2.ValidateEpisodeResponse:
        async def load(draft_id: str) -> episode_pb2.Episode:
            return await self._load(draft_id, context)

        async def find_show(query: str) -> episode_pb2.Show | None:
            return await self._shows.resolve(query, context)

        try:
            threshold = self._settings.validation_threshold
            return await validate_request(request, load, threshold, find_show)
        except InvalidRequest as exc:
            return await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except UnknownShow as exc:
            return await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))

    async def _load(
        self, episode_id: str, context: grpc.aio.ServicerContext
    ) -> episode_pb2.Episode:
        """The draft with this id from the library; NOT_FOUND when it has none. An episode
        only the cache holds (written before the library existed) is stored as `imported`."""
        try:
            try:
                return (await self._library.get_draft(episode_id)).episode
            except NotFound:
                pass
            data = await self._deps.cache.get(store.EPISODES, episode_id)
            if data is None:
                return await context.abort(
                    grpc.StatusCode.NOT_FOUND, f"episode_id {episode_id} not found"
                )
            return await self._record(episode_pb2.Episode.FromString(data), "imported")
        except LibraryError as exc:
            return await context.abort(exc.grpc_code, str(exc))

    async def _record(
        self, episode: episode_pb2.Episode, kind: str, parent_id: str | None = None, notes: str = ""
    ) -> episode_pb2.Episode:
        """Stores a finished episode as a draft (one transaction) and returns the record. The
        first stored wins: when another call stored other bytes under the same id (two LLM runs
        of one request), that stored draft is the answer. LibraryError when it cannot be stored:
        the episode is then not reported done."""
        with self._deps.telemetry.tracer.start_as_current_span("library save") as span:
            span.set_attributes({"doppel.library.kind": kind, "doppel.library.draft": episode.id})
            try:
                saved = await self._library.save_draft(
                    episode, kind=kind, parent_id=parent_id, notes=notes
                )
                span.set_attribute("doppel.library.bytes", saved.size)
            except Conflict:
                span.set_attribute("doppel.library.conflict", True)
                return (await self._library.get_draft(episode.id)).episode
            except LibraryError as exc:
                span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                log.error("episode %s not stored: %s", episode.id, exc)
                raise type(exc)(
                    f"episode {episode.id} was written but could not be stored, so it is not "
                    f"reported done ({exc}); retrying reuses the cached outline and scenes"
                ) from None
        return episode

    async def _writer_for(
        self, episode: episode_pb2.Episode, context: grpc.aio.ServicerContext
    ) -> Writer:
        """The writer of the episode, or FAILED_PRECONDITION when this replica lacks it."""
        writer = self._writer_of(episode)
        if writer is None:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"episode {episode.id} was written by {episode.writer!r}, "
                "which this replica does not have",
            )
            raise AssertionError("unreachable: abort raises")
        return writer

    def _writer_of(self, episode: episode_pb2.Episode) -> Writer | None:
        """The writer that wrote the episode, by request name or by the name it records."""
        writers = self._deps.writers
        found = writers.get(episode.writer)
        return found or next((w for w in writers.values() if w.name == episode.writer), None)

    def order_of(self, request: script_pb2.GenerateEpisodeRequest) -> EpisodeOrder:
        """The order of a request already accepted (a batch job's, when it is resumed)."""
        return validate_generate(
            request, self._runtime(), self._settings.default_writer, self._deps.writers.keys()
        )

    async def _order(
        self, request: script_pb2.GenerateEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> EpisodeOrder:
        show = await self._shows.resolve(request.show, context)
        try:
            return validate_generate(
                request,
                self._runtime(),
                self._settings.default_writer,
                self._deps.writers.keys(),
                show,
            )
        except InvalidRequest as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except UnknownShow as exc:
            await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
        raise AssertionError("unreachable: abort raises")

    def _runtime(self) -> RuntimeDefaults:
        return RuntimeDefaults(
            episode_seconds=self._settings.episode_minutes * 60.0,
            scene_seconds=self._settings.scene_seconds,
        )

    async def _claim_request_id(
        self, order: EpisodeOrder, context: grpc.aio.ServicerContext
    ) -> None:
        """A request id names one episode; reusing it for another is refused."""
        if not order.request_id:
            return
        key = store.content_key("request", order.request_id)
        episode_id = episode_id_for(order, self._deps.writers[order.writer], self._deps.policy)
        # Atomic (SET NX): of two different requests racing with one id, only one gets it.
        claimed = await self._deps.cache.claim(store.REQUESTS, key, episode_id.encode())
        if claimed is not None and claimed.decode() != episode_id:
            await context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"request_id {order.request_id!r} was already used for a different request",
            )

    def _deps_for(self, context: grpc.aio.ServicerContext) -> PipelineDeps:
        """The client's deadline bounds every downstream call."""
        remaining = context.time_remaining()
        if remaining is None:
            return self._deps
        timeout = max(0.1, min(self._deps.rpc_timeout, remaining))
        return dataclasses.replace(self._deps, rpc_timeout=timeout)


async def create_script_server(
    settings: Settings, telemetry: Telemetry, library: Library | None = None
) -> ServiceServer:
    """The script service on `settings.script_port`, talking to the cache and scene services,
    storing episodes in `library` (default: the one the settings name, opened here and closed
    on stop; its schema is migrated or checked first, so a stale schema stops the start)."""
    owned = library is None
    if library is None:
        library = await open_library(settings)
    try:
        return await _start_script_server(settings, telemetry, library, owned)
    except BaseException:
        if owned:
            await library.close()
        raise


async def _start_script_server(
    settings: Settings, telemetry: Telemetry, library: Library, owned: bool
) -> ServiceServer:
    cache_channel = create_channel(settings.cache_address, telemetry, settings)
    scene_channel = create_channel(settings.scene_address, telemetry, settings)
    cache_stub = cache_pb2_grpc.CacheServiceStub(cache_channel)
    cache_timeout = min(CACHE_CALL_TIMEOUT, settings.rpc_timeout_seconds)
    coordination = CoordinationClient(cache_stub, cache_timeout)
    deps = PipelineDeps(
        cache=store.SoftCache(cache_stub, cache_timeout),
        scenes=scene_pb2_grpc.SceneServiceStub(scene_channel),
        writers=build_writers(settings, telemetry, coordination),
        telemetry=telemetry,
        max_parallel_scenes=settings.max_parallel_scenes,
        rpc_timeout=settings.rpc_timeout_seconds,
        policy=RefinementPolicy(
            rounds=settings.refinement_rounds,
            threshold=settings.validation_threshold,
            parallel=settings.max_parallel_scenes,
        ),
        metrics=PipelineMetrics.create(telemetry.meter),
        library=library,
    )

    service = ScriptService(deps, settings, library, coordination)
    batches = BatchJobs(
        deps, library, build_batch_runners(settings), service.order_of,
        claim_seconds=settings.batch_claim_seconds,
        episode_timeout=settings.episode_timeout_seconds,
    )  # fmt: skip
    service._batches = batches
    poller = BatchPoller(batches, settings.batch_poll_seconds, settings.max_concurrent_episodes)

    def register(server: grpc.aio.Server) -> list[str]:
        script_pb2_grpc.add_ScriptServiceServicer_to_server(service, server)
        return [script_pb2.DESCRIPTOR.services_by_name["ScriptService"].full_name]

    async def close_channels() -> None:
        await cache_channel.close()
        await scene_channel.close()

    async def close_writers() -> None:
        """LLM writers hold HTTP clients; the procedural writer holds nothing."""
        for writer in deps.writers.values():
            close = getattr(writer, "aclose", None)
            if close is not None:
                await close()

    started = await start_server(
        name="script",
        settings=settings,
        telemetry=telemetry,
        port=settings.script_port,
        register=register,
        cleanups=[close_channels, close_writers, *([library.close] if owned else [])],
    )
    # Resumes every unfinished batch job; stopped before the channels and the library close.
    poller.start()
    started.add_cleanup(poller.stop)
    return started


async def _abort_writer_error(context: grpc.aio.ServicerContext, exc: WriterError) -> NoReturn:
    """The RPC ends with the writer error's status; a spending cap adds its retry hint."""
    retry_ms = getattr(exc, "retry_after_ms", None)
    metadata = (("retry-after-ms", str(retry_ms)),) if retry_ms else ()
    await context.abort(exc.grpc_code, str(exc), trailing_metadata=metadata)
    raise AssertionError("unreachable: abort raises")
