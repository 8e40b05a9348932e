"""Rendering through a real SceneService and checking what comes back, for the scene, revision
and revise tests: each format's media type, a document that parses as its format."""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET

import pypdf

from doppelganger.v1 import episode_pb2, scene_pb2, scene_pb2_grpc
from services.scene.fountain import parse_fountain
from services.scene.server import CHUNK_BYTES
from tests.unit.render_checks import parse as parse_html

FORMATS = {
    "fountain": (scene_pb2.DOCUMENT_FORMAT_FOUNTAIN, "text/plain; charset=utf-8"),
    "pdf": (scene_pb2.DOCUMENT_FORMAT_PDF, "application/pdf"),
    "fdx": (scene_pb2.DOCUMENT_FORMAT_FDX, "application/xml"),
    "html": (scene_pb2.DOCUMENT_FORMAT_HTML, "text/html; charset=utf-8"),
}


def check_document(name: str, data: bytes, page_count: int, has_title_page: bool) -> None:
    """The bytes are a well-formed document of the format with the stated number of pages."""
    extra = 1 if has_title_page else 0
    if name == "fountain":
        assert parse_fountain(data.decode("utf-8")).scenes
    elif name == "pdf":
        assert len(pypdf.PdfReader(io.BytesIO(data)).pages) == page_count + extra
    elif name == "fdx":
        root = ET.fromstring(data)
        assert root.tag == "FinalDraft" and root.find("Content/Paragraph") is not None
    else:
        pages = parse_html(data).root.find_all("section", "page")
        assert len(pages) == page_count + extra


async def render(
    stub: scene_pb2_grpc.SceneServiceStub, episode: episode_pb2.Episode, name: str
) -> tuple[scene_pb2.DocumentInfo, bytes]:
    request = scene_pb2.RenderEpisodeRequest(episode=episode, format=FORMATS[name][0])
    info, data, chunks = await collect(stub, request)
    assert all(len(chunk.data) <= CHUNK_BYTES for chunk in chunks)
    return info, data


async def collect(
    stub: scene_pb2_grpc.SceneServiceStub, request: scene_pb2.RenderEpisodeRequest
) -> tuple[scene_pb2.DocumentInfo, bytes, list[scene_pb2.RenderChunk]]:
    chunks = [chunk async for chunk in stub.RenderEpisode(request)]
    return chunks[0].info, b"".join(chunk.data for chunk in chunks), chunks
