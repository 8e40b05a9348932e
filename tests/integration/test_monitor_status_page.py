"""The status page in headless Chromium (Debian's `chromium`): the page's own script fetches the
monitor's JSON and the test reads the numbers it drew off the DOM."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path

import grpc
import pytest

from shared.config import Settings
from tests.integration.monitor_support import (
    OUTSIDE,
    Monitor,
    export_from_another_process,
    metrics_export,
    render_calls,
    rss,
    start_monitor,
)

CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--virtual-time-budget=5000",
)  # fmt: skip


class Dom(HTMLParser):
    """Text by element id, and the data- attributes and cell texts of table rows and spans."""

    def __init__(self) -> None:
        super().__init__()
        self.text: dict[str, str] = defaultdict(str)
        self.attributes: dict[str, dict[str, str]] = {}
        self.rows: dict[str, list[dict[str, str]]] = defaultdict(list)  # By tbody id.
        self.cells: dict[int, list[str]] = defaultdict(list)  # By id() of the row dict.
        self.waterfall: list[dict[str, str]] = []
        self._open_ids: list[tuple[str, str]] = []  # (tag, id) of open elements with an id.
        self._tbody = ""
        self._row: dict[str, str] | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        if "id" in attributes:
            self.attributes[attributes["id"]] = attributes
            self._open_ids.append((tag, attributes["id"]))
            if tag == "tbody":
                self._tbody = attributes["id"]
        if tag == "tr" and self._tbody:
            self._row = attributes
            self.rows[self._tbody].append(attributes)
        if tag == "td" and self._row is not None:
            self._cell = []
        if tag == "div" and attributes.get("class") == "span":
            self.waterfall.append(attributes)

    def handle_endtag(self, tag: str) -> None:
        if self._open_ids and self._open_ids[-1][0] == tag:
            self._open_ids.pop()
        if tag == "td" and self._cell is not None and self._row is not None:
            self.cells[id(self._row)].append("".join(self._cell).strip())
            self._cell = None
        if tag == "tr":
            self._row = None
        if tag == "tbody":
            self._tbody = ""

    def handle_data(self, data: str) -> None:
        for _, element_id in self._open_ids:
            self.text[element_id] += data
        if self._cell is not None:
            self._cell.append(data)

    def row_cells(self, row: dict[str, str]) -> list[str]:
        return self.cells[id(row)]


async def chromium(url: str, profile: Path, *flags: str) -> bytes:
    process = await asyncio.create_subprocess_exec(
        "chromium", *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, stderr.decode()[-2000:]
    return stdout


async def test_the_status_page_shows_what_the_monitor_knows(
    settings: Settings, tmp_path: Path
) -> None:
    server, clock = await start_monitor(settings, monitor_thresholds=(("hold_seconds", 0.0),))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            m = Monitor(server, channel, clock)
            await m.send("scene", render_calls(failing=5))
            await m.metrics.Export(metrics_export("scene", [rss(600)]))
            await export_from_another_process(server.port)  # The newest traces: 2 spans each.
            await m.tick(0.1)
            health = await m.health()
            dom_text = await chromium(
                f"http://127.0.0.1:{server.http_port}/", tmp_path / "profile", "--dump-dom"
            )
    finally:
        await server.stop(0)

    dom = Dom()
    dom.feed(dom_text.decode())
    assert 'data-loaded="1"' in dom_text.decode()  # The script ran and every fetch worked.
    assert dom.text["status"] == "live"
    assert float(dom.text["score"]) == pytest.approx(health.score, abs=0.05)
    for name in ("errors", "alerts", "resources", "trends"):
        assert float(dom.text[f"sub-{name}"]) == pytest.approx(getattr(health, name), abs=0.005)
    assert int(dom.text["spans-received"]) == health.spans_received == 70
    assert OUTSIDE in dom.text["services"]

    operations = {(r["data-service"], r["data-operation"]): r for r in dom.rows["operations"]}
    charge = operations[(OUTSIDE, "charge card")]
    assert (charge["data-count"], charge["data-errors"]) == ("30", "10")
    assert dom.row_cells(charge)[5] == "33.3%"
    render = operations[("scene", "doppelganger.v1.SceneService/RenderScene")]
    assert dom.row_cells(render)[6:9] == ["200.0", "200.0", "200.0"]  # p50, p95, p99 in ms.

    alerts = {(r["data-rule"], r["data-severity"], r["data-state"]) for r in dom.rows["alerts"]}
    assert alerts == {
        ("error_rate", "critical", "firing"),  # charge card, and RenderScene: one row each.
        ("memory", "warning", "firing"),
    }
    assert len(dom.rows["alerts"]) == 3
    (scene_row,) = dom.rows["service-stats"]
    assert scene_row["data-service"] == "scene" and dom.row_cells(scene_row)[1] == "600"

    names = [(s["data-service"], s["data-name"]) for s in dom.waterfall]
    assert names.count((OUTSIDE, "checkout")) == 5  # The 5 latest traces, drawn as waterfalls.
    assert names.count((OUTSIDE, "charge card")) == 5
