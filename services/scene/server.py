"""SceneService: renders episodes and scenes as Fountain, PDF, FDX and HTML screenplays.

Requests are validated first (limits in `validation`; INVALID_ARGUMENT names the field). An
episode's own rendering (`fountain`, `page_count`, `render_error`) is output, not input: it is
cleared before validation, so an episode as `GetEpisode` returns it can be rendered again.
Identical requests are served from an in-process LRU keyed by the SHA-256 of the format and the
serialized episode or scene (`cast` does not change the output, so it is not part of the key).
Large requests (over `THREAD_SCENES` scenes or `THREAD_BYTES` encoded) are validated in a worker
thread, and they and every PDF, FDX and HTML render are rendered in one, so the event loop stays
responsive; such a render is capped at `RENDER_TIMEOUT_SECONDS` or the call's deadline, whichever
is sooner (DEADLINE_EXCEEDED; the thread finishes in the background, its result is dropped).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from opentelemetry.trace import SpanKind

from doppelganger.v1 import scene_pb2, scene_pb2_grpc
from services.scene.lru import DocumentCache
from services.scene.render import Document, Renderer, renderer_for, resolve_format
from services.scene.validation import check_episode_request, check_scene_request
from shared.config import Settings
from shared.server import ServiceServer, start_server
from shared.telemetry import Telemetry

SERVICE_NAME = scene_pb2.DESCRIPTOR.services_by_name["SceneService"].full_name
CHUNK_BYTES = 64 * 1024
THREAD_SCENES = 50
THREAD_BYTES = 256 * 1024
RENDER_TIMEOUT_SECONDS = 30.0
# Episode fields that hold a previous rendering: ignored (cleared) on input.
EPISODE_OUTPUT_FIELDS = ("fountain", "page_count", "render_error")

T = TypeVar("T")


class SceneService(scene_pb2_grpc.SceneServiceServicer):
    """The gRPC face of the renderers."""

    def __init__(
        self,
        telemetry: Telemetry,
        cache: DocumentCache | None = None,
        render_timeout_seconds: float = RENDER_TIMEOUT_SECONDS,
    ) -> None:
        self._tracer = telemetry.tracer
        self._faults = telemetry.faults
        self._cache = DocumentCache() if cache is None else cache
        self._render_timeout = render_timeout_seconds

    async def RenderScene(
        self, request: scene_pb2.RenderSceneRequest, context: grpc.aio.ServicerContext
    ) -> scene_pb2.RenderResponse:
        large = request.ByteSize() > THREAD_BYTES
        error = await _maybe_in_thread(large, check_scene_request, request)
        if error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
        renderer = _renderer(request.format)
        await self._injected_delay()
        document = await self._render(
            context, renderer, b"scene", request.scene, large, renderer.render_scene
        )
        return scene_pb2.RenderResponse(info=document.info(), document=document.data)

    async def RenderEpisode(
        self, request: scene_pb2.RenderEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[scene_pb2.RenderChunk]:
        if request.HasField("episode"):
            for output in EPISODE_OUTPUT_FIELDS:
                request.episode.ClearField(output)
        large = len(request.episode.scenes) > THREAD_SCENES or request.ByteSize() > THREAD_BYTES
        error = await _maybe_in_thread(large, check_episode_request, request)
        if error:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
        renderer = _renderer(request.format)
        await self._injected_delay()
        document = await self._render(
            context, renderer, b"episode", request.episode, large, renderer.render_episode
        )
        for chunk in chunks(document):
            yield chunk

    async def _injected_delay(self) -> None:
        """Fault switch `render_delay_ms`: a slow renderer (the caller's deadline still holds)."""
        delay = self._faults.value("render_delay_ms")
        if delay > 0:
            self._faults.count("render_delay_ms")
            await asyncio.sleep(delay / 1000.0)

    async def _render(
        self,
        context: grpc.aio.ServicerContext,
        renderer: Renderer,
        kind: bytes,
        subject: T,
        large: bool,
        render: Callable[[T], Document],
    ) -> Document:
        """Renders (or finds in the cache) inside an INTERNAL span "render <format>"."""
        with self._tracer.start_as_current_span(
            f"render {renderer.name}", kind=SpanKind.INTERNAL
        ) as span:
            key = await _maybe_in_thread(large, cache_key, kind, renderer.format, subject)
            document = self._cache.get(key)
            span.set_attribute("doppel.render.cache_hit", document is not None)
            if document is None:
                threaded = large or renderer.threaded
                document = await self._run(context, threaded, render, subject)
                self._cache.put(key, document)
            span.set_attributes(
                {
                    "doppel.render.format": renderer.name,
                    "doppel.render.scene_count": document.scene_count,
                    "doppel.render.page_count": document.page_count,
                    "doppel.render.size_bytes": len(document.data),
                }
            )
            return document

    async def _run(
        self,
        context: grpc.aio.ServicerContext,
        threaded: bool,
        render: Callable[[T], Document],
        subject: T,
    ) -> Document:
        if not threaded:
            return render(subject)
        timeout = self._render_timeout
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining, 0.0))
        try:
            return await asyncio.wait_for(asyncio.to_thread(render, subject), timeout)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"rendering did not finish within {timeout:.1f} s",
            )
            raise  # Unreachable: abort raises.


def _renderer(requested: int) -> Renderer:
    renderer = renderer_for(requested)
    if renderer is None:  # Validation has already rejected the format.
        raise ValueError(f"no renderer for format {requested}")
    return renderer


async def _maybe_in_thread(large: bool, function: Callable[..., T], *args: object) -> T:
    return await asyncio.to_thread(function, *args) if large else function(*args)


def cache_key(kind: bytes, document_format: int, subject: object) -> str:
    """SHA-256 of what the output depends on: request kind, format, serialized subject."""
    digest = hashlib.sha256(kind + b"\0" + str(resolve_format(document_format)).encode() + b"\0")
    digest.update(subject.SerializeToString(deterministic=True))  # type: ignore[attr-defined]
    return digest.hexdigest()


def chunks(document: Document) -> list[scene_pb2.RenderChunk]:
    """The info and up to CHUNK_BYTES of data in the first chunk, then the rest of the data."""
    data = document.data
    first = scene_pb2.RenderChunk(info=document.info(), data=data[:CHUNK_BYTES])
    rest = [
        scene_pb2.RenderChunk(data=data[offset : offset + CHUNK_BYTES])
        for offset in range(CHUNK_BYTES, len(data), CHUNK_BYTES)
    ]
    return [first, *rest]


async def create_scene_server(
    settings: Settings,
    telemetry: Telemetry,
    *,
    render_timeout_seconds: float = RENDER_TIMEOUT_SECONDS,
) -> ServiceServer:
    """Starts SceneService on `settings.scene_port` (0: the OS picks; see `.port`)."""
    service = SceneService(telemetry, render_timeout_seconds=render_timeout_seconds)

    def register(server: grpc.aio.Server) -> list[str]:
        scene_pb2_grpc.add_SceneServiceServicer_to_server(service, server)
        return [SERVICE_NAME]

    return await start_server(
        name="scene",
        settings=settings,
        telemetry=telemetry,
        port=settings.scene_port,
        register=register,
    )
