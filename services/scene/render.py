"""Document renderers by format. Pure; the server picks one with `renderer_for`.

Every format is written from one `Screenplay` built from the Fountain text (parsed and laid out
once), so all formats hold the same elements and report the same page count. Fountain and FDX
are ours; PDF is drawn with reportlab from our paginator (see `pdf`); HTML mirrors those pages.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, scene_pb2
from services.scene import fdx, html_page, pdf
from services.scene.fountain import render_episode, render_scene
from services.scene.layout import runtime_seconds
from services.scene.screenplay import Screenplay

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


def write_fountain(screenplay: Screenplay) -> bytes:
    return screenplay.fountain.encode("utf-8")


@dataclass(frozen=True)
class Renderer:
    """One document format: how to write it from a screenplay, and what to call it."""

    name: str  # Lower case, used in span names: "render pdf".
    format: int  # scene_pb2.DocumentFormat
    media_type: str
    write: Callable[[Screenplay], bytes]
    # Costly formats render in a worker thread whatever the request's size (see the server).
    threaded: bool = True

    def render_episode(self, episode: episode_pb2.Episode) -> Document:
        return self._document(render_episode(episode), len(episode.scenes), episode.revision)

    def render_scene(self, scene: episode_pb2.Scene) -> Document:
        """A lone scene has no revision state: its marks print in the colours of the order."""
        return self._document(render_scene(scene), 1, None)

    def _document(
        self, fountain: str, scene_count: int, revision: episode_pb2.RevisionState | None
    ) -> Document:
        screenplay = Screenplay.from_fountain(fountain, revision)
        data = self.write(screenplay)
        page_count = screenplay.layout.page_count
        return Document(self.format, self.media_type, data, page_count, scene_count)


FOUNTAIN = Renderer(
    "fountain",
    scene_pb2.DOCUMENT_FORMAT_FOUNTAIN,
    FOUNTAIN_MEDIA_TYPE,
    write_fountain,
    threaded=False,
)
PDF = Renderer("pdf", scene_pb2.DOCUMENT_FORMAT_PDF, pdf.MEDIA_TYPE, pdf.write_pdf)
# DOPPEL_REVISION_PAGE_COLOR: revised pages tinted in their set's paper colour.
PDF_PAGE_COLOUR = Renderer(
    "pdf",
    scene_pb2.DOCUMENT_FORMAT_PDF,
    pdf.MEDIA_TYPE,
    functools.partial(pdf.write_pdf, page_colour=True),
)
FDX = Renderer("fdx", scene_pb2.DOCUMENT_FORMAT_FDX, fdx.MEDIA_TYPE, fdx.write_fdx)
HTML = Renderer("html", scene_pb2.DOCUMENT_FORMAT_HTML, html_page.MEDIA_TYPE, html_page.write_html)
RENDERERS: Mapping[int, Renderer] = {r.format: r for r in (FOUNTAIN, PDF, FDX, HTML)}


def resolve_format(requested: int) -> int:
    """UNSPECIFIED means Fountain."""
    if requested == scene_pb2.DOCUMENT_FORMAT_UNSPECIFIED:
        return int(scene_pb2.DOCUMENT_FORMAT_FOUNTAIN)
    return requested


def renderer_for(requested: int, page_colour: bool = False) -> Renderer | None:
    """The renderer of a format; `page_colour` picks the PDF that tints revised pages."""
    resolved = resolve_format(requested)
    if page_colour and resolved == PDF.format:
        return PDF_PAGE_COLOUR
    return RENDERERS.get(resolved)


def format_error(requested: int) -> str | None:
    """Why `format` cannot be rendered, naming the field; None when it can."""
    if renderer_for(requested) is not None:
        return None
    supported = ", ".join(scene_pb2.DocumentFormat.Name(f) for f in RENDERERS)  # type: ignore[arg-type]
    if requested in scene_pb2.DocumentFormat.values():
        name = scene_pb2.DocumentFormat.Name(requested)  # type: ignore[arg-type]
        return f"format {name} is not supported yet; supported: {supported}"
    return f"format {requested} is not a known DocumentFormat; supported: {supported}"
