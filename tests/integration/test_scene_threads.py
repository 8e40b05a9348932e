"""PDF renders on the scene service's render threads, many at once, over real gRPC.

The service renders every PDF on its gate's worker threads (services/scene/admission.py), so
concurrent calls subset the shared fallback font at the same moment; each document must still be
byte for byte the one a lone render gives (services/scene/pdf.py, `SubsetLockedTTFont`).
"""

from __future__ import annotations

import asyncio
import random

import grpc

from doppelganger.v1 import episode_pb2, scene_pb2, scene_pb2_grpc
from services.scene.render import PDF
from services.scene.server import create_scene_server
from shared.config import Settings
from shared.telemetry import Telemetry
from testkit import action, line, scene
from tests.unit.render_checks import LATIN_EXTENDED_A, NAMES, PHRASES, dense_thread_switching

SCENES = 120
CLIENT_CONCURRENCY = 16  # Under the gate's workers + queue: no call is refused.
RENDER_WORKERS = 4


def non_latin_scene(seed: int) -> episode_pb2.Scene:
    rng = random.Random(seed)
    return scene(
        f"kawiarnia {seed}",
        action(f"{rng.choice(PHRASES)} {''.join(rng.sample(LATIN_EXTENDED_A, 100))}"),
        line(rng.choice(NAMES), rng.choice(PHRASES), parenthetical="ściszając głos"),
        line(rng.choice(NAMES), f"{rng.choice(PHRASES)} {rng.choice(PHRASES)}"),
        number=seed + 1,
    )


async def test_concurrent_pdf_calls_match_lone_renders(settings: Settings) -> None:
    scenes = [non_latin_scene(seed) for seed in range(SCENES)]
    expected = [PDF.render_scene(subject).data for subject in scenes]
    assert len(set(expected)) == SCENES  # Distinct documents: the service's cache cannot help.
    server = await create_scene_server(
        settings, Telemetry("scene", settings), render_workers=RENDER_WORKERS
    )
    slots = asyncio.Semaphore(CLIENT_CONCURRENCY)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)

            async def render(subject: episode_pb2.Scene) -> bytes:
                async with slots:
                    request = scene_pb2.RenderSceneRequest(
                        scene=subject, format=scene_pb2.DOCUMENT_FORMAT_PDF
                    )
                    return (await stub.RenderScene(request)).document

            with dense_thread_switching():
                received = await asyncio.gather(*(render(subject) for subject in scenes))
    finally:
        await server.stop(0)
    mismatched = [i for i, data in enumerate(received) if data != expected[i]]
    assert not mismatched, f"{len(mismatched)} of {SCENES} PDFs differ from a lone render"
