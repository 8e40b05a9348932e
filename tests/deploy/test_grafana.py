"""Grafana provisioning: datasources, the dashboard provider, and dashboards Grafana can load
(their queries are checked against real data in test_dashboards.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import DEPLOY, ROOT

GRAFANA = DEPLOY / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))


def provisioning(kind: str, name: str) -> dict[str, Any]:
    return dict(yaml.safe_load((GRAFANA / "provisioning" / kind / name).read_text()))


def grafana_mounts() -> dict[str, str]:
    """Compose's grafana volumes: container path -> repository path."""
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    mounts = {}
    for volume in compose["services"]["grafana"]["volumes"]:
        source, target, *_ = volume.split(":")
        mounts[target] = source
    return mounts


def test_datasources_are_prometheus_and_jaeger_with_fixed_uids() -> None:
    sources = provisioning("datasources", "datasources.yml")["datasources"]
    assert {(s["uid"], s["type"], s["url"]) for s in sources} == {
        ("prometheus", "prometheus", "http://prometheus:9090"),
        ("jaeger", "jaeger", "http://jaeger:16686"),
    }
    assert [s["uid"] for s in sources if s.get("isDefault")] == ["prometheus"]


def test_the_provider_reads_the_directory_compose_mounts() -> None:
    (provider,) = provisioning("dashboards", "dashboards.yml")["providers"]
    mounts = grafana_mounts()
    assert mounts[provider["options"]["path"]] == "./deploy/grafana/dashboards"
    assert mounts["/etc/grafana/provisioning"] == "./deploy/grafana/provisioning"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    home = compose["services"]["grafana"]["environment"][
        "GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"
    ]
    assert (GRAFANA / "dashboards" / Path(home).name).exists()


def test_dashboard_uids_are_unique() -> None:
    uids = [json.loads(path.read_text())["uid"] for path in DASHBOARD_FILES]
    assert len(DASHBOARD_FILES) == 4 and len(set(uids)) == len(uids)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_panels_are_well_formed(path: Path) -> None:
    board = json.loads(path.read_text())
    ids = [panel["id"] for panel in board["panels"]]
    assert len(set(ids)) == len(ids)
    occupied: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        cells = {(x, y) for x in range(grid["x"], grid["x"] + grid["w"])
                 for y in range(grid["y"], grid["y"] + grid["h"])}  # fmt: skip
        assert not cells & occupied, f"{panel['title']} overlaps another panel"
        occupied |= cells
        assert panel["datasource"] == {"type": "prometheus", "uid": "prometheus"}
        assert panel["targets"] and all(t["expr"].strip() for t in panel["targets"])
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"])
    for variable in board["templating"]["list"]:
        assert variable["datasource"]["uid"] == "prometheus"
