"""`doppel render` and `doppel generate --format` against real in-process servers.

The CLI runs `asyncio.run` itself, so it is called in a worker thread while the servers serve on
this test's event loop; it finds them through the environment, as it would from a shell.
"""

from __future__ import annotations

import asyncio
import io
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from pathlib import Path

import pypdf
import pytest
from google.protobuf import json_format

from doppel import cli
from services.scene.server import create_scene_server
from shared.config import Settings
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import InProcessStack, generated_episode
from tests.unit.render_checks import parse as parse_html


def printed(output: str) -> dict[str, str]:
    """`label   value` lines as a dict."""
    return dict(line.split(maxsplit=1) for line in output.splitlines() if " " in line.strip())


@pytest.fixture
async def scene_server(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[ServiceServer]:
    server = await create_scene_server(settings, Telemetry("scene", settings))
    monkeypatch.setenv("DOPPEL_SCENE_TARGET", f"127.0.0.1:{server.port}")
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    yield server
    await server.stop(0)


@pytest.fixture
def episode_json(tmp_path: Path) -> Path:
    episode = generated_episode("the-golden-girls", scene_count=8, seed=3)
    episode.fountain = "left over from generate " * 1000  # Output fields are ignored.
    path = tmp_path / "golden-girls-pilot.json"
    path.write_text(json_format.MessageToJson(episode, indent=2), encoding="utf-8")
    return path


async def doppel(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def test_render_writes_each_format_and_prints_pages_and_runtime(
    scene_server: ServiceServer,
    episode_json: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pages = set()
    for name in ("fountain", "pdf", "fdx", "html"):
        target = tmp_path / "renders" / f"script-{name}.out"
        assert await doppel("render", str(episode_json), "--format", name, "-o", str(target)) == 0
        lines = printed(capsys.readouterr().out)
        assert lines[name] == str(target)
        page_count = int(lines["pages"])
        assert lines["runtime"] == f"{page_count} min"
        pages.add(page_count)
        data = target.read_bytes()
        if name == "pdf":
            assert len(pypdf.PdfReader(io.BytesIO(data)).pages) == page_count + 1
        elif name == "fdx":
            assert ET.fromstring(data).tag == "FinalDraft"
        elif name == "html":
            assert len(parse_html(data).root.find_all("section", "page")) == page_count + 1
        else:
            assert data.decode("utf-8").startswith("Title: ")
    assert len(pages) == 1 and pages.pop() >= 8


async def test_render_defaults_to_pdf_next_to_the_json(
    scene_server: ServiceServer, episode_json: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await doppel("render", str(episode_json)) == 0
    expected = episode_json.with_suffix(".pdf")
    assert printed(capsys.readouterr().out)["pdf"] == str(expected)
    assert expected.read_bytes().startswith(b"%PDF-")


async def test_render_refuses_what_it_cannot_read(
    scene_server: ServiceServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text('{"scenes": "not a list"}', encoding="utf-8")
    assert await doppel("render", str(broken), "--format", "html") == 2
    assert "cannot read" in capsys.readouterr().err
    assert await doppel("render", str(tmp_path / "missing.json")) == 2
    assert not list(tmp_path.glob("*.html")) and not list(tmp_path.glob("*.pdf"))


async def test_render_reports_a_refused_request(
    scene_server: ServiceServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    episode = generated_episode("taxi", scene_count=1, seed=1)
    episode.scenes[0].elements[0].action.text = "x" * 10_001
    path = tmp_path / "long.json"
    path.write_text(json_format.MessageToJson(episode), encoding="utf-8")
    assert await doppel("render", str(path), "--format", "pdf") == 1
    error = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in error and "is 10001 characters; the limit is 10000" in error
    assert not path.with_suffix(".pdf").exists()


@pytest.fixture
async def studio(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in stack.env().items():
        monkeypatch.setenv(name, value)


async def test_generate_with_format_writes_the_document_beside_the_json(
    studio: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--show", "Cheers", "--scenes", "2", "--seed", "41", "--quiet")
    assert await doppel("generate", *common, "--out", str(tmp_path / "plain")) == 0
    plain = printed(capsys.readouterr().out)
    assert set(plain) == {"episode", "fountain", "json", "trace"}  # Unchanged without --format.
    assert not list((tmp_path / "plain").glob("*.pdf"))

    assert await doppel("generate", *common, "--out", str(tmp_path), "--format", "pdf") == 0
    lines = printed(capsys.readouterr().out)
    json_path = Path(lines["json"])
    assert Path(lines["pdf"]) == json_path.with_suffix(".pdf")
    reader = pypdf.PdfReader(json_path.with_suffix(".pdf"))
    assert len(reader.pages) == int(lines["pages"]) + 1
    assert lines["runtime"] == f"{lines['pages']} min"
    assert "CHEERS" in reader.pages[0].extract_text().upper()
