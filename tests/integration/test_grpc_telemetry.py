"""The gRPC interceptors: context propagates, both attribute sets, status codes, durations.

Spans are captured with the SDK's in-memory exporter; the OTLP path is covered end to end.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from doppelganger.v1 import cache_pb2, cache_pb2_grpc
from services.cache.server import create_cache_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer, create_channel
from shared.telemetry import Telemetry


@dataclass
class Captured:
    telemetry: Telemetry
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        self.telemetry.force_flush()
        return list(self.spans.get_finished_spans())

    async def finished_of(self, kind: SpanKind, count: int = 1) -> list[ReadableSpan]:
        """The finished spans of `kind`, once there are `count`: a server span ends after the
        status went out, so the client can see the answer before the span is finished."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while True:
            found = [span for span in self.finished() if span.kind is kind]
            if len(found) >= count or loop.time() > deadline:
                return found
            await asyncio.sleep(0.01)

    def metric_points(self, name: str) -> list[object]:
        data = self.metrics.get_metrics_data()
        return [
            point
            for resource in (data.resource_metrics if data else [])
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name == name
            for point in metric.data.data_points
        ]


def captured(name: str, settings: Settings) -> Captured:
    spans, metrics = InMemorySpanExporter(), InMemoryMetricReader()
    config = settings.with_changes(telemetry_disabled=False, bsp_schedule_delay_ms=50)
    telemetry = Telemetry(name, config, span_exporter=spans, metric_readers=[metrics])
    return Captured(telemetry, spans, metrics)


@pytest.fixture
async def traced_cache(
    settings: Settings, redis_server: RedisServer
) -> AsyncIterator[tuple[ServiceServer, Captured]]:
    server_side = captured("cache", settings)
    config = settings.with_changes(redis_url=redis_server.url)
    server = await create_cache_server(config, server_side.telemetry)
    yield server, server_side
    await server.stop(0)


async def test_trace_context_crosses_the_call(
    traced_cache: tuple[ServiceServer, Captured], settings: Settings
) -> None:
    server, server_side = traced_cache
    client_side = captured("client", settings)
    async with create_channel(f"127.0.0.1:{server.port}", client_side.telemetry) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        with client_side.telemetry.tracer.start_as_current_span("caller") as parent:
            await stub.Set(cache_pb2.SetRequest(namespace="tel", key="k", value=b"v"))
    client_span = next(s for s in client_side.finished() if s.kind is SpanKind.CLIENT)
    [server_span, *_] = await server_side.finished_of(SpanKind.SERVER)
    assert client_span.name == server_span.name == "doppelganger.v1.CacheService/Set"
    assert client_span.parent is not None
    assert client_span.parent.span_id == parent.get_span_context().span_id
    assert server_span.context.trace_id == parent.get_span_context().trace_id
    assert server_span.parent is not None
    assert server_span.parent.span_id == client_span.context.span_id
    attributes = dict(server_span.attributes or {})
    assert attributes["rpc.system.name"] == "grpc" and attributes["rpc.system"] == "grpc"
    assert attributes["rpc.method"] == "doppelganger.v1.CacheService/Set"
    assert attributes["rpc.service"] == "doppelganger.v1.CacheService"
    assert attributes["rpc.status_code"] == "OK" and attributes["rpc.grpc.status_code"] == 0
    assert dict(client_span.attributes or {})["server.port"] == server.port
    assert server_span.status.status_code is StatusCode.UNSET


async def test_client_errors_and_server_errors_are_classified(
    traced_cache: tuple[ServiceServer, Captured], settings: Settings
) -> None:
    server, server_side = traced_cache
    client_side = captured("client", settings)
    async with create_channel(f"127.0.0.1:{server.port}", client_side.telemetry) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.Get(cache_pb2.GetRequest(namespace="BAD", key="k"))
    client_span = next(s for s in client_side.finished() if s.kind is SpanKind.CLIENT)
    [server_span, *_] = await server_side.finished_of(SpanKind.SERVER)
    # INVALID_ARGUMENT is the caller's fault: an error for the client, not for the server.
    assert client_span.status.status_code is StatusCode.ERROR
    assert dict(client_span.attributes or {})["error.type"] == "INVALID_ARGUMENT"
    assert server_span.status.status_code is StatusCode.UNSET
    assert dict(server_span.attributes or {})["rpc.grpc.status_code"] == 3


async def test_durations_are_recorded_in_seconds(
    traced_cache: tuple[ServiceServer, Captured], settings: Settings
) -> None:
    server, server_side = traced_cache
    client_side = captured("client", settings)
    async with create_channel(f"127.0.0.1:{server.port}", client_side.telemetry) as channel:
        stub = cache_pb2_grpc.CacheServiceStub(channel)
        for _ in range(3):
            await stub.Get(cache_pb2.GetRequest(namespace="tel", key="k"))
    await server_side.finished_of(SpanKind.SERVER, 3)  # the duration is recorded as it ends
    server_points = server_side.metric_points("rpc.server.call.duration")
    client_points = client_side.metric_points("rpc.client.call.duration")
    assert sum(p.count for p in server_points) == 3  # type: ignore[attr-defined]
    assert sum(p.count for p in client_points) == 3  # type: ignore[attr-defined]
    # Seconds, not milliseconds: a loopback call takes well under one second.
    assert all(p.sum / p.count < 1.0 for p in server_points)  # type: ignore[attr-defined]


async def test_health_checks_are_not_traced(
    traced_cache: tuple[ServiceServer, Captured],
) -> None:
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server, server_side = traced_cache
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        response = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
    assert response.status == health_pb2.HealthCheckResponse.SERVING
    assert not [s for s in server_side.finished() if "Health" in s.name]
