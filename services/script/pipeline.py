"""The episode pipeline: cast, outline, scenes in parallel, continuity pass, comedy pass,
validation, refinement, render; and the regeneration of one scene with notes.

Every stage is an INTERNAL span; outline and scenes go through the cache under content keys, so a
retry of the same request regenerates only what is missing. A scene's key hashes what its writer
is given: the writer's identity, the story (show, setting, seed, cast, premise) and the scene's
view of the outline (cards.py: the outline-level fields, every beat's structure, its own beat and
card, the cards that feed it). So an outline sent back with one beat edited rewrites that scene
and finds the others in the cache. Progress is yielded as GenerateEpisodeEvent messages; the last
one carries the episode.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from opentelemetry import metrics, trace

from doppelganger.v1 import episode_pb2, scene_pb2, scene_pb2_grpc, script_pb2
from services.script import comedy, store
from services.script.cards import beat_at, feeding_summaries, scene_view
from services.script.comedy import comedy_pass
from services.script.continuity import continuity_pass
from services.script.library import Library, NotFound
from services.script.llm.progress import reporting_output
from services.script.llm.provenance import (
    OUTLINE,
    SCENE,
    Provenance,
    collect_provenance,
    record_bytes,
    record_from_bytes,
)
from services.script.refinement import RefinementPolicy, refine
from services.script.requests import EpisodeOrder
from services.script.scene_progress import PROGRESS_INTERVAL_SECONDS, SceneProgress
from services.script.validation import allocate_targets, validate_episode
from services.script.writing import StoryContext, Writer
from shared.telemetry import Telemetry, trace_id_hex

log = logging.getLogger(__name__)

Stage = script_pb2.Stage
# Fraction of the whole episode done when each stage's event is sent; scenes share
# SCENES..CONTINUITY, refinement rounds share REFINEMENT..RENDER.
PROGRESS = {
    Stage.STAGE_ACCEPTED: 0.0,
    Stage.STAGE_CAST: 0.02,
    Stage.STAGE_OUTLINE: 0.05,
    Stage.STAGE_SCENES: 0.10,
    Stage.STAGE_CONTINUITY: 0.78,
    Stage.STAGE_COMEDY: 0.80,
    Stage.STAGE_VALIDATION: 0.85,
    Stage.STAGE_REFINEMENT: 0.87,
    Stage.STAGE_RENDER: 0.95,
    Stage.STAGE_DONE: 1.0,
}
# Part of the episode id: bump when the comedy pass or refinement changes what they produce.
FINISHING_VERSION = "continuity-2;comedy-2;refinement-3"
SCORE_BUCKETS = tuple(round(0.05 * step, 2) for step in range(1, 21))


def episode_id_for(order: EpisodeOrder, writer: Writer, policy: RefinementPolicy) -> str:
    """Stable id of the episode a request asks for (same inputs, same id; another premise, cast
    or outline, another id)."""
    finishing = (FINISHING_VERSION, policy.rounds, policy.threshold)
    return "ep-" + store.content_key(*_identity(order, writer), *finishing)[:20]


def regenerated_id(episode_id: str, scene_index: int, notes: str) -> str:
    """Id of the episode RegenerateScene makes: a content hash of the original id, the scene and
    the notes, so the same request finds the same episode and the original keeps its own id."""
    return "ep-" + store.content_key("regenerate", episode_id, scene_index, notes)[:20]


def _digest(messages: Iterable[Message]) -> str:
    """One hash of some messages, serialized deterministically."""
    return store.content_key(*(m.SerializeToString(deterministic=True).hex() for m in messages))


def _writer_identity(writer: Writer) -> tuple[object, ...]:
    return (writer.name, writer.model, writer.prompt_version)


def _story(order: EpisodeOrder) -> tuple[object, ...]:
    """What every part of the episode is written from besides the outline: show, setting, seed,
    the cast and relationships the writers are given, the premise in their world."""
    return (
        order.show.id,
        _digest((order.show,)),
        order.setting.id,
        order.setting.description,
        order.seed,
        _digest(order.cast),
        _digest(order.relationships),
        order.world_premise,
    )


def _identity(order: EpisodeOrder, writer: Writer) -> tuple[object, ...]:
    """Everything that shapes the draft (part of the episode id and the outline's key)."""
    sent = "" if order.outline is None else _digest((order.outline,))
    return (
        *_writer_identity(writer),
        *_story(order),
        order.scene_count,
        order.target_runtime_seconds,
        order.premise,
        sent,
        order.custom_cast,
    )


def scene_key(writer: Writer, story: tuple[object, ...], view: episode_pb2.Outline) -> str:
    """The cache key of a scene: its writer, the story, and the view of the outline it is
    written from (cards.scene_view)."""
    return store.content_key("scene", *_writer_identity(writer), *story, _digest((view,)))


@dataclass(frozen=True)
class PipelineMetrics:
    """Comedy and validation figures, one recording per episode."""

    joke_score: metrics.Histogram
    rewrites: metrics.Counter
    validation_score: metrics.Histogram
    refinement_rounds: metrics.Counter

    @classmethod
    def create(cls, meter: metrics.Meter) -> PipelineMetrics:
        return cls(
            joke_score=meter.create_histogram(
                "doppel.comedy.joke_score",
                unit="1",
                description="Mean joke score of an episode, before (draft) and after the pass.",
                explicit_bucket_boundaries_advisory=SCORE_BUCKETS,
            ),
            rewrites=meter.create_counter(
                "doppel.comedy.rewrites",
                unit="{rewrite}",
                description="Joke rewrites tried by the comedy pass, by outcome (kept, rejected).",
            ),
            validation_score=meter.create_histogram(
                "doppel.validation.score",
                unit="1",
                description="Validator's overall score, of the draft and of the final script.",
                explicit_bucket_boundaries_advisory=SCORE_BUCKETS,
            ),
            refinement_rounds=meter.create_counter(
                "doppel.refinement.rounds",
                unit="{round}",
                description="Refinement rounds, by whether the round was kept.",
            ),
        )


@dataclass
class PipelineDeps:
    """What the pipeline talks to."""

    cache: store.SoftCache
    scenes: scene_pb2_grpc.SceneServiceStub
    writers: Mapping[str, Writer]
    telemetry: Telemetry
    max_parallel_scenes: int
    rpc_timeout: float
    policy: RefinementPolicy
    metrics: PipelineMetrics
    library: Library | None = None  # The record: a stored episode is never written again.


async def stored_episode(
    deps: PipelineDeps, episode_id: str
) -> tuple[episode_pb2.Episode, str] | None:
    """The library's draft with this id, else the cache's (finished episodes were cached before
    the library existed; the service stores them now, the cache keeps only parts), and which
    ("library", "cache"); None when neither has it."""
    if deps.library is not None:
        try:
            return (await deps.library.get_draft(episode_id)).episode, "library"
        except NotFound:
            pass
    cached = _parse(episode_pb2.Episode, await deps.cache.get(store.EPISODES, episode_id))
    return None if cached is None else (cached, "cache")


class EpisodePipeline:
    """Runs one GenerateEpisode request."""

    def __init__(self, deps: PipelineDeps, order: EpisodeOrder) -> None:
        self._deps = deps
        self._order = order
        self._tracer = deps.telemetry.tracer
        self._writer = deps.writers[order.writer]
        self._identity = _identity(order, self._writer)
        self._story = _story(order)
        self._labels = {"doppel.show": order.show.id, "doppel.writer": order.writer}
        self.episode_id = episode_id_for(order, self._writer, deps.policy)
        self.scenes_from_cache = 0
        self._outline_was_cached = order.outline is not None
        self._provenance = Provenance()
        self._progress = SceneProgress(order.scene_count, 0.0, 0.0)

    def _event(
        self, stage: int, message: str, fraction: float | None = None
    ) -> script_pb2.GenerateEpisodeEvent:
        return script_pb2.GenerateEpisodeEvent(
            stage=stage,
            fraction_done=PROGRESS[stage] if fraction is None else fraction,
            message=message,
            episode_id=self.episode_id,
            trace_id=trace_id_hex(),
        )

    async def run(self) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        order = self._order
        yield self._event(Stage.STAGE_ACCEPTED, f"{order.show.title} in {order.setting.name}")
        finished = await stored_episode(self._deps, self.episode_id)
        if finished is not None:
            event = self._event(
                Stage.STAGE_DONE, f"already written; returned from the {finished[1]}"
            )
            event.episode.CopyFrom(finished[0])
            yield event
            return
        context = self._cast()
        yield self._event(Stage.STAGE_CAST, f"cast of {len(context.cast)} transformed")
        # Which writer wrote each part, fallbacks and LLM usage; scene tasks inherit the scope.
        with collect_provenance() as provenance:
            self._provenance = provenance
            outline = await self._outline(context)
            context = dataclasses.replace(context, kernel=outline.kernel, premise=outline.premise)
            event = self._event(Stage.STAGE_OUTLINE, f"outline: {outline.title}")
            event.outline.CopyFrom(outline)
            yield event
            episode = self._new_episode(context, outline)
            async for event in self._write_scenes(context, episode):
                yield event
            async for event in self._continuity(context, episode):
                yield event
            yield await self._comedy(context, episode)
            yield self._validate(episode)
            async for event in self._refine(context, episode):
                yield event
        episode.attempts.extend(provenance.attempts())
        episode.usage.CopyFrom(provenance.usage())
        yield self._event(Stage.STAGE_RENDER, "rendering the screenplay")
        await render(self._deps, episode)
        done = self._event(Stage.STAGE_DONE, f"{len(episode.scenes)} scenes written")
        done.episode.CopyFrom(episode)
        yield done

    def _cast(self) -> StoryContext:
        order = self._order
        with self._tracer.start_as_current_span("cast") as span:
            span.set_attributes(
                {"doppel.cast.size": len(order.cast),
                 "doppel.relationships": len(order.relationships),
                 "doppel.cast.edited": order.custom_cast,
                 "doppel.premise.chars": len(order.premise)}
            )  # fmt: skip
        return StoryContext(
            show=order.show, setting=order.setting, cast=list(order.cast),
            relationships=list(order.relationships), seed=order.seed,
            scene_count=order.scene_count, request_id=order.request_id,
            premise=order.world_premise,
        )  # fmt: skip

    def _new_episode(
        self, context: StoryContext, outline: episode_pb2.Outline
    ) -> episode_pb2.Episode:
        order = self._order
        return episode_pb2.Episode(
            id=self.episode_id,
            request_id=order.request_id,
            show=order.show,
            setting=order.setting,
            cast=context.cast,
            relationships=context.relationships,
            outline=outline,
            writer=self._writer.name,
            model=self._writer.model,
            seed=order.seed,
            premise=order.premise,
        )

    async def _outline(self, context: StoryContext) -> episode_pb2.Outline:
        if self._order.outline is not None:
            return self._given_outline()
        outline, cached = await cached_outline(self._deps, self._writer, context, self._order)
        self._outline_was_cached = cached
        # Who wrote it and what it cost: restored for an outline an earlier run wrote, stored
        # beside a new one (a resumed episode counts it in its usage either way).
        key = outline_key(self._order, self._writer, tuple(context.avoid_kernels))
        if cached:
            await self._restore_records([key])
        else:
            await self._store_record(key, OUTLINE)
        return outline

    def _given_outline(self) -> episode_pb2.Outline:
        """The request's outline (checked and renamed into the episode's world), its runtime
        target shared among its beats."""
        outline = episode_pb2.Outline()
        outline.CopyFrom(self._order.outline)
        allocate_targets(outline, self._order.target_runtime_seconds)
        with self._tracer.start_as_current_span("outline") as span:
            span.set_attributes(
                {"doppel.outline.given": True, "doppel.outline.scenes": outline.scene_count}
            )
        return outline

    async def _write_scenes(
        self, context: StoryContext, episode: episode_pb2.Episode
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        count = self._order.scene_count
        views = [scene_view(episode.outline, index) for index in range(count)]
        keys = [scene_key(self._writer, self._story, view) for view in views]
        cached = await self._cached_scenes(keys)
        await self._restore_records([key for key, data in zip(keys, cached, strict=True) if data])
        limit = asyncio.Semaphore(self._deps.max_parallel_scenes)
        self._progress = SceneProgress(
            count, PROGRESS[Stage.STAGE_SCENES], PROGRESS[Stage.STAGE_CONTINUITY]
        )
        tasks = [
            asyncio.create_task(
                self._scene(context, views[index], index, keys[index], cached[index], limit)
            )
            for index in range(count)
        ]
        scenes: dict[int, episode_pb2.Scene] = {}
        pending: set[asyncio.Task[episode_pb2.Scene]] = set(tasks)
        try:
            while pending:
                # Scenes as they finish; between them, how far the streamed ones have got.
                done, pending = await asyncio.wait(
                    pending, timeout=PROGRESS_INTERVAL_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                for finished in sorted(done, key=tasks.index):
                    scene = finished.result()
                    scenes[scene.index] = scene
                    fraction = self._progress.finished(scene.index)
                    event = self._event(
                        Stage.STAGE_SCENES, f"scene {scene.number} of {count} written", fraction
                    )
                    event.scene.CopyFrom(scene)
                    yield event
                update = None if done else self._progress.update()
                if update is not None:
                    yield self._event(Stage.STAGE_SCENES, update[1], update[0])
        finally:
            for task in tasks:
                task.cancel()
        episode.scenes.extend(scenes[index] for index in range(count))
        episode.runtime_seconds = round(sum(s.duration_seconds for s in episode.scenes), 1)

    async def _cached_scenes(self, keys: list[str]) -> list[bytes | None]:
        """Scenes already written, looked up in one call. Scene keys hold their view of the
        outline, so an outline written just now has none: its episode skips the lookup (a round
        trip on the way to the first LLM call). A resumed episode finds its outline, and an
        outline the request sent may share scenes with an earlier one, so those look."""
        if not self._outline_was_cached:
            return [None] * len(keys)
        return await self._deps.cache.get_many(store.SCENES, keys)

    async def _scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        index: int,
        key: str,
        cached_data: bytes | None,
        limit: asyncio.Semaphore,
    ) -> episode_pb2.Scene:
        cached = _parse(episode_pb2.Scene, cached_data)
        if cached is not None:
            with self._tracer.start_as_current_span(f"scene {index + 1}") as span:
                span.set_attributes({"doppel.scene.index": index, "doppel.cache.hit": True})
            self.scenes_from_cache += 1
            return cached
        async with limit:
            scene = await self._write_scene(context, outline, index)
        # Stored before the client hears of it (outside the parallelism slot, which the next
        # scene can use meanwhile): a resumed episode never writes it again.
        await self._deps.cache.set(store.SCENES, key, scene.SerializeToString())
        await self._store_record(key, SCENE, index)
        return scene

    async def _store_record(self, key: str, stage: str, scene_index: int = -1) -> None:
        """Who wrote the part just stored under `key`, and what it cost (LLM writers only)."""
        record = self._provenance.for_stage(stage, scene_index)
        if record is not None:
            await self._deps.cache.set(store.PART_USAGE, key, record_bytes(record))

    async def _restore_records(self, keys: list[str]) -> None:
        """The records of parts an earlier, interrupted run wrote: their cost is the episode's."""
        for data in await self._deps.cache.get_many(store.PART_USAGE, keys):
            record = record_from_bytes(data)
            if record is not None:
                self._provenance.records.append(record)

    async def _write_scene(
        self, context: StoryContext, view: episode_pb2.Outline, index: int
    ) -> episode_pb2.Scene:
        """Scene `index` from its view of the outline; `earlier` is the cards that feed it."""
        with self._tracer.start_as_current_span(f"scene {index + 1}") as span:
            span.set_attributes({"doppel.scene.index": index, "doppel.cache.hit": False})
            earlier = feeding_summaries(view, index)
            beat = beat_at(view, index)
            self._progress.expect(index, beat.target_seconds if beat is not None else 0.0)
            with reporting_output(lambda tokens: self._progress.output(index, tokens)):
                scene = await self._writer.write_scene(context, view, index, earlier)
            span.set_attributes(scene_attributes(scene))
            return scene

    async def _continuity(
        self, context: StoryContext, episode: episode_pb2.Episode
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        """The continuity pass; one event per note, with its outcome."""
        notes = await continuity_pass(
            self._writer, context, episode, self._deps.max_parallel_scenes, self._tracer
        )
        for note in notes:
            event = self._event(
                Stage.STAGE_CONTINUITY,
                f"continuity: scene {note.scene_index + 1}, {note.kind} ({note.outcome})",
            )
            event.continuity_note.CopyFrom(note)
            yield event

    async def _comedy(
        self, context: StoryContext, episode: episode_pb2.Episode
    ) -> script_pb2.GenerateEpisodeEvent:
        report = await run_comedy_pass(self._deps, self._writer, context, episode, self._labels)
        episode.comedy.CopyFrom(report)
        return self._event(
            Stage.STAGE_COMEDY,
            f"comedy pass: {report.rewritten} of the {report.rewrites_tried} weakest jokes "
            f"rewritten; mean joke score {report.mean_before:.2f} -> {report.mean_after:.2f}",
        )

    def _validate(self, episode: episode_pb2.Episode) -> script_pb2.GenerateEpisodeEvent:
        report = run_validation(self._deps, episode)
        self._deps.metrics.validation_score.record(
            report.overall, {**self._labels, "doppel.validation.phase": "draft"}
        )
        verdict = "passes" if report.passed else f"fails (threshold {report.threshold:.2f})"
        return self._event(
            Stage.STAGE_VALIDATION,
            f"validation: {report.overall:.2f}, {verdict}; {len(report.issues)} issue(s)",
        )

    async def _refine(
        self, context: StoryContext, episode: episode_pb2.Episode
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        policy = self._deps.policy
        start, end = PROGRESS[Stage.STAGE_REFINEMENT], PROGRESS[Stage.STAGE_RENDER]
        rounds = refine(self._writer, context, episode, policy, self._tracer)
        async for record in rounds:
            self._deps.metrics.refinement_rounds.add(
                1, {**self._labels, "doppel.refinement.accepted": record.accepted}
            )
            kept = "kept" if record.accepted else "not kept: no improvement"
            event = self._event(
                Stage.STAGE_REFINEMENT,
                f"refinement round {record.round}: {len(record.scene_indices)} scene(s) revised, "
                f"score {record.score_before:.2f} -> {record.score_after:.2f} ({kept})",
                start + (end - start) * record.round / max(1, policy.rounds),
            )
            event.refinement_round.CopyFrom(record)
            yield event
        self._deps.metrics.validation_score.record(
            episode.validation.overall, {**self._labels, "doppel.validation.phase": "final"}
        )


def scene_attributes(scene: episode_pb2.Scene) -> dict[str, int | float]:
    lines = sum(1 for e in scene.elements if e.WhichOneof("element") == "dialogue")
    return {
        "doppel.scene.lines": lines,
        "doppel.scene.jokes": len(scene.jokes),
        "doppel.scene.duration_seconds": scene.duration_seconds,
    }


async def run_comedy_pass(
    deps: PipelineDeps,
    writer: Writer,
    context: StoryContext,
    episode: episode_pb2.Episode,
    labels: Mapping[str, str],
    scene_indices: frozenset[int] | None = None,
) -> episode_pb2.ComedyReport:
    """The comedy pass in its span, with its metrics."""
    with deps.telemetry.tracer.start_as_current_span("comedy pass") as span:
        report = await comedy_pass(
            writer, context, episode, scene_indices, deps.max_parallel_scenes
        )
        span.set_attributes(
            {"doppel.comedy.jokes": report.jokes_scored,
             "doppel.comedy.rewrites_tried": report.rewrites_tried,
             "doppel.comedy.rewritten": report.rewritten,
             "doppel.comedy.mean_before": report.mean_before,
             "doppel.comedy.mean_after": report.mean_after}
        )  # fmt: skip
    joke_score = deps.metrics.joke_score
    joke_score.record(report.mean_before, {**labels, "doppel.comedy.phase": "draft"})
    joke_score.record(report.mean_after, {**labels, "doppel.comedy.phase": "final"})
    deps.metrics.rewrites.add(report.rewritten, {**labels, "doppel.comedy.outcome": "kept"})
    rejected = report.rewrites_tried - report.rewritten
    deps.metrics.rewrites.add(rejected, {**labels, "doppel.comedy.outcome": "rejected"})
    return report


def run_validation(
    deps: PipelineDeps, episode: episode_pb2.Episode
) -> episode_pb2.ValidationReport:
    """Validates the episode in its span and stores the report on it."""
    with deps.telemetry.tracer.start_as_current_span("validation") as span:
        report = validate_episode(episode, deps.policy.threshold)
        episode.validation.CopyFrom(report)
        errors = sum(1 for i in report.issues if i.severity >= episode_pb2.SEVERITY_ERROR)
        span.set_attributes(
            {"doppel.validation.overall": report.overall,
             "doppel.validation.passed": report.passed,
             "doppel.validation.character_consistency": report.character_consistency,
             "doppel.validation.comedy_distribution": report.comedy_distribution,
             "doppel.validation.plot_coherence": report.plot_coherence,
             "doppel.validation.production": report.production,
             "doppel.validation.issues": len(report.issues),
             "doppel.validation.errors": errors}
        )  # fmt: skip
    return report


async def render(deps: PipelineDeps, episode: episode_pb2.Episode) -> None:
    """Fountain from the scene service; on failure the episode keeps a clear render_error."""
    request = scene_pb2.RenderEpisodeRequest(
        episode=episode, format=scene_pb2.DOCUMENT_FORMAT_FOUNTAIN
    )
    episode.fountain, episode.page_count, episode.render_error = "", 0, ""
    with deps.telemetry.tracer.start_as_current_span("render") as span:
        try:
            chunks = [
                chunk
                async for chunk in deps.scenes.RenderEpisode(request, timeout=deps.rpc_timeout)
            ]
        except grpc.aio.AioRpcError as exc:
            episode.render_error = f"scene service: {exc.code().name}: {exc.details()}"
            span.set_status(trace.Status(trace.StatusCode.ERROR, episode.render_error))
            log.warning("render failed for %s: %s", episode.id, episode.render_error)
            return
        episode.fountain = b"".join(chunk.data for chunk in chunks).decode()
        episode.page_count = chunks[0].info.page_count if chunks else 0
        span.set_attributes(
            {
                "doppel.render.pages": episode.page_count,
                "doppel.render.bytes": len(episode.fountain),
            }
        )


async def regenerate_scene(
    deps: PipelineDeps,
    writer: Writer,
    original: episode_pb2.Episode,
    scene_index: int,
    notes: str,
) -> episode_pb2.Episode:
    """A new episode: `original` with scene `scene_index` rewritten following `notes`, its jokes
    re-scored and punched up, the whole script re-validated and re-rendered, and stored under
    `regenerated_id`. Everything else is kept as it was."""
    new_id = regenerated_id(original.id, scene_index, notes)
    stored = await stored_episode(deps, new_id)
    if stored is not None:
        return stored[0]
    episode = episode_pb2.Episode()
    episode.CopyFrom(original)
    episode.id, episode.parent_episode_id = new_id, original.id
    episode.revisions.add(scene_index=scene_index, notes=notes, parent_episode_id=original.id)
    context = StoryContext(
        show=episode.show, setting=episode.setting, cast=list(episode.cast),
        relationships=list(episode.relationships), seed=episode.seed,
        scene_count=len(episode.scenes), notes=(notes,) if notes else (),
        premise=episode.outline.premise, kernel=episode.outline.kernel,
    )  # fmt: skip
    scene = next(s for s in episode.scenes if s.index == scene_index)
    view = scene_view(episode.outline, scene_index)
    with deps.telemetry.tracer.start_as_current_span(f"revise scene {scene_index + 1}") as span:
        revised = await writer.revise_scene(context, view, scene, list(context.notes))
        revised.index, revised.number = scene.index, scene.number
        scene.CopyFrom(revised)
        span.set_attributes({"doppel.scene.index": scene_index, **scene_attributes(scene)})
    labels = {"doppel.show": episode.show.id, "doppel.writer": writer.name}
    await run_comedy_pass(deps, writer, context, episode, labels, frozenset({scene_index}))
    episode.comedy.mean_after = comedy.mean_score(j for s in episode.scenes for j in s.jokes)
    report = run_validation(deps, episode)
    deps.metrics.validation_score.record(
        report.overall, {**labels, "doppel.validation.phase": "regenerated"}
    )
    await render(deps, episode)
    return episode


def outline_key(order: EpisodeOrder, writer: Writer, avoid: tuple[str, ...] = ()) -> str:
    """The cache key of the outline the writer writes for `order` (avoiding `avoid` kernels:
    ProposeOutlines' alternatives); the first alternative is the episode's own outline."""
    extra = ("avoid", *avoid) if avoid else ()
    return store.content_key("outline", *_identity(order, writer), *extra)


async def cached_outline(
    deps: PipelineDeps, writer: Writer, context: StoryContext, order: EpisodeOrder
) -> tuple[episode_pb2.Outline, bool]:
    """The outline from the cache, or written now and cached before anyone hears of it (a
    resumed episode never writes it again); and whether it came from the cache."""
    key = outline_key(order, writer, tuple(context.avoid_kernels))
    with deps.telemetry.tracer.start_as_current_span("outline") as span:
        cached = _parse(episode_pb2.Outline, await deps.cache.get(store.OUTLINES, key))
        span.set_attribute("doppel.cache.hit", cached is not None)
        if cached is not None:
            return cached, True
        outline = await write_outline(writer, context, order)
        span.set_attributes(
            {"doppel.outline.scenes": outline.scene_count,
             "doppel.outline.target_seconds": outline.target_runtime_seconds,
             "doppel.outline.acts": len(outline.acts),
             "doppel.outline.kernel": outline.kernel}
        )  # fmt: skip
        await deps.cache.set(store.OUTLINES, key, outline.SerializeToString())
        return outline, False


async def write_outline(
    writer: Writer, context: StoryContext, order: EpisodeOrder
) -> episode_pb2.Outline:
    """The writer's outline with the request's runtime target (whatever the writer assumed) and
    the premise it was written for."""
    outline = await writer.write_outline(context)
    allocate_targets(outline, order.target_runtime_seconds)
    outline.premise = context.premise
    return outline


MessageT = TypeVar("MessageT", episode_pb2.Episode, episode_pb2.Outline, episode_pb2.Scene)


def _parse(message_type: type[MessageT], data: bytes | None) -> MessageT | None:
    """A cached message, or None when absent or unreadable (a corrupt entry is a miss)."""
    if data is None:
        return None
    message = message_type()
    try:
        message.ParseFromString(data)
    except DecodeError:
        log.warning("ignoring an unreadable cached %s", message_type.__name__)
        return None
    return message
