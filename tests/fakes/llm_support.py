"""Helpers for tests of the LLM writers: a story context, settings pointing at a loopback
provider, and telemetry captured in memory (real SDK providers, in-memory exporters)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.llm_server import LLMServer
from services.script import catalog, procedural
from services.script.writing import StoryContext
from shared.config import Settings
from shared.telemetry import Telemetry

TEST_KEY = "sk-ant-api03-loopback-test-key-5f2c9a"


def story(
    show: str = "I Love Lucy",
    setting: str = "a Mars colony in 2157",
    seed: int = 7,
    scene_count: int = 3,
    request_id: str = "",
) -> StoryContext:
    found = catalog.find_show(show)
    assert found is not None
    resolved = catalog.resolve_setting(setting)
    cast, relationships = procedural.transform_cast(found, resolved, seed)
    return StoryContext(
        show=found, setting=resolved, cast=cast, relationships=relationships, seed=seed,
        scene_count=scene_count, request_id=request_id,
    )  # fmt: skip


def llm_settings(server: LLMServer, **changes: Any) -> Settings:
    """Both providers on the loopback server, fast backoff, telemetry off unless changed."""
    values: dict[str, Any] = {
        "telemetry_disabled": True,
        "anthropic_base_url": server.anthropic_url,
        "anthropic_api_key": TEST_KEY,
        "anthropic_model": "claude-loopback",
        "openai_base_url": server.openai_url,
        "openai_api_key": TEST_KEY,
        "openai_model": "gpt-loopback",
        "llm_backoff_seconds": 0.05,
        "llm_max_backoff_seconds": 0.2,
        "llm_timeout_seconds": 10.0,
        "llm_prices": (("claude-loopback", 3.0, 15.0), ("gpt-loopback", 0.15, 0.6)),
    }
    values.update(changes)
    return Settings(**values)


@dataclass
class CapturedTelemetry:
    telemetry: Telemetry
    spans_exporter: InMemorySpanExporter
    metrics_reader: InMemoryMetricReader

    def spans(self) -> list[ReadableSpan]:
        self.telemetry.force_flush()
        return list(self.spans_exporter.get_finished_spans())

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics_reader.get_metrics_data()
        points: list[Any] = []
        for resource in data.resource_metrics if data else []:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        points += list(metric.data.data_points)
        return points


def captured_telemetry(settings: Settings) -> CapturedTelemetry:
    exporter = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    enabled = settings.with_changes(telemetry_disabled=False, bsp_schedule_delay_ms=50)
    telemetry = Telemetry("script", enabled, span_exporter=exporter, metric_readers=[reader])
    return CapturedTelemetry(telemetry, exporter, reader)
