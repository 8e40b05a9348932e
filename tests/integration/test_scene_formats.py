"""Every document format through the real SceneService on loopback: Fountain, PDF, FDX, HTML."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from doppelganger.v1 import episode_pb2, scene_pb2, scene_pb2_grpc
from services.scene.fountain import render_episode
from services.scene.server import create_scene_server
from shared.config import Settings
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import episode as episode_of
from testkit import generated_episode, numbered_scene, numbered_scenes
from tests.integration.scene_support import FORMATS, check_document, collect, render


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


async def test_a_generated_8_scene_episode_renders_in_all_four_formats(
    stub: scene_pb2_grpc.SceneServiceStub,
) -> None:
    episode = generated_episode("i-love-lucy", "mars-colony-2157", 8, 7)
    pages = set()
    for name, (document_format, media_type) in FORMATS.items():
        info, data = await render(stub, episode, name)
        assert (info.format, info.media_type) == (document_format, media_type)
        assert info.size_bytes == len(data) > 0
        assert info.content_hash == hashlib.sha256(data).hexdigest()
        assert info.runtime_seconds == info.page_count * 60.0
        check_document(name, data, info.page_count, has_title_page=True)
        pages.add(info.page_count)
    assert len(pages) == 1 and pages.pop() >= 8  # One count for all formats: about a page a scene.


@pytest.mark.parametrize("name", FORMATS)
async def test_render_scene_in_every_format(
    stub: scene_pb2_grpc.SceneServiceStub, name: str
) -> None:
    request = scene_pb2.RenderSceneRequest(
        scene=numbered_scene(2, lines=80), format=FORMATS[name][0]
    )
    response = await stub.RenderScene(request)
    assert response.info.media_type == FORMATS[name][1]
    # Heading and action (4 lines), then 80 speeches of cue, two wrapped lines and a blank.
    assert response.info.page_count == 6  # (4 + 80 * 4) / 55, rounded up.
    check_document(name, response.document, response.info.page_count, has_title_page=False)


def hard_episode() -> episode_pb2.Episode:
    """Unicode names, very long lines and words, empty scenes, within the request limits."""
    episode = episode_of(*numbered_scenes(3, 4))
    first = episode.scenes[0]
    first.elements.add(
        dialogue=episode_pb2.DialogueLine(
            character="Zoë Łukasiewicz-李", parenthetical="ça va?", text="Ωμέγα " * 1000
        )
    )
    first.elements.add(action=episode_pb2.ActionLine(text="x" * 10_000))
    first.elements.add(action=episode_pb2.ActionLine(text="Long " * 2_000))
    episode.scenes.add(index=3, number=4)  # No slugline, no elements.
    episode.scenes.add(slugline=episode_pb2.Slugline(location="🚀 " * 50))
    episode.outline.title = "Ünïcödé — “quotes” & <tags> " + "long " * 1_900  # 9,528 chars.
    return episode


@pytest.mark.parametrize("name", FORMATS)
async def test_hard_input_renders_in_every_format(
    stub: scene_pb2_grpc.SceneServiceStub, name: str
) -> None:
    info, data = await render(stub, hard_episode(), name)
    check_document(name, data, info.page_count, has_title_page=True)
    assert info.page_count >= 5
    big, big_data = await render(stub, episode_of(*numbered_scenes(200, 3)), name)
    check_document(name, big_data, big.page_count, has_title_page=True)
    assert big.page_count == 58  # The same count for every format.


@pytest.mark.parametrize("name", ["pdf", "fdx", "html"])
async def test_bad_requests_are_invalid_argument_in_every_format(
    stub: scene_pb2_grpc.SceneServiceStub, name: str
) -> None:
    document_format = FORMATS[name][0]
    too_long = episode_of(*numbered_scenes(1))
    too_long.scenes[0].elements[0].action.text = "x" * 10_001
    bad = [
        (scene_pb2.RenderEpisodeRequest(format=document_format), "episode is required"),
        (
            scene_pb2.RenderEpisodeRequest(episode=too_long, format=document_format),
            "episode.scenes[0].elements[0].action.text is 10001 characters; the limit is 10000",
        ),
        (
            scene_pb2.RenderEpisodeRequest(
                episode=episode_of(*numbered_scenes(501, 0)), format=document_format
            ),
            "episode.scenes has 501 scenes; the limit is 500",
        ),
    ]
    for request, expected in bad:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(stub, request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert expected in (caught.value.details() or "")
    info, data = await render(stub, episode_of(*numbered_scenes(1)), name)  # Still serving.
    check_document(name, data, info.page_count, has_title_page=True)


async def test_an_episode_with_its_own_rendering_renders_the_same(
    stub: scene_pb2_grpc.SceneServiceStub,
) -> None:
    """The episode as GetEpisode returns it (fountain over the text limit) is accepted."""
    episode = generated_episode("friends", scene_count=8, seed=2)
    plain_info, _ = await render(stub, episode, "pdf")
    episode.fountain = render_episode(episode)
    episode.page_count = plain_info.page_count
    episode.render_error = "old"
    assert len(episode.fountain) > 10_000
    info, _ = await render(stub, episode, "pdf")
    assert info.content_hash == plain_info.content_hash


async def test_costly_formats_render_off_the_event_loop_within_the_cap(settings: Settings) -> None:
    server = await create_scene_server(
        settings, Telemetry("scene", settings), render_timeout_seconds=1e-9
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)
            for name in ("pdf", "fdx", "html"):  # Even a small one is capped: it runs in a thread.
                with pytest.raises(grpc.aio.AioRpcError) as caught:
                    await render(stub, episode_of(*numbered_scenes(2)), name)
                assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            info, data = await render(
                stub, episode_of(*numbered_scenes(2)), "fountain"
            )  # Inline, unaffected.
            check_document("fountain", data, info.page_count, has_title_page=True)
    finally:
        await server.stop(0)


async def test_a_long_pdf_render_does_not_block_other_calls(
    stub: scene_pb2_grpc.SceneServiceStub, channel: grpc.aio.Channel
) -> None:
    big = asyncio.ensure_future(render(stub, episode_of(*numbered_scenes(400, 20)), "pdf"))
    health = health_pb2_grpc.HealthStub(channel)
    answered = 0
    while not big.done() and answered < 50:
        response = await health.Check(health_pb2.HealthCheckRequest())
        assert response.status == health_pb2.HealthCheckResponse.SERVING
        small = await stub.RenderScene(scene_pb2.RenderSceneRequest(scene=numbered_scene(1)))
        assert small.info.page_count == 1
        answered += 1
    assert answered >= 2  # Calls were answered while the big render was still running.
    info, data = await big
    check_document("pdf", data, info.page_count, has_title_page=True)


async def test_client_deadline_is_honoured(stub: scene_pb2_grpc.SceneServiceStub) -> None:
    request = scene_pb2.RenderEpisodeRequest(
        episode=episode_of(*numbered_scenes(300, 20)), format=scene_pb2.DOCUMENT_FORMAT_PDF
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for _ in stub.RenderEpisode(request, timeout=0.05):
            pass
    assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    info, _ = await render(stub, episode_of(*numbered_scenes(1)), "pdf")
    assert info.page_count == 1


async def test_every_format_is_cached_by_content_hash(settings: Settings) -> None:
    spans = InMemorySpanExporter()
    config = settings.with_changes(telemetry_disabled=False, bsp_schedule_delay_ms=50)
    telemetry = Telemetry(
        "scene", config, span_exporter=spans, metric_readers=[InMemoryMetricReader()]
    )
    server = await create_scene_server(config, telemetry)
    episode = generated_episode("mash", scene_count=4, seed=9)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)
            for name in FORMATS:
                first = await render(stub, episode, name)
                second = await render(stub, episode, name)
                assert first == second
        telemetry.force_flush()
        finished = spans.get_finished_spans()
    finally:
        await server.stop(0)
    for name in FORMATS:
        renders = [s for s in finished if s.name == f"render {name}"]
        hits = [dict(s.attributes or {})["doppel.render.cache_hit"] for s in renders]
        assert hits == [False, True], name  # Another format's render is never a hit.
        pages = {dict(s.attributes or {})["doppel.render.page_count"] for s in renders}
        assert len(pages) == 1
