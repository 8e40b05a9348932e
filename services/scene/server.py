"""SceneService: renders episodes and scenes as Fountain, PDF, FDX and HTML screenplays.

Requests are validated first (limits in `validation`; INVALID_ARGUMENT names the field). An
episode's own rendering (`fountain`, `page_count`, `render_error`) is output, not input: it is
cleared before validation, so an episode as `GetEpisode` returns it can be rendered again.
Identical requests are served from an in-process LRU keyed by the SHA-256 of the format and the
serialized episode or scene (`cast` does not change the output, so it is not part of the key).
Large requests (over `THREAD_SCENES` scenes or `THREAD_BYTES` encoded) are validated in a worker
thread, and they and every PDF, FDX and HTML render are rendered in one, so the event loop stays
responsive; such a render is capped at `RENDER_TIMEOUT_SECONDS` or the call's deadline, whichever
is sooner, waiting for a render thread included (DEADLINE_EXCEEDED; the thread finishes in the
background, its result is dropped).

Bounded (services/scene/admission.py): at most `RENDER_WORKERS` (the CPUs) render threads, which
abandoned renders keep until they finish, and at most `RENDER_WORKERS + RENDER_QUEUE` calls inside
the service at once; beyond that a call is refused at once with RESOURCE_EXHAUSTED and trailing
metadata `retry-after-ms`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable
from typing import TypeVar

import grpc
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from doppelganger.v1 import scene_pb2, scene_pb2_grpc
from services.scene.admission import RENDER_QUEUE, RENDER_WORKERS, Overloaded, RenderGate
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
FAULT_POLL_SECONDS = 0.05  # How often an injected render delay looks at its switch again.
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
        gate: RenderGate | None = None,
        page_colour: bool = False,
    ) -> None:
        # DOPPEL_REVISION_PAGE_COLOR; fixed for the service's life, so its cache never mixes.
        self._page_colour = page_colour
        self._tracer = telemetry.tracer
        self._faults = telemetry.faults
        self._cache = DocumentCache() if cache is None else cache
        self._render_timeout = render_timeout_seconds
        self.gate = RenderGate() if gate is None else gate

    async def RenderScene(
        self, request: scene_pb2.RenderSceneRequest, context: grpc.aio.ServicerContext
    ) -> scene_pb2.RenderResponse:
        async with self._admission(context):
            large = request.ByteSize() > THREAD_BYTES
            error = await _maybe_in_thread(large, check_scene_request, request)
            if error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
            renderer = _renderer(request.format, self._page_colour)
            await self._injected_delay()
            document = await self._render(
                context, renderer, b"scene", request.scene, large, renderer.render_scene
            )
        return scene_pb2.RenderResponse(info=document.info(), document=document.data)

    async def RenderEpisode(
        self, request: scene_pb2.RenderEpisodeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[scene_pb2.RenderChunk]:
        async with self._admission(context):  # Held while rendering, not while streaming.
            if request.HasField("episode"):
                for output in EPISODE_OUTPUT_FIELDS:
                    request.episode.ClearField(output)
            scenes = len(request.episode.scenes)
            large = scenes > THREAD_SCENES or request.ByteSize() > THREAD_BYTES
            error = await _maybe_in_thread(large, check_episode_request, request)
            if error:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, error)
            renderer = _renderer(request.format, self._page_colour)
            await self._injected_delay()
            document = await self._render(
                context, renderer, b"episode", request.episode, large, renderer.render_episode
            )
        for chunk in chunks(document):
            yield chunk

    @contextlib.asynccontextmanager
    async def _admission(self, context: grpc.aio.ServicerContext) -> AsyncIterator[None]:
        """A place among the gate's `workers + queue`, or RESOURCE_EXHAUSTED with a retry hint."""
        try:
            admission = self.gate.admit()
        except Overloaded as exc:
            trace.get_current_span().set_attribute("doppel.retry_after_ms", exc.retry_after_ms)
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"{exc}; retry in {exc.retry_after_ms} ms",
                trailing_metadata=(("retry-after-ms", str(exc.retry_after_ms)),),
            )
            raise  # Unreachable: abort raises.
        with admission:
            yield

    async def _injected_delay(self) -> None:
        """Fault switch `render_delay_ms`: a slow renderer (the caller's deadline still holds).
        The delay holds the call's admission (not a render thread) and follows the switch: it
        ends once it has lasted the switch's current value, so lowering or clearing the switch
        also shortens delays already under way."""
        if self._faults.value("render_delay_ms") <= 0:
            return
        self._faults.count("render_delay_ms")
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            left = self._faults.value("render_delay_ms") / 1000.0 - (loop.time() - started)
            if left <= 0:
                return
            await asyncio.sleep(min(left, FAULT_POLL_SECONDS))

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
            return await self.gate.run(render, subject, timeout)
        except TimeoutError:
            await context.abort(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                f"rendering did not finish within {timeout:.1f} s",
            )
            raise  # Unreachable: abort raises.


def _renderer(requested: int, page_colour: bool) -> Renderer:
    renderer = renderer_for(requested, page_colour)
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
    render_workers: int = RENDER_WORKERS,
    render_queue: int = RENDER_QUEUE,
) -> ServiceServer:
    """Starts SceneService on `settings.scene_port` (0: the OS picks; see `.port`), with at most
    `render_workers` render threads and `render_workers + render_queue` calls admitted."""
    gate = RenderGate(render_workers, render_queue)
    service = SceneService(
        telemetry,
        render_timeout_seconds=render_timeout_seconds,
        gate=gate,
        page_colour=settings.revision_page_color,
    )

    def register(server: grpc.aio.Server) -> list[str]:
        scene_pb2_grpc.add_SceneServiceServicer_to_server(service, server)
        return [SERVICE_NAME]

    async def close_gate() -> None:
        gate.close()

    return await start_server(
        name="scene",
        settings=settings,
        telemetry=telemetry,
        port=settings.scene_port,
        register=register,
        cleanups=[close_gate],
    )
