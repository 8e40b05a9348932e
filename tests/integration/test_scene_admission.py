"""The scene service's render bounds: admitted calls, render threads, RESOURCE_EXHAUSTED beyond.

Against a real in-process SceneService through a real grpc.aio channel; slow renders come from the
service's own `render_delay_ms` fault switch (set through FaultService), blocked render threads
from real threads waiting on an Event.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
from collections.abc import Awaitable

import grpc
import pytest

from doppelganger.v1 import faults_pb2, faults_pb2_grpc, scene_pb2, scene_pb2_grpc
from services.scene.admission import (
    INITIAL_CALL_SECONDS,
    RENDER_QUEUE,
    RENDER_WORKERS,
    Overloaded,
    RenderGate,
)
from services.scene.server import create_scene_server
from shared.config import Settings
from shared.faults import set_faults
from shared.telemetry import Telemetry
from testkit import episode as episode_of
from testkit import eventually, numbered_scene, numbered_scenes

PDF = scene_pb2.DOCUMENT_FORMAT_PDF
FOUNTAIN = scene_pb2.DOCUMENT_FORMAT_FOUNTAIN
STUCK_MS = 600_000  # The switch's maximum: admitted renders stay in their delay until cleared.


async def injected_delays(channel: grpc.aio.Channel) -> int:
    stub = faults_pb2_grpc.FaultServiceStub(channel)
    state = await stub.GetFaults(faults_pb2.GetFaultsRequest())
    return state.injected["render_delay_ms"]


async def render_episode(
    stub: scene_pb2_grpc.SceneServiceStub, seed: int, document_format: int
) -> tuple[scene_pb2.DocumentInfo, bytes]:
    episode = episode_of(*numbered_scenes(2))
    episode.outline.title = f"The Moon Rent {seed}"  # Distinct documents: no cache hits.
    request = scene_pb2.RenderEpisodeRequest(episode=episode, format=document_format)
    chunks = [chunk async for chunk in stub.RenderEpisode(request)]
    return chunks[0].info, b"".join(chunk.data for chunk in chunks)


async def render_scene(
    stub: scene_pb2_grpc.SceneServiceStub, seed: int, document_format: int
) -> tuple[scene_pb2.DocumentInfo, bytes]:
    request = scene_pb2.RenderSceneRequest(scene=numbered_scene(seed), format=document_format)
    response = await stub.RenderScene(request)
    return response.info, response.document


async def test_renders_beyond_the_bound_are_refused_with_a_retry_hint(settings: Settings) -> None:
    """With the default bounds: every render is stuck in the injected delay, so exactly
    RENDER_WORKERS + RENDER_QUEUE calls are admitted and the three calls beyond them are refused
    RESOURCE_EXHAUSTED with `retry-after-ms`; cleared, the admitted ones all complete."""
    limit = RENDER_WORKERS + RENDER_QUEUE
    # Two script replicas at DOPPEL_MAX_CONCURRENT_EPISODES can render at once without refusal.
    assert limit >= 2 * settings.max_concurrent_episodes
    settings = settings.with_changes(faults_enabled=True)  # The delay is set over FaultService.
    server = await create_scene_server(settings, Telemetry("scene", settings))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)
            await set_faults(channel, {"render_delay_ms": STUCK_MS})
            calls: list[asyncio.Task[tuple[scene_pb2.DocumentInfo, bytes]]] = []
            for n in range(limit + 3):
                render = (render_episode, render_scene)[n % 2]
                document_format = (PDF, FOUNTAIN)[(n // 2) % 2]
                calls.append(asyncio.create_task(render(stub, n, document_format)))
            done: set[asyncio.Task[tuple[scene_pb2.DocumentInfo, bytes]]] = set()
            pending = set(calls)
            while len(done) < 3:
                finished, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                done |= finished
            assert len(done) == 3 and len(pending) == limit
            for call in done:
                error = call.exception()
                assert isinstance(error, grpc.aio.AioRpcError)
                assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                assert f"{limit} renders are running or waiting" in (error.details() or "")
                hint = int(dict(error.trailing_metadata() or ())["retry-after-ms"])
                # Nothing has finished yet: the first guess of a call's time, over the places.
                assert hint == max(100, int(1000 * INITIAL_CALL_SECONDS / limit))
            # Every admitted call reached its render (the delay), none of the refused ones did.
            assert await injected_delays(channel) == limit
            await set_faults(channel, {"render_delay_ms": 0})
            for info, data in await asyncio.gather(*pending):
                assert info.size_bytes == len(data) > 0
                assert info.content_hash == hashlib.sha256(data).hexdigest()
            # Every place is free again: as many calls as the bound, all served.
            again = [render_scene(stub, 1000 + n, FOUNTAIN) for n in range(limit)]
            assert len(await asyncio.gather(*again)) == limit
            assert await injected_delays(channel) == limit
    finally:
        await server.stop(0)


async def test_a_small_bound_refuses_the_call_past_it(settings: Settings) -> None:
    """One worker and one queued place: with two calls stuck, a third is refused; the refused
    caller retries after the hint, once one has finished, and is served."""
    settings = settings.with_changes(faults_enabled=True)  # The delay is set over FaultService.
    server = await create_scene_server(
        settings, Telemetry("scene", settings), render_workers=1, render_queue=1
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)
            await set_faults(channel, {"render_delay_ms": STUCK_MS})
            first = asyncio.create_task(render_episode(stub, 1, PDF))
            second = asyncio.create_task(render_episode(stub, 2, PDF))

            async def both_stuck() -> bool:
                return await injected_delays(channel) >= 2

            await eventually(both_stuck, what="both renders stuck in the delay")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await render_scene(stub, 3, PDF)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            hint = int(dict(refused.value.trailing_metadata() or ())["retry-after-ms"])
            assert 100 <= hint <= 30_000
            await set_faults(channel, {"render_delay_ms": 0})
            for info, data in await asyncio.gather(first, second):
                assert info.format == PDF and data.startswith(b"%PDF-")
            await asyncio.sleep(hint / 1000)
            info, data = await render_scene(stub, 3, PDF)
            assert data.startswith(b"%PDF-") and info.size_bytes == len(data)
    finally:
        await server.stop(0)


async def test_an_abandoned_render_keeps_its_thread_until_it_finishes() -> None:
    """One render thread, no queue: a render that outlives its time cap is abandoned by its caller
    (TimeoutError) but keeps the thread; the next call waits for it rather than starting a second
    render thread, and a call past the bound is refused with a retry hint."""
    gate = RenderGate(workers=1, queue=0)
    release = threading.Event()
    first_finished = threading.Event()
    second_started = threading.Event()

    def stuck(_: object) -> str:
        release.wait()
        first_finished.set()
        return "first"

    def after(_: object) -> bool:
        second_started.set()
        return first_finished.is_set()

    try:
        with gate.admit(), pytest.raises(TimeoutError):
            await gate.run(stuck, None, timeout=0.05)
        assert (gate.admitted, gate.busy) == (0, 1)  # The caller left; its thread has not.
        with gate.admit():
            second: Awaitable[bool] = asyncio.create_task(gate.run(after, None, timeout=60))
            with pytest.raises(Overloaded) as overloaded:
                gate.admit()
            assert overloaded.value.limit == 1
            assert 100 <= overloaded.value.retry_after_ms <= 30_000
            # Given half a second, the waiting render does not start beside the stuck one.
            assert not await asyncio.to_thread(second_started.wait, 0.5)
            release.set()
            assert await second is True  # It ran only once the first render's thread was done.
        assert (gate.admitted, gate.busy) == (0, 0)
        with gate.admit():  # Room again.
            pass
    finally:
        release.set()
        gate.close()
