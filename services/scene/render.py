"""Document renderers by format. Pure; the server picks one with `renderer_for`.

Every format is laid out from the Fountain text, so page counts agree across formats. A new
format (PDF, FDX, HTML) is a class with `name`, `format`, `media_type`, `render_episode` and
`render_scene`, added to `RENDERERS`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from doppelganger.v1 import episode_pb2, scene_pb2
from services.scene.fountain import render_episode, render_scene
from services.scene.layout import count_pages, runtime_seconds

# No registered media type exists for Fountain; text/plain lets any client display it.
FOUNTAIN_MEDIA_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True)
class Document:
    """A rendered document and what DocumentInfo reports about it."""

    format: int  # scene_pb2.DocumentFormat
    media_type: str
    data: bytes
    page_count: int
    scene_count: int

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    def info(self) -> scene_pb2.DocumentInfo:
        return scene_pb2.DocumentInfo(
            format=self.format,  # type: ignore[arg-type]
            media_type=self.media_type,
            page_count=self.page_count,
            runtime_seconds=runtime_seconds(self.page_count),
            size_bytes=len(self.data),
            content_hash=self.content_hash,
        )


class Renderer(Protocol):
    name: str  # Lower case, used in span names: "render fountain".
    format: int
    media_type: str

    def render_episode(self, episode: episode_pb2.Episode) -> Document: ...

    def render_scene(self, scene: episode_pb2.Scene) -> Document: ...


class FountainRenderer:
    name = "fountain"
    format = scene_pb2.DOCUMENT_FORMAT_FOUNTAIN
    media_type = FOUNTAIN_MEDIA_TYPE

    def render_episode(self, episode: episode_pb2.Episode) -> Document:
        return self._document(render_episode(episode), len(episode.scenes))

    def render_scene(self, scene: episode_pb2.Scene) -> Document:
        return self._document(render_scene(scene), 1)

    def _document(self, text: str, scene_count: int) -> Document:
        return Document(
            self.format, self.media_type, text.encode("utf-8"), count_pages(text), scene_count
        )


RENDERERS: Mapping[int, Renderer] = {scene_pb2.DOCUMENT_FORMAT_FOUNTAIN: FountainRenderer()}


def resolve_format(requested: int) -> int:
    """UNSPECIFIED means Fountain."""
    if requested == scene_pb2.DOCUMENT_FORMAT_UNSPECIFIED:
        return int(scene_pb2.DOCUMENT_FORMAT_FOUNTAIN)
    return requested


def renderer_for(requested: int) -> Renderer | None:
    return RENDERERS.get(resolve_format(requested))


def format_error(requested: int) -> str | None:
    """Why `format` cannot be rendered, naming the field; None when it can."""
    if renderer_for(requested) is not None:
        return None
    supported = ", ".join(scene_pb2.DocumentFormat.Name(f) for f in RENDERERS)  # type: ignore[arg-type]
    if requested in scene_pb2.DocumentFormat.values():
        name = scene_pb2.DocumentFormat.Name(requested)  # type: ignore[arg-type]
        return f"format {name} is not supported yet; supported: {supported}"
    return f"format {requested} is not a known DocumentFormat; supported: {supported}"
