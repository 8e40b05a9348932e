"""Client side of SceneService for the `doppel` CLI: render an episode and reassemble the chunks."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from pathlib import Path

from google.protobuf import json_format

from doppelganger.v1 import episode_pb2, scene_pb2, scene_pb2_grpc
from shared.config import Settings
from shared.server import create_channel
from shared.telemetry import Telemetry

# CLI name -> (DocumentFormat, file extension).
FORMATS: dict[str, tuple[int, str]] = {
    "fountain": (scene_pb2.DOCUMENT_FORMAT_FOUNTAIN, ".fountain"),
    "pdf": (scene_pb2.DOCUMENT_FORMAT_PDF, ".pdf"),
    "fdx": (scene_pb2.DOCUMENT_FORMAT_FDX, ".fdx"),
    "html": (scene_pb2.DOCUMENT_FORMAT_HTML, ".html"),
}


class RenderError(RuntimeError):
    """The scene service's answer was incomplete or does not match its own description."""


@dataclass(frozen=True)
class RenderedDocument:
    info: scene_pb2.DocumentInfo
    data: bytes


def read_episode(path: Path) -> episode_pb2.Episode:
    """An episode from the proto3 JSON `doppel generate` writes (unknown fields ignored)."""
    episode = episode_pb2.Episode()
    json_format.Parse(path.read_text(encoding="utf-8"), episode, ignore_unknown_fields=True)
    return episode


def document_path(base: Path, format_name: str) -> Path:
    """`base` with the format's extension: out/pilot.json -> out/pilot.pdf."""
    return base.with_suffix(FORMATS[format_name][1])


async def render_episode(
    settings: Settings, episode: episode_pb2.Episode, format_name: str
) -> RenderedDocument:
    """Calls RenderEpisode on `settings.scene_address` inside a "doppel render" span."""
    document_format, _ = FORMATS[format_name]
    request = scene_pb2.RenderEpisodeRequest(episode=episode, format=document_format)  # type: ignore[arg-type]
    telemetry = Telemetry("doppel-cli", settings)
    try:
        async with create_channel(settings.scene_address, telemetry, settings) as channel:
            stub = scene_pb2_grpc.SceneServiceStub(channel)
            with telemetry.tracer.start_as_current_span("doppel render"):
                stream = stub.RenderEpisode(request, timeout=settings.rpc_timeout_seconds)
                chunks = [chunk async for chunk in stream]
    finally:
        await asyncio.to_thread(telemetry.shutdown)
    return reassemble(chunks)


def reassemble(chunks: list[scene_pb2.RenderChunk]) -> RenderedDocument:
    """Joins the chunks and checks them against the info on the first one."""
    if not chunks or not chunks[0].HasField("info"):
        raise RenderError("the scene service sent no document info")
    info = chunks[0].info
    data = b"".join(chunk.data for chunk in chunks)
    if len(data) != info.size_bytes or hashlib.sha256(data).hexdigest() != info.content_hash:
        raise RenderError(
            f"the document does not match its info ({len(data)} of {info.size_bytes} bytes)"
        )
    return RenderedDocument(info, data)
