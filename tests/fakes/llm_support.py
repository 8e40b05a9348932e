"""Helpers for tests of the LLM writers: a story context, settings pointing at a loopback
provider, and telemetry captured in memory (real SDK providers, in-memory exporters)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from doppelganger.v1 import script_pb2, script_pb2_grpc
from services.script import catalog, procedural
from services.script.writing import StoryContext
from shared.config import Settings
from shared.telemetry import Telemetry
from testkit.llm_server import LLMServer

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
    """Both providers on the loopback server, fast backoff, a request limit that paces calls
    1 ms apart, telemetry off unless changed."""
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
        # Grants are paced window / requests apart: 50 a minute would space calls 1.2 s.
        "llm_requests_per_minute": 60_000,
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


def retry_hint_ms(error: grpc.aio.AioRpcError) -> int | None:
    """The `retry-after-ms` trailing metadata of a refusal, if any."""
    return next(
        (int(value) for key, value in error.trailing_metadata() or () if key == "retry-after-ms"),
        None,
    )


async def generate_retrying(
    stub: script_pb2_grpc.ScriptServiceStub,
    message: script_pb2.GenerateEpisodeRequest,
    timeout: float = 120.0,
) -> tuple[list[script_pb2.GenerateEpisodeEvent], int]:
    """GenerateEpisode's events as a patient client gets them: ABORTED (an identical request
    is being written, or its replica died and its lease has not run out) is retried after its
    `retry-after-ms`, as `doppel generate` does. Returns the events and the retries made."""
    deadline = time.monotonic() + timeout
    retries = 0
    while True:
        try:
            left = max(0.1, deadline - time.monotonic())
            return [event async for event in stub.GenerateEpisode(message, timeout=left)], retries
        except grpc.aio.AioRpcError as exc:
            hint = retry_hint_ms(exc)
            if exc.code() != grpc.StatusCode.ABORTED or hint is None:
                raise
            if time.monotonic() + hint / 1000 > deadline:
                raise
            retries += 1
            await asyncio.sleep(hint / 1000)
