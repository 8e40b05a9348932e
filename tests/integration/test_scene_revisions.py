"""Acceptance: a revised draft through the real SceneService on loopback, in all four formats.

An 8-scene generated episode and its Blue revision (numbers locked, a few lines changed, a speech
long enough to break across pages, a scene inserted after 3 as 3A, scene 6 omitted), marked with
`shared.screenplay_diff.mark_revisions`. Each document is read back on its own terms: the FDX's
RevisionID paragraphs number exactly `compare_drafts(...).changed_paragraphs`; the PDF's asterisks
sit on the baselines of exactly the changed lines and its revised pages carry the set's header;
3A and OMITTED print in every format; screenplain reads the Fountain as our parser does.
"""

from __future__ import annotations

import dataclasses
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator

import grpc
import pypdf
import pytest

from doppelganger.v1 import scene_pb2, scene_pb2_grpc
from services.scene.fountain import parse_fountain
from services.scene.server import create_scene_server
from shared.config import Settings
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from tests.integration.scene_support import FORMATS, check_document, render
from tests.unit.render_checks import (
    check_fdx_marks,
    check_html_marks,
    check_pdf_marks,
    from_our_parser,
    from_screenplain,
    pdf_pages,
)
from tests.unit.render_checks import parse as parse_html
from tests.unit.revision_drafts import RevisedDraft, first_draft, revise

HEADER = "Blue Revision (2026-11-03)"


@pytest.fixture(scope="module")
def draft() -> RevisedDraft:
    return revise(first_draft())


async def serve(settings: Settings) -> ServiceServer:
    return await create_scene_server(settings, Telemetry("scene", settings))


@pytest.fixture
async def stub(settings: Settings) -> AsyncIterator[scene_pb2_grpc.SceneServiceStub]:
    server = await serve(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield scene_pb2_grpc.SceneServiceStub(channel)
    await server.stop(0)


async def test_a_revised_draft_renders_its_marks_numbers_and_omissions_in_every_format(
    stub: scene_pb2_grpc.SceneServiceStub, draft: RevisedDraft
) -> None:
    documents = {name: await render(stub, draft.revised, name) for name in FORMATS}
    pages = {info.page_count for info, _ in documents.values()}
    assert len(pages) == 1, pages  # The same page count in every format.
    for name, (info, data) in documents.items():
        check_document(name, data, info.page_count, has_title_page=True)

    fountain = documents["fountain"][1].decode("utf-8")
    assert "INT. GREENHOUSE ANNEX - DAY #3A#" in fountain
    assert "\n.OMITTED #6#" in fountain
    assert from_screenplain(fountain) == from_our_parser(fountain)  # Scenes and speakers.
    numbers = [scene.number for scene in parse_fountain(fountain).scenes]
    assert numbers == ["1", "2", "3", "3A", "4", "5", "6", "7", "8"]

    headings = check_fdx_marks(documents["fdx"][1], draft.comparison)
    fdx_numbers = [(h.get("Number"), "".join(t.text or "" for t in h)) for h in headings]
    assert fdx_numbers[3] == ("3A", "INT. GREENHOUSE ANNEX - DAY")
    assert fdx_numbers[6] == ("6", "OMITTED")
    root = ET.fromstring(documents["fdx"][1])
    assert root.find("Revisions/Revision").get("Name") == "Blue Revision"  # type: ignore[union-attr]

    pdf = documents["pdf"][1]
    check_pdf_marks(pdf, draft.comparison, HEADER)
    lines = [line for page in pdf_pages(pdf) for line in page.lines]
    numbered = {line.text: [text for _, text in line.numbers] for line in lines if line.numbers}
    assert numbered["INT. GREENHOUSE ANNEX - DAY"] == ["3A", "3A"]
    assert numbered["OMITTED"] == ["6", "6"]
    revised_pages = [page for page in pdf_pages(pdf) if page.header]
    assert 2 <= len(revised_pages) < len(pdf_pages(pdf))
    more = [line for line in lines if line.text == "(MORE)" and line.marks]
    assert more, "the changed speech breaks across pages and is marked on both"
    after = lines[lines.index(more[0]) + 1]
    assert after.page == more[0].page + 1 and after.text.endswith("(CONT'D)") and after.marks

    html = documents["html"][1]
    check_html_marks(html, draft.comparison, HEADER)
    headings_html = parse_html(html).root.find_all("p", "heading")
    shown = {
        p.own_text: [s.text for s in p.find_all("span", "scene-number")] for p in headings_html
    }
    assert shown["INT. GREENHOUSE ANNEX - DAY"] == ["3A", "3A"]
    assert shown["OMITTED"] == ["6", "6"]


async def test_the_page_colour_setting_tints_revised_pages(
    settings: Settings, draft: RevisedDraft
) -> None:
    tinting = await serve(dataclasses.replace(settings, revision_page_color=True))
    plain = await serve(settings)
    try:
        data = {}
        for name, server in (("tinted", tinting), ("plain", plain)):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = scene_pb2_grpc.SceneServiceStub(channel)
                data[name] = (await render(stub, draft.revised, "pdf"))[1]
    finally:
        await tinting.stop(0)
        await plain.stop(0)
    tinted_pages = pypdf.PdfReader(io.BytesIO(data["tinted"])).pages[1:]
    headers = [page.header for page in pdf_pages(data["tinted"])]
    for page, header in zip(tinted_pages, headers, strict=True):
        content = page.get_contents().get_data().decode("latin-1")  # type: ignore[union-attr]
        assert (".74902 .843137 1 rg" in content) == (header == HEADER)
    assert b".74902 .843137 1 rg" not in data["plain"]
    check_pdf_marks(data["tinted"], draft.comparison, HEADER)


@pytest.mark.parametrize("name", ["fountain", "pdf"])
async def test_bad_revision_fields_are_invalid_argument(
    stub: scene_pb2_grpc.SceneServiceStub, draft: RevisedDraft, name: str
) -> None:
    cases = []
    bad_label = scene_pb2.RenderEpisodeRequest(episode=draft.revised, format=FORMATS[name][0])
    bad_label.episode.scenes[3].number_label = "3A #9#"
    cases.append((bad_label, "episode.scenes[3].number_label '3A #9#' is not a scene number"))
    unknown_set = scene_pb2.RenderEpisodeRequest(episode=draft.revised, format=FORMATS[name][0])
    unknown_set.episode.scenes[1].revision_marks[0].revision_id = 4
    cases.append((unknown_set, "revision_id 4 is not in episode.revision.sets"))
    hostile_colour = scene_pb2.RenderEpisodeRequest(episode=draft.revised, format=FORMATS[name][0])
    hostile_colour.episode.revision.sets[0].color_hex = "red</style><script>"
    cases.append((hostile_colour, "episode.revision.sets[0].color_hex"))
    for request, expected in cases:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await render_request(stub, request)
        assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert expected in (caught.value.details() or "")
    info, data = await render(stub, draft.revised, name)  # Still serving.
    check_document(name, data, info.page_count, has_title_page=True)


async def render_request(
    stub: scene_pb2_grpc.SceneServiceStub, request: scene_pb2.RenderEpisodeRequest
) -> bytes:
    return b"".join([chunk.data async for chunk in stub.RenderEpisode(request)])
