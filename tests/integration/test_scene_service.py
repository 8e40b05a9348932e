"""SceneService in-process, called through a real grpc.aio channel."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from doppelganger.v1 import episode_pb2, scene_pb2, scene_pb2_grpc
from services.scene.fountain import parse_fountain
from services.scene.server import CHUNK_BYTES, SERVICE_NAME, create_scene_server
from shared.config import Settings
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import episode as episode_of
from testkit import numbered_scene, numbered_scenes
from tests.integration.scene_support import collect

FOUNTAIN = scene_pb2.DOCUMENT_FORMAT_FOUNTAIN


def assert_info_matches(info: scene_pb2.DocumentInfo, data: bytes) -> None:
    assert info.format == FOUNTAIN
    assert info.media_type == "text/plain; charset=utf-8"
    assert info.page_count >= 1
    assert info.runtime_seconds == info.page_count * 60
    assert info.size_bytes == len(data)
    assert info.content_hash == hashlib.sha256(data).hexdigest()


@pytest.fixture
async def scene_server(settings: Settings) -> AsyncIterator[ServiceServer]:
    server = await create_scene_server(settings, Telemetry("scene", settings))
    yield server
    await server.stop(0)


@pytest.fixture
async def channel(scene_server: ServiceServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{scene_server.port}") as channel:
        yield channel


@pytest.fixture
def stub(channel: grpc.aio.Channel) -> scene_pb2_grpc.SceneServiceStub:
    return scene_pb2_grpc.SceneServiceStub(channel)


async def test_render_scene_returns_the_document_and_its_info(
    stub: scene_pb2_grpc.SceneServiceStub,
) -> None:
    response = await stub.RenderScene(scene_pb2.RenderSceneRequest(scene=numbered_scene(4)))
    assert_info_matches(response.info, response.document)
    text = response.document.decode("utf-8")
    assert text.startswith("INT. SET 4 - DAY #5#\n")
    (parsed,) = parse_fountain(text).scenes
    assert [d.speaker for d in parsed.dialogue] == ["RICKY", "ZOË", "RICKY"]


async def test_render_episode_streams_info_first(stub: scene_pb2_grpc.SceneServiceStub) -> None:
    info, data, chunks = await collect(
        stub,
        scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(3)), format=FOUNTAIN),
    )
    assert_info_matches(info, data)
    assert len(chunks) == 1  # A small episode fits in the first chunk.
    parsed = parse_fountain(data.decode("utf-8"))
    assert parsed.title_page["Title"] == "The Moon Rent"
    assert len(parsed.scenes) == 3


async def test_large_episode_arrives_in_chunks_of_at_most_64_kib(
    stub: scene_pb2_grpc.SceneServiceStub,
) -> None:
    episode = episode_of(*numbered_scenes(120, 40))  # Over 50 scenes: rendered in a worker thread.
    info, data, chunks = await collect(stub, scene_pb2.RenderEpisodeRequest(episode=episode))
    assert_info_matches(info, data)
    assert len(data) > 2 * CHUNK_BYTES
    assert all(0 < len(chunk.data) <= CHUNK_BYTES for chunk in chunks)
    assert not any(chunk.HasField("info") for chunk in chunks[1:])
    parsed = parse_fountain(data.decode("utf-8"))
    assert len(parsed.scenes) == 120
    assert sum(len(s.dialogue) for s in parsed.scenes) == 120 * 40
    assert info.page_count > 4800 * 4 // 55  # 4,800 blocks of cue, 2 lines, blank.


async def test_identical_requests_give_identical_documents(
    stub: scene_pb2_grpc.SceneServiceStub,
) -> None:
    request = scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(2)))
    first = await collect(stub, request)
    second = await collect(stub, request)
    assert first[1] == second[1] and first[0] == second[0]
    changed = episode_of(*numbered_scenes(2))
    changed.scenes[0].elements[0].action.text = "A different beat."
    third = await collect(stub, scene_pb2.RenderEpisodeRequest(episode=changed))
    assert third[0].content_hash != first[0].content_hash


def too_many_elements() -> episode_pb2.Episode:
    episode = episode_of(*numbered_scenes(2))
    episode.scenes[1].elements.extend(episode.scenes[1].elements[:1] * 2001)
    return episode


def long_line() -> episode_pb2.Episode:
    episode = episode_of(*numbered_scenes(1))
    episode.scenes[0].elements[0].action.text = "x" * 20_000
    return episode


@pytest.mark.parametrize(
    ("request_message", "expected"),
    [
        (scene_pb2.RenderEpisodeRequest(), "episode is required"),
        (
            scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(1)), format=42),
            "format 42 is not a known DocumentFormat",
        ),
        (
            scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(600, 0))),
            "episode.scenes has 600 scenes; the limit is 500",
        ),
        (
            scene_pb2.RenderEpisodeRequest(episode=too_many_elements()),
            "episode.scenes[1].elements has 2005 elements; the limit is 2000",
        ),
        (
            scene_pb2.RenderEpisodeRequest(episode=long_line()),
            "episode.scenes[0].elements[0].action.text is 20000 characters; the limit is 10000",
        ),
    ],
)
async def test_bad_episode_requests_are_invalid_argument(
    stub: scene_pb2_grpc.SceneServiceStub,
    request_message: scene_pb2.RenderEpisodeRequest,
    expected: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stub, request_message)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in (caught.value.details() or "")
    # The server keeps serving.
    info, data, _ = await collect(
        stub, scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(1)))
    )
    assert_info_matches(info, data)


@pytest.mark.parametrize(
    ("request_message", "expected"),
    [
        (scene_pb2.RenderSceneRequest(), "scene is required"),
        (
            scene_pb2.RenderSceneRequest(scene=numbered_scene(0), format=-1),
            "format -1 is not a known DocumentFormat",
        ),
        (
            scene_pb2.RenderSceneRequest(scene=numbered_scene(0, lines=2001)),
            "scene.elements has 2002 elements; the limit is 2000",
        ),
        (
            scene_pb2.RenderSceneRequest(
                scene=numbered_scene(0), cast=[episode_pb2.Character(name="Z" * 10_001)]
            ),
            "cast[0].name is 10001 characters",
        ),
    ],
)
async def test_bad_scene_requests_are_invalid_argument(
    stub: scene_pb2_grpc.SceneServiceStub,
    request_message: scene_pb2.RenderSceneRequest,
    expected: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.RenderScene(request_message)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert expected in (caught.value.details() or "")
    response = await stub.RenderScene(scene_pb2.RenderSceneRequest(scene=numbered_scene(1)))
    assert response.info.page_count == 1


async def test_text_at_the_limit_is_accepted(stub: scene_pb2_grpc.SceneServiceStub) -> None:
    episode = episode_of(*numbered_scenes(1))
    episode.scenes[0].elements[0].action.text = "word " * 2000  # 10,000 characters.
    info, data, _ = await collect(stub, scene_pb2.RenderEpisodeRequest(episode=episode))
    assert_info_matches(info, data)


async def test_health_reports_serving(channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_the_scene_service(channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    responses = [r async for r in reflection.ServerReflectionInfo(iter([request]))]
    names = {s.name for r in responses for s in r.list_services_response.service}
    assert {"doppelganger.v1.SceneService", "grpc.health.v1.Health"} <= names
    assert SERVICE_NAME == "doppelganger.v1.SceneService"


async def test_render_time_cap_gives_deadline_exceeded(settings: Settings) -> None:
    server = await create_scene_server(
        settings, Telemetry("scene", settings), render_timeout_seconds=1e-9
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await collect(
                    stub, scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(60)))
                )
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert "rendering did not finish" in (caught.value.details() or "")
            # Small renders run inline and are not affected.
            small = await collect(
                stub, scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(2)))
            )
            assert_info_matches(small[0], small[1])
    finally:
        await server.stop(0)


async def test_render_span_carries_counts_and_cache_hits(settings: Settings) -> None:
    spans = InMemorySpanExporter()
    config = settings.with_changes(telemetry_disabled=False, bsp_schedule_delay_ms=50)
    telemetry = Telemetry(
        "scene", config, span_exporter=spans, metric_readers=[InMemoryMetricReader()]
    )
    server = await create_scene_server(config, telemetry)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)
            request = scene_pb2.RenderEpisodeRequest(episode=episode_of(*numbered_scenes(3)))
            first = await collect(stub, request)
            await collect(stub, request)
        telemetry.force_flush()
        finished = spans.get_finished_spans()
    finally:
        await server.stop(0)
    renders = [s for s in finished if s.name == "render fountain"]
    rpcs = [s for s in finished if s.name == "doppelganger.v1.SceneService/RenderEpisode"]
    assert len(renders) == len(rpcs) == 2
    for render, rpc in zip(renders, rpcs, strict=True):
        assert render.kind is SpanKind.INTERNAL
        assert render.parent is not None and render.parent.span_id == rpc.context.span_id
        attributes = dict(render.attributes or {})
        assert attributes["doppel.render.scene_count"] == 3
        assert attributes["doppel.render.page_count"] == first[0].page_count
        assert attributes["doppel.render.size_bytes"] == len(first[1])
    assert [dict(r.attributes or {})["doppel.render.cache_hit"] for r in renders] == [False, True]
