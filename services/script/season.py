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
from services.script import procedural
from services.script.casting import Casting, resolve_cast
from services.script.fields import InvalidRequest, UnknownShow, check_text
from services.script.library import Conflict, Library, LibraryError
from services.script.llm.caller import client_deadline
from services.script.pipeline import EpisodePipeline, PipelineDeps
from services.script.premise import MAX_PREMISE_CHARS
from services.script.requests import (
    MAX_SCENES,
    MIN_SCENES,
    EpisodeOrder,
    RuntimeDefaults,
    validate_generate,
)
from services.script.validation import allocate_targets
from services.script.writing import StoryContext, Writer, WriterError

log = logging.getLogger(__name__)

MAX_TITLE_CHARS = 200
MAX_SERIES_ID_CHARS = 64
SERIES_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]+")
OUTLINES_SHARE = 0.1  # Of a season's progress: the outlines; the episodes 0.1-0.9; the bible.
EPISODES_SHARE = 0.8

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


@dataclass
class _Planned:
    """One episode of the season, outlined and ready to write."""

    number: int
    order: EpisodeOrder
    callbacks: list[str]


def check_season(
    request: script_pb2.WriteSeasonRequest, default_writer: str, writers: Collection[str]
) -> SeasonOrder:
    """Every field of a WriteSeason request; InvalidRequest naming the field and its limit."""
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
        raise InvalidRequest("batch: seasons through a provider's batch API are not available")
    return SeasonOrder(
        series_id=request.series_id,
        show=request.show,
        setting=request.setting,
        episodes=request.episodes,
        seed=request.seed,
        writer=writer,
        scene_count=request.scene_count if request.HasField("scene_count") else None,
        premises=premises,
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
        self, order: SeasonOrder, slots: Slots
    ) -> AsyncIterator[script_pb2.SeasonEvent]:
        """The season (module docstring). Raises InvalidRequest, UnknownShow, LibraryError
        (Conflict when another pass updated the bible meanwhile) or a WriterError."""
        series = await self._series_for(order)
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
        async with slots(min(self._parallel, len(planned))) as parallel:
            written: dict[int, episode_pb2.Episode] = {}
            async for event in self._write_all(series, planned, parallel, written):
                yield event
        bible, version = series.bible, series.version
        for plan in planned:
            episode = written[plan.number]
            bible = bibles.add_episode(bible, episode, plan.number)
            series = await self._library.update_bible(
                series.id, bible, expected_version=version, episode_number=plan.number
            )
            version = series.version
            added = sum(1 for f in bible.facts if f.episode_number == plan.number)
            done = OUTLINES_SHARE + EPISODES_SHARE
            fraction = done + (1 - done) * (plan.number - start) / len(planned)
            yield _event(
                plan.number, min(fraction, 0.999),
                f"bible v{version}: episode {plan.number} added {added} facts"
                + (f", calls back to {', '.join(plan.callbacks)}" if plan.callbacks else ""),
            )  # fmt: skip
        last = _event(0, 1.0, f"season written: {len(planned)} episodes in series {series.id}")
        last.series.CopyFrom(series)
        yield last

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
        with client_deadline(self._episode_timeout):
            async with asyncio.timeout(self._episode_timeout):
                async for event in pipeline.run():
                    if event.HasField("episode"):
                        written[plan.number] = await self._store(series, plan, event.episode)
                        event.ClearField("episode")  # GetEpisode has it; the stream stays light.
                    season_event = _event(plan.number, 0.0, event.message)
                    season_event.event.CopyFrom(event)
                    yield season_event
        if plan.number not in written:
            raise RuntimeError(f"episode {plan.number} ended without a draft")

    async def _store(
        self, series: series_pb2.Series, plan: _Planned, episode: episode_pb2.Episode
    ) -> episode_pb2.Episode:
        """The draft with its place in the series and the callbacks its script plays, stored in
        one transaction (an identical draft stored before is the answer)."""
        stored = episode_pb2.Episode()
        stored.CopyFrom(episode)
        stored.series_id = series.id
        stored.episode_number = plan.number
        del stored.bible_callbacks[:]
        stored.bible_callbacks.extend(played_callbacks(stored))
        try:
            await self._library.save_draft(
                stored, kind="generated", series_id=series.id, episode_number=plan.number
            )
        except Conflict:
            return (await self._library.get_draft(stored.id)).episode
        return stored


def played_callbacks(episode: episode_pb2.Episode) -> list[str]:
    """The bible facts the outline's beats call back to that the scenes actually play (the
    fact's words in a line or an action of any scene)."""
    said = " ".join(
        element.dialogue.text or element.action.text
        for scene in episode.scenes
        for element in scene.elements
    )
    said = _words(said)
    found = [
        c.fact_id
        for act in episode.outline.acts
        for beat in act.beats
        for c in beat.callbacks
        if _words(c.text) and _words(c.text) in said
    ]
    return list(dict.fromkeys(found))


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9']+", text.lower()))


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
