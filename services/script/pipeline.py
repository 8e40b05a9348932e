"""The episode pipeline: cast, outline, scenes in parallel, validation, render.

Every stage is an INTERNAL span; outline and scenes go through the cache under content keys, so a
retry of the same request regenerates only what is missing. Progress is yielded as
GenerateEpisodeEvent messages; the last one carries the episode.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError
from opentelemetry import trace

from doppelganger.v1 import episode_pb2, scene_pb2, scene_pb2_grpc, script_pb2
from services.script import store
from services.script import writer as procedural
from services.script.requests import EpisodeOrder
from services.script.validation import validate_episode
from services.script.writers import StoryContext, Writer
from shared.telemetry import Telemetry, trace_id_hex

log = logging.getLogger(__name__)

Stage = script_pb2.Stage
# Fraction of the whole episode done when each stage starts; scenes share SCENES..VALIDATION.
PROGRESS = {
    Stage.STAGE_ACCEPTED: 0.0,
    Stage.STAGE_CAST: 0.02,
    Stage.STAGE_OUTLINE: 0.05,
    Stage.STAGE_SCENES: 0.10,
    Stage.STAGE_VALIDATION: 0.85,
    Stage.STAGE_RENDER: 0.90,
    Stage.STAGE_DONE: 1.0,
}


def episode_id_for(order: EpisodeOrder, writer: Writer) -> str:
    """Stable id of the episode a request asks for (same inputs, same id)."""
    return "ep-" + store.content_key(*_identity(order, writer))[:20]


def _identity(order: EpisodeOrder, writer: Writer) -> tuple[object, ...]:
    """Everything that shapes the output; part of every cache key."""
    return (
        writer.name,
        writer.model,
        writer.prompt_version,
        order.show.id,
        order.setting.id,
        order.setting.description,
        order.scene_count,
        order.seed,
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


class EpisodePipeline:
    """Runs one GenerateEpisode request."""

    def __init__(self, deps: PipelineDeps, order: EpisodeOrder) -> None:
        self._deps = deps
        self._order = order
        self._tracer = deps.telemetry.tracer
        self._writer = deps.writers[order.writer]
        self._identity = _identity(order, self._writer)
        self.episode_id = episode_id_for(order, self._writer)
        self.scenes_from_cache = 0

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
        finished = await self._finished_episode()
        if finished is not None:
            event = self._event(Stage.STAGE_DONE, "already written; returned from the cache")
            event.episode.CopyFrom(finished)
            yield event
            return
        with self._tracer.start_as_current_span("cast"):
            cast, relationships = procedural.transform_cast(order.show, order.setting, order.seed)
        context = StoryContext(
            show=order.show, setting=order.setting, cast=cast, relationships=relationships,
            seed=order.seed, scene_count=order.scene_count, request_id=order.request_id,
        )  # fmt: skip
        yield self._event(Stage.STAGE_CAST, f"cast of {len(cast)} transformed")
        outline = await self._outline(context)
        event = self._event(Stage.STAGE_OUTLINE, f"outline: {outline.title}")
        event.outline.CopyFrom(outline)
        yield event
        episode = self._new_episode(cast, relationships, outline)
        async for event in self._write_scenes(context, episode):
            yield event
        yield self._event(Stage.STAGE_VALIDATION, "validating the script")
        with self._tracer.start_as_current_span("validation") as span:
            episode.validation.CopyFrom(validate_episode(episode))
            span.set_attributes(
                {"doppel.validation.overall": episode.validation.overall,
                 "doppel.validation.passed": episode.validation.passed}
            )  # fmt: skip
        yield self._event(Stage.STAGE_RENDER, "rendering the screenplay")
        await self._render(episode)
        await self._deps.cache.set(store.EPISODES, self.episode_id, episode.SerializeToString())
        done = self._event(Stage.STAGE_DONE, f"{len(episode.scenes)} scenes written")
        done.episode.CopyFrom(episode)
        yield done

    async def _finished_episode(self) -> episode_pb2.Episode | None:
        data = await self._deps.cache.get(store.EPISODES, self.episode_id)
        return _parse(episode_pb2.Episode, data)

    def _new_episode(
        self,
        cast: list[episode_pb2.Character],
        relationships: list[episode_pb2.Relationship],
        outline: episode_pb2.Outline,
    ) -> episode_pb2.Episode:
        order = self._order
        episode = episode_pb2.Episode(
            id=self.episode_id,
            request_id=order.request_id,
            show=order.show,
            setting=order.setting,
            cast=cast,
            relationships=relationships,
            outline=outline,
            writer=self._writer.name,
            model=self._writer.model,
            seed=order.seed,
        )
        return episode

    async def _outline(self, context: StoryContext) -> episode_pb2.Outline:
        key = store.content_key("outline", *self._identity)
        with self._tracer.start_as_current_span("outline") as span:
            cached = _parse(episode_pb2.Outline, await self._deps.cache.get(store.OUTLINES, key))
            span.set_attribute("doppel.cache.hit", cached is not None)
            if cached is not None:
                return cached
            outline = await self._writer.write_outline(context)
            await self._deps.cache.set(store.OUTLINES, key, outline.SerializeToString())
            return outline

    async def _write_scenes(
        self, context: StoryContext, episode: episode_pb2.Episode
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        count = self._order.scene_count
        outline_key = store.content_key(episode.outline.SerializeToString(deterministic=True).hex())
        limit = asyncio.Semaphore(self._deps.max_parallel_scenes)
        tasks = [
            asyncio.create_task(self._scene(context, episode.outline, index, outline_key, limit))
            for index in range(count)
        ]
        scenes: dict[int, episode_pb2.Scene] = {}
        span_from, span_to = PROGRESS[Stage.STAGE_SCENES], PROGRESS[Stage.STAGE_VALIDATION]
        try:
            for next_done in asyncio.as_completed(tasks):
                scene = await next_done
                scenes[scene.index] = scene
                fraction = span_from + (span_to - span_from) * len(scenes) / count
                event = self._event(
                    Stage.STAGE_SCENES, f"scene {scene.number} of {count} written", fraction
                )
                event.scene.CopyFrom(scene)
                yield event
        finally:
            for task in tasks:
                task.cancel()
        episode.scenes.extend(scenes[index] for index in range(count))
        episode.runtime_seconds = sum(scene.duration_seconds for scene in episode.scenes)

    async def _scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        index: int,
        outline_key: str,
        limit: asyncio.Semaphore,
    ) -> episode_pb2.Scene:
        key = store.content_key("scene", *self._identity, outline_key, index)
        async with limit:
            with self._tracer.start_as_current_span(f"scene {index + 1}") as span:
                span.set_attribute("doppel.scene.index", index)
                cached = _parse(episode_pb2.Scene, await self._deps.cache.get(store.SCENES, key))
                span.set_attribute("doppel.cache.hit", cached is not None)
                if cached is not None:
                    self.scenes_from_cache += 1
                    return cached
                earlier = [
                    beat.description
                    for act in outline.acts
                    for beat in act.beats
                    if beat.scene_index < index
                ]
                scene = await self._writer.write_scene(context, outline, index, earlier)
                await self._deps.cache.set(store.SCENES, key, scene.SerializeToString())
                return scene

    async def _render(self, episode: episode_pb2.Episode) -> None:
        """Fountain from the scene service; on failure the episode keeps a clear render_error."""
        request = scene_pb2.RenderEpisodeRequest(
            episode=episode, format=scene_pb2.DOCUMENT_FORMAT_FOUNTAIN
        )
        with self._tracer.start_as_current_span("render") as span:
            try:
                chunks = [
                    chunk
                    async for chunk in self._deps.scenes.RenderEpisode(
                        request, timeout=self._deps.rpc_timeout
                    )
                ]
            except grpc.aio.AioRpcError as exc:
                episode.render_error = f"scene service: {exc.code().name}: {exc.details()}"
                span.set_status(trace.Status(trace.StatusCode.ERROR, episode.render_error))
                log.warning("render failed for %s: %s", self.episode_id, episode.render_error)
                return
        episode.fountain = b"".join(chunk.data for chunk in chunks).decode()
        episode.page_count = chunks[0].info.page_count if chunks else 0


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
