"""Seasons: CreateSeries, GetSeries, ListSeries and WriteSeason (server.py delegates here).

A series (library/bibles.py) holds show, setting, cast and a versioned bible (bible.py). Writing
a season of N episodes:
1. outlines, one after the other (cheap next to the scenes): episode k's outline reads the bible
   as of the start plus what the outlines of episodes before k in this season establish; it takes
   an A-plot kernel the series has not used (the procedural writer is given the next unused one;
   an LLM writer gets the used kernels and the bible in its request) and one beat of it carries a
   callback to a fact of an earlier episode (Beat.callbacks), which the scene writer plays;
2. the episodes, in parallel (as many as the replica's free episode slots and
   DOPPEL_SEASON_PARALLEL_EPISODES allow), each through the episode pipeline from its outline,
   each stored as a draft of the series (with its number and the callbacks it played) as soon as
   it is done;
3. a continuity pass over the season, in episode order: each episode's facts, running gag,
   relationship change, kernel and synopsis go into the bible, one transaction (one bible
   version) per episode.
Progress streams as SeasonEvent; the last one carries the series with its bible.

With `batch` (batch mode, half price), step 1 runs as above (each outline reads the ones before,
so they cannot go in one batch), then the season is one batch job (batch_jobs.py): every scene
of every episode in one provider batch, and steps 2 and 3 run when the poller assembles it. The
stream ends at once with the job (SeasonEvent.batch); while the job is unfinished the series
takes no other season (its episodes hold the next numbers).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import re
from collections.abc import AsyncIterator, Callable, Collection
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass

import grpc

from doppelganger.v1 import episode_pb2, script_pb2, series_pb2
from services.script import bible as bibles
from services.script import procedural, season_store
from services.script.batch_jobs import BatchJobs, BatchUnavailable, check_batch_writer, job_proto
from services.script.casting import Casting, resolve_cast
from services.script.fields import InvalidRequest, UnknownShow, check_text
from services.script.library import Library, LibraryError
from services.script.pipeline import EpisodePipeline, PipelineDeps
from services.script.premise import MAX_PREMISE_CHARS
from services.script.requests import (
    MAX_SCENES,
    MIN_SCENES,
    EpisodeOrder,
    RuntimeDefaults,
    validate_generate,
)
from services.script.time_limits import steps_within
from services.script.validation import allocate_targets
from services.script.writing import StoryContext, Writer, WriterError
from shared.access import current_caller

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
MAX_SERIES_ID_CHARS = 64
SERIES_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
OUTLINES_SHARE = 0.1  # Of a season's progress: the outlines; the episodes 0.1-0.9; the bible.
EPISODES_SHARE = 0.8


class SeriesBusy(Exception):
    """The series has an unfinished batch job (FAILED_PRECONDITION)."""


# A number of episode slots granted for the whole season, released when it ends.
Slots = Callable[[int], AbstractAsyncContextManager[int]]


@dataclass(frozen=True)
class SeasonOrder:
    """A validated WriteSeason request."""

    series_id: str
    show: str
    setting: str
    episodes: int
    seed: int
    writer: str
    scene_count: int | None
    premises: tuple[str, ...]
    batch: bool = False  # Scenes through the provider's batch API (batch_jobs.py).


@dataclass
class _Planned:
    """One episode of the season, outlined and ready to write."""

    number: int
    order: EpisodeOrder
    callbacks: list[str]


def check_season(
    request: script_pb2.WriteSeasonRequest,
    default_writer: str,
    writers: Collection[str],
    batch_writers: Collection[str] = (),
) -> SeasonOrder:
    """Every field of a WriteSeason request; InvalidRequest naming the field and its limit.
    `batch_writers`: the writers with a batch API here (batch=true needs one)."""
    limit = bibles.MAX_SEASON_EPISODES
    if not 1 <= request.episodes <= limit:
        raise InvalidRequest(f"episodes must be between 1 and {limit} (got {request.episodes})")
    if request.series_id:
        _check_series_id(request.series_id)
        if request.show.strip() or request.setting.strip():
            raise InvalidRequest(
                "series_id: give an existing series, or show and setting to start one, not both"
            )
    elif not request.show.strip() or not request.setting.strip():
        raise InvalidRequest("series_id, or show and setting, are required")
    if request.HasField("scene_count") and not MIN_SCENES <= request.scene_count <= MAX_SCENES:
        raise InvalidRequest(
            f"scene_count must be between {MIN_SCENES} and {MAX_SCENES} (got {request.scene_count})"
        )
    if len(request.premises) > request.episodes:
        raise InvalidRequest(
            f"premises has {len(request.premises)} items; at most one per episode "
            f"({request.episodes})"
        )
    premises = tuple(
        check_text(f"premises[{i}]", p, MAX_PREMISE_CHARS, required=False)
        for i, p in enumerate(request.premises)
    )
    writer = request.writer or default_writer
    if writer not in writers:
        raise InvalidRequest(
            f"writer must be one of: {', '.join(sorted(writers))} (got {writer[:40]!r})"
        )
    if request.batch:
        try:
            check_batch_writer(writer, batch_writers)
        except BatchUnavailable as exc:
            raise InvalidRequest(str(exc)) from None
    return SeasonOrder(
        series_id=request.series_id,
        show=request.show,
        setting=request.setting,
        episodes=request.episodes,
        seed=request.seed,
        writer=writer,
        scene_count=request.scene_count if request.HasField("scene_count") else None,
        premises=premises,
        batch=request.batch,
    )


def _check_series_id(series_id: str) -> str:
    if len(series_id) > MAX_SERIES_ID_CHARS or not SERIES_ID_PATTERN.fullmatch(series_id):
        raise InvalidRequest(
            f"series_id must be 1-{MAX_SERIES_ID_CHARS} letters, digits or . _ : - "
            f"(got {series_id[:80]!r})"
        )
    return series_id


class SeasonService:
    """The season RPCs' logic; the servicer hands over the library, the pipeline's deps, the
    runtime defaults and a way to hold episode slots."""

    def __init__(
        self,
        library: Library,
        deps: PipelineDeps,
        runtime: RuntimeDefaults,
        default_writer: str,
        parallel_episodes: int,
        episode_timeout: float,
    ) -> None:
        self._library = library
        self._deps = deps
        self._runtime = runtime
        self._default_writer = default_writer
        self._parallel = max(1, parallel_episodes)
        self._episode_timeout = episode_timeout

    # --- series -----------------------------------------------------------------------------

    async def create_series(self, request: script_pb2.CreateSeriesRequest) -> series_pb2.Series:
        """A new series: show, setting and cast resolved as GenerateEpisode resolves them (a
        cast sent is checked the same way), an empty bible. InvalidRequest / UnknownShow /
        LibraryError as the episode RPCs raise them."""
        title = check_text("title", request.title, MAX_TITLE_CHARS, required=False)
        order = validate_generate(
            script_pb2.GenerateEpisodeRequest(
                show=request.show, setting=request.setting, seed=request.seed, scene_count=1,
                cast=request.cast, relationships=request.relationships,
            ),
            self._runtime, self._default_writer, [self._default_writer],
        )  # fmt: skip
        series = series_pb2.Series(
            title=title or f"{order.show.title} in {_mid_sentence(order.setting.name)}",
            show=order.show,
            setting=order.setting,
            cast=order.cast,
            relationships=order.relationships,
            seed=request.seed,
        )
        return await self._library.create_series_record(series)

    async def get_series(self, series_id: str) -> series_pb2.Series:
        return await self._library.get_series_record(_check_series_id(series_id))

    async def list_series(
        self, request: script_pb2.ListSeriesRequest
    ) -> script_pb2.ListSeriesResponse:
        page = await self._library.list_series_records(
            request.page_size, request.page_token, show_id=request.show.strip()
        )
        return script_pb2.ListSeriesResponse(
            series=page.items, next_page_token=page.next_page_token
        )

    # --- seasons ----------------------------------------------------------------------------

    async def write_season(
        self, order: SeasonOrder, slots: Slots, batches: BatchJobs | None = None
    ) -> AsyncIterator[script_pb2.SeasonEvent]:
        """The season (module docstring); with `order.batch`, the outlines, then a batch job
        for the scenes (`batches`). Raises InvalidRequest, UnknownShow, SeriesBusy, LibraryError
        (Conflict when another pass updated the bible meanwhile) or a WriterError."""
        if order.batch and batches is None:
            raise InvalidRequest("batch: batch mode is not available on this server")
        series = await self._series_for(order)
        await self._check_not_busy(series.id)
        start = bibles.episode_count(series.bible)
        if self._deps.writers[order.writer].name == procedural.WRITER_NAME:
            left = bibles.kernels_left(series.bible.kernels_used)
            if order.episodes > left:
                raise InvalidRequest(
                    f"episodes must be at most {left}: series {series.id} has used "
                    f"{len(procedural.KERNEL_IDS) - left} of the procedural writer's "
                    f"{len(procedural.KERNEL_IDS)} A-plot kernels"
                )
        yield _event(0, 0.0, f"series {series.id}: {series.title}, episodes {start + 1}-"
                     f"{start + order.episodes}")  # fmt: skip
        planned: list[_Planned] = []
        async for event in self._outline_all(series, order, planned):
            yield event
        if order.batch:
            assert batches is not None
            yield await self._submit_batch(batches, series, planned)
            return
        async with slots(min(self._parallel, len(planned))) as parallel:
            written: dict[int, episode_pb2.Episode] = {}
            async for event in self._write_all(series, planned, parallel, written):
                yield event
        numbered = [(plan.number, written[plan.number]) for plan in planned]
        callbacks = {plan.number: plan.callbacks for plan in planned}
        grown = series
        async for number, grown, added in season_store.grow_bible(self._library, series, numbered):
            done = OUTLINES_SHARE + EPISODES_SHARE
            fraction = done + (1 - done) * (number - start) / len(planned)
            yield _event(
                number, min(fraction, 0.999),
                f"bible v{grown.version}: episode {number} added {added} facts"
                + (f", calls back to {', '.join(callbacks[number])}" if callbacks[number] else ""),
            )  # fmt: skip
        last = _event(0, 1.0, f"season written: {len(planned)} episodes in series {grown.id}")
        last.series.CopyFrom(grown)
        yield last

    async def _submit_batch(
        self, batches: BatchJobs, series: series_pb2.Series, planned: list[_Planned]
    ) -> script_pb2.SeasonEvent:
        """The season's scenes as one batch job; the event that says so (with the job)."""
        numbered = [(plan.number, plan.order) for plan in planned]
        record = await batches.submit_season(series.id, numbered, caller=current_caller().name)
        job = job_proto(record)
        scenes = sum(plan.order.scene_count for plan in planned)
        event = _event(
            0, OUTLINES_SHARE,
            f"batch job {job.id} submitted: the {scenes} scenes of episodes "
            f"{planned[0].number}-{planned[-1].number} ({job.stage} batch "
            f"{job.provider_batch_id}); GetBatch reports it, and the bible grows when the "
            "episodes are assembled",
        )  # fmt: skip
        event.batch.CopyFrom(job)
        event.series.CopyFrom(series)
        return event

    async def _check_not_busy(self, series_id: str) -> None:
        """SeriesBusy while a batch job of this series is unfinished: its episodes hold the
        next numbers, and a season written meanwhile would take them."""
        for record in await self._library.pending_batches():
            if record.series_id == series_id:
                raise SeriesBusy(
                    f"series_id: series {series_id} has an unfinished batch job {record.id} "
                    f"(stage {record.stage}); its episodes take the next numbers. Follow it "
                    f"with `doppel batch {record.id} --wait` and write more once it is done"
                )

    async def _series_for(self, order: SeasonOrder) -> series_pb2.Series:
        if order.series_id:
            return await self._library.get_series_record(order.series_id)
        return await self.create_series(
            script_pb2.CreateSeriesRequest(show=order.show, setting=order.setting, seed=order.seed)
        )

    def _casting(self, series: series_pb2.Series) -> Casting:
        """The series' cast as GenerateEpisode would take it: the default transform when it is
        one (so an episode's identity is the same as outside a series), else as edited."""
        default, links = procedural.transform_cast(series.show, series.setting)
        same = list(series.cast) == default and list(series.relationships) == links
        if same:
            return resolve_cast(series.show, series.setting)
        return resolve_cast(
            series.show, series.setting, list(series.cast), list(series.relationships)
        )

    async def _outline_all(
        self, series: series_pb2.Series, order: SeasonOrder, planned: list[_Planned]
    ) -> AsyncIterator[script_pb2.SeasonEvent]:
        """Every episode's outline, in order, each reading the bible grown by the ones before."""
        writer = self._deps.writers[order.writer]
        casting = self._casting(series)
        working = series.bible
        start = bibles.episode_count(working)
        for offset in range(order.episodes):
            number = start + offset + 1
            seed = bibles.season_seed(series.id, series.seed, number)
            premise = order.premises[offset] if offset < len(order.premises) else ""
            world_premise = casting.to_world(premise)
            count, target = self._runtime_of(series.show, seed, order.scene_count)
            used = list(working.kernels_used)
            kernel = bibles.next_kernel(series.show.id, seed, world_premise, used) or ""
            context = StoryContext(
                show=series.show, setting=series.setting, cast=list(casting.cast),
                relationships=list(casting.relationships), seed=seed, scene_count=count,
                premise=world_premise, kernel=kernel, avoid_kernels=tuple(used),
                bible=tuple(bibles.bible_lines(working)),
            )  # fmt: skip
            outline = await self._outline(writer, context, used)
            outline.premise = world_premise
            allocate_targets(outline, target)
            callbacks: list[str] = []
            fact = bibles.choose_callback(working, number, series.seed)
            if fact is not None:
                bibles.attach_callback(outline, fact)
                callbacks.append(fact.id)
            draft = episode_pb2.Episode(
                cast=casting.cast, relationships=casting.relationships, outline=outline
            )
            working = bibles.add_episode(working, draft, number)
            planned.append(
                _Planned(
                    number=number,
                    order=EpisodeOrder(
                        show=series.show,
                        setting=series.setting,
                        scene_count=count,
                        seed=seed,
                        request_id="",
                        writer=order.writer,
                        target_runtime_seconds=round(target, 1),
                        premise=premise,
                        world_premise=world_premise,
                        cast=casting.cast,
                        relationships=casting.relationships,
                        custom_cast=casting.edited,
                        outline=outline,
                    ),
                    callbacks=callbacks,
                )
            )
            yield _event(
                number, OUTLINES_SHARE * (offset + 1) / order.episodes,
                f"outline {number}: {outline.title} (kernel {bibles.kernel_key(outline.kernel)})",
            )  # fmt: skip

    async def _outline(
        self, writer: Writer, context: StoryContext, used: list[str]
    ) -> episode_pb2.Outline:
        """The writer's outline; one more try, told to avoid it too, when an LLM's kernel is
        one the series used (the procedural writer is given an unused one)."""
        outline = await writer.write_outline(context)
        if bibles.kernel_key(outline.kernel) in used:
            avoid = (*context.avoid_kernels, outline.kernel)
            outline = await writer.write_outline(dataclasses.replace(context, avoid_kernels=avoid))
        return outline

    def _runtime_of(
        self, show: episode_pb2.Show, seed: int, scene_count: int | None
    ) -> tuple[int, float]:
        if scene_count is not None:
            return scene_count, scene_count * self._runtime.scene_seconds
        target = self._runtime.episode_seconds
        count = procedural.auto_scene_count(show, seed, target, self._runtime.scene_seconds)
        return count, target

    async def _write_all(
        self,
        series: series_pb2.Series,
        planned: list[_Planned],
        parallel: int,
        written: dict[int, episode_pb2.Episode],
    ) -> AsyncIterator[script_pb2.SeasonEvent]:
        """The episodes, `parallel` at a time; their events as they come. The first failure
        stops the others and is raised."""
        queue: asyncio.Queue[script_pb2.SeasonEvent | Exception | None] = asyncio.Queue()
        limit = asyncio.Semaphore(parallel)
        progress = {plan.number: 0.0 for plan in planned}

        def overall() -> float:
            return OUTLINES_SHARE + EPISODES_SHARE * sum(progress.values()) / len(progress)

        async def one(plan: _Planned) -> None:
            try:
                async with limit:
                    async for event in self._write_one(series, plan, written):
                        progress[plan.number] = event.event.fraction_done
                        event.fraction_done = round(min(overall(), 0.9), 4)
                        await queue.put(event)
                await queue.put(None)
            except Exception as exc:  # Handed to the stream, which raises it.
                await queue.put(exc)

        tasks = [asyncio.create_task(one(plan)) for plan in planned]
        try:
            finished = 0
            while finished < len(tasks):
                item = await queue.get()
                if isinstance(item, Exception):
                    raise item
                if item is None:
                    finished += 1
                else:
                    yield item
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _write_one(
        self, series: series_pb2.Series, plan: _Planned, written: dict[int, episode_pb2.Episode]
    ) -> AsyncIterator[script_pb2.SeasonEvent]:
        """One episode through the pipeline, stored as a draft of the series; its events."""
        pipeline = EpisodePipeline(self._deps, plan.order)
        async for event in steps_within(pipeline.run(), self._episode_timeout):
            if event.HasField("episode"):
                written[plan.number] = await season_store.store_episode(
                    self._library, series.id, plan.number, event.episode
                )
                event.ClearField("episode")  # GetEpisode has it; the stream stays light.
            season_event = _event(plan.number, 0.0, event.message)
            season_event.event.CopyFrom(event)
            yield season_event
        if plan.number not in written:
            raise RuntimeError(f"episode {plan.number} ended without a draft")


def _mid_sentence(name: str) -> str:
    """'A Mars colony in 2157' -> 'a Mars colony in 2157' (only a leading article lowered)."""
    first, _, rest = name.partition(" ")
    return f"{first.lower()} {rest}" if first.lower() in ("a", "an", "the") and rest else name


def _event(number: int, fraction: float, message: str) -> script_pb2.SeasonEvent:
    return script_pb2.SeasonEvent(
        episode_number=number, fraction_done=round(fraction, 4), message=message
    )


@contextlib.asynccontextmanager
async def rpc_errors(context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
    """The season RPCs' errors as statuses: INVALID_ARGUMENT naming the field and its limit,
    NOT_FOUND, the library's and the writers' own codes, DEADLINE_EXCEEDED."""
    try:
        yield
    except InvalidRequest as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except UnknownShow as exc:
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except SeriesBusy as exc:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    except (LibraryError, WriterError) as exc:
        await context.abort(exc.grpc_code, str(exc))
    except TimeoutError:
        await context.abort(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "an episode of the season was not finished within DOPPEL_EPISODE_TIMEOUT_SECONDS "
            "or the client's deadline; the drafts already stored stay, and asking again with "
            "the series' id (series_id) finds them",
        )


@contextlib.asynccontextmanager
async def no_slots(wanted: int) -> AsyncIterator[int]:
    """Slots for a caller outside a server (tests): all it wants."""
    yield wanted
