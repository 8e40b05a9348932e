"""deploy/collector/config.yaml, checked for structure in Python: there is no `otelcol-contrib`
binary here (it is not packaged by Debian or PyPI), so `otelcol validate` cannot run. What is
checked is what a broken gateway would get wrong: every component a pipeline names is defined,
the connector joins a traces pipeline to a metrics one, the memory limiter runs first and batching
last, span-metric buckets reach 120 s, and every exporter the issue asks for is wired."""

from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.conftest import DEPLOY

CONFIG = DEPLOY / "collector" / "config.yaml"
DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")
SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0}


def config() -> dict[str, Any]:
    return dict(yaml.safe_load(CONFIG.read_text()))


def seconds(duration: str) -> float:
    match = DURATION.match(duration)
    assert match, f"not a collector duration: {duration!r}"
    return float(match.group(1)) * SECONDS[match.group(2)]


def component_errors(cfg: dict[str, Any]) -> list[str]:
    """What `otelcol validate` would refuse about references between components."""
    errors = []
    connectors = set(cfg.get("connectors", {}))
    defined = {
        "receivers": set(cfg.get("receivers", {})) | connectors,
        "processors": set(cfg.get("processors", {})),
        "exporters": set(cfg.get("exporters", {})) | connectors,
    }
    pipelines = cfg["service"]["pipelines"]
    for pipeline_name, pipeline in pipelines.items():
        if pipeline_name.split("/")[0] not in {"traces", "metrics", "logs"}:
            errors.append(f"{pipeline_name}: unknown signal")
        for role, names in pipeline.items():
            errors += [
                f"{pipeline_name}.{role}: {name} is not defined"
                for name in names
                if name not in defined.get(role, set())
            ]
    used_as = {role: {n for p in pipelines.values() for n in p.get(role, [])} for role in defined}
    for connector in connectors:
        if connector not in used_as["exporters"] or connector not in used_as["receivers"]:
            errors.append(f"connector {connector}: must be an exporter and a receiver")
    errors += [f"extension {e} is not defined" for e in cfg["service"].get("extensions", [])
               if e not in cfg.get("extensions", {})]  # fmt: skip
    return errors


def test_every_component_a_pipeline_names_is_defined_and_used() -> None:
    assert component_errors(config()) == []


def test_the_reference_check_can_fail() -> None:
    broken = config()
    broken["service"]["pipelines"]["traces"]["exporters"].append("otlp/nowhere")
    broken["service"]["pipelines"]["metrics/spanmetrics"]["receivers"] = ["otlp"]
    assert component_errors(broken) == [
        "traces.exporters: otlp/nowhere is not defined",
        "connector spanmetrics: must be an exporter and a receiver",
    ]


def test_memory_limiter_first_and_batch_last_in_every_pipeline() -> None:
    for name, pipeline in config()["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", name
        assert pipeline["processors"][-1] == "batch", name


def test_span_metrics_buckets_reach_120_seconds_in_order() -> None:
    spanmetrics = config()["connectors"]["spanmetrics"]
    buckets = [seconds(b) for b in spanmetrics["histogram"]["explicit"]["buckets"]]
    assert buckets == sorted(buckets) and len(set(buckets)) == len(buckets)
    assert buckets[-1] >= 120 and buckets[0] <= 0.01


def test_spans_go_to_jaeger_the_monitor_and_span_metrics_to_prometheus() -> None:
    cfg = config()
    pipelines = cfg["service"]["pipelines"]
    assert set(pipelines["traces"]["exporters"]) == {"otlp/jaeger", "otlp/monitor", "spanmetrics"}
    assert set(pipelines["metrics"]["exporters"]) == {"otlp/monitor", "prometheus"}
    assert pipelines["metrics/spanmetrics"] == {
        "receivers": ["spanmetrics"], "processors": ["memory_limiter", "batch"],
        "exporters": ["prometheus"],
    }  # fmt: skip
    exporters = cfg["exporters"]
    assert exporters["otlp/jaeger"]["endpoint"] == "${env:JAEGER_OTLP_ENDPOINT}"
    assert exporters["otlp/monitor"]["endpoint"] == "${env:MONITOR_OTLP_ENDPOINT}"
    assert exporters["prometheus"]["endpoint"].endswith(":8889")
    assert cfg["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")


def test_kubernetes_and_compose_set_both_endpoints() -> None:
    kustomization = yaml.safe_load((DEPLOY / "collector" / "kustomization.yaml").read_text())
    env = next(g for g in kustomization["configMapGenerator"] if g["name"] == "otel-collector-env")
    assert {literal.split("=")[0] for literal in env["literals"]} == {
        "JAEGER_OTLP_ENDPOINT",
        "MONITOR_OTLP_ENDPOINT",
    }


def test_replicas_keep_distinct_identities() -> None:
    """Every container is PID 1, so the SDK's `{service}-{pid}` instance id repeats across pods;
    the collector takes the pod name instead, before spans and metrics fan out."""
    cfg = config()
    (action,) = cfg["processors"]["resource/instance"]["attributes"]
    assert action == {
        "key": "service.instance.id",
        "from_attribute": "k8s.pod.name",
        "action": "upsert",
    }
    for name in ("traces", "metrics"):
        assert "resource/instance" in cfg["service"]["pipelines"][name]["processors"]
