"""The script HPA scales on active episodes (a gauge the script service exports, served by
prometheus-adapter with the rule in deploy/k8s/metrics-adapter/), not on CPU; offline checks that
the metric's name, labels and target agree from the instrument to the HPA."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from shared.config import Settings
from tests.deploy.conftest import DEPLOY, ROOT
from tests.deploy.kustomize_support import KUSTOMIZATIONS, of_kind, render, schema_errors

METRIC = "doppel_episodes_active"
ADAPTER = DEPLOY / "k8s" / "metrics-adapter" / "values.yaml"


def _hpa(kustomization: str, name: str) -> dict[str, Any]:
    (hpa,) = [
        h for h in of_kind(render(kustomization), "HorizontalPodAutoscaler")
        if h["metadata"]["name"] == name
    ]  # fmt: skip
    return hpa


def _config(kustomization: str) -> dict[str, str]:
    return next(
        m["data"] for m in of_kind(render(kustomization), "ConfigMap")
        if m["metadata"]["name"].startswith("doppelganger-config")
    )  # fmt: skip


@pytest.mark.parametrize("kustomization", KUSTOMIZATIONS)
def test_the_script_hpa_scales_on_active_episodes_only(kustomization: str) -> None:
    hpa = _hpa(kustomization, "script")
    assert schema_errors([hpa]) == []
    (metric,) = hpa["spec"]["metrics"]  # no CPU metric beside it
    assert metric["type"] == "Pods"
    assert metric["pods"]["metric"]["name"] == METRIC
    target = metric["pods"]["target"]
    assert target["type"] == "AverageValue"
    cap = int(_config(kustomization).get("DOPPEL_MAX_CONCURRENT_EPISODES", 0)) or (
        Settings().max_concurrent_episodes
    )
    # Below the per-replica cap: the HPA adds replicas before replicas refuse episodes.
    assert 0 < float(target["averageValue"]) < cap
    # The scene service does CPU work (rendering): it stays on CPU.
    (scene_metric,) = _hpa(kustomization, "scene")["spec"]["metrics"]
    assert scene_metric["resource"]["name"] == "cpu"


def test_the_gauge_is_what_the_script_service_exports() -> None:
    """The OTel instrument `doppel.episodes.active` (an UpDownCounter: a Prometheus gauge, no
    `_total`) becomes `doppel_episodes_active` in the collector's Prometheus exporter."""
    source = (ROOT / "services" / "script" / "server.py").read_text()
    found = re.search(r'create_up_down_counter\(\s*"(doppel\.episodes\.active)"', source)
    assert found is not None
    assert found.group(1).replace(".", "_") == METRIC


def test_the_adapter_rule_serves_the_metric_per_pod() -> None:
    values = yaml.safe_load(ADAPTER.read_text())
    assert values["rules"]["default"] is False
    (rule,) = values["rules"]["custom"]
    assert rule["seriesQuery"].startswith(METRIC + "{")
    assert re.fullmatch(rule["name"]["matches"], METRIC) and rule["name"]["as"] == METRIC
    overrides = rule["resources"]["overrides"]
    assert overrides == {
        "k8s_namespace_name": {"resource": "namespace"},
        "k8s_pod_name": {"resource": "pod"},
    }
    assert "<<.Series>>" in rule["metricsQuery"] and "<<.GroupBy>>" in rule["metricsQuery"]
    # Those labels exist: the collector turns resource attributes into labels, and the script
    # pods set the attributes.
    collector = yaml.safe_load((DEPLOY / "collector" / "config.yaml").read_text())
    exporter = collector["exporters"]["prometheus"]
    assert exporter["resource_to_telemetry_conversion"]["enabled"] is True
    assert "prometheus" in collector["service"]["pipelines"]["metrics"]["exporters"]
    for kustomization in KUSTOMIZATIONS:
        script = next(
            d for d in of_kind(render(kustomization), "Deployment")
            if d["metadata"]["name"] == "script"
        )  # fmt: skip
        env = {e["name"]: e.get("value", "") for e in script["spec"]["template"]["spec"]
               ["containers"][0]["env"]}  # fmt: skip
        attributes = dict(item.split("=", 1) for item in env["OTEL_RESOURCE_ATTRIBUTES"].split(","))
        for label in overrides:
            assert label.replace("_", ".") in attributes, (kustomization, label)
