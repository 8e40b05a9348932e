"""Every RPC of every service fuzzed with generated messages, against real servers on loopback.

The four services (cache on a real Redis, scene, script wired to both, monitor) run in-process on
an event loop in a background thread; hypothesis drives blocking stubs over real channels. Per
RPC `DOPPEL_FUZZ_EXAMPLES` requests (default 100; `make fuzz` runs 10,000). A request may be
refused for any reason but INTERNAL or UNKNOWN (a crash); every INVALID_ARGUMENT names a field
of the request; every server still answers health checks and a real call afterwards.

The monitor's OTLP receivers are open to anyone, and a crash is not the only way to break them:
one poisoned value once made every later `/metrics` and `/api/health` answer 500 while the gRPC
health service still said SERVING. So after every fuzzed OTLP export, `/metrics` and
`/api/health` must answer 200 with finite figures in range and `MonitorService/GetHealth` must
answer with a sane report. Besides the descriptor-driven requests, `proto_strategies.otlp_metrics`
and `otlp_traces` aim exports at what the monitor keeps (NaN, infinities, 1e19, negative
counters, long names), sent over gRPC and over OTLP/HTTP (protobuf, gzip, JSON).
"""

from __future__ import annotations

import base64
import gzip
import json
import math
import os
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from doppelganger.v1 import (
    cache_pb2,
    monitor_pb2,
    monitor_pb2_grpc,
    scene_pb2,
    script_pb2,
    script_pb2_grpc,
)
from services.cache.server import create_cache_server
from services.monitor.server import create_monitor_server
from services.scene.server import create_scene_server
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from tests.integration import proto_strategies
from tests.integration.loop_thread import LoopThread

EXAMPLES = int(os.environ.get("DOPPEL_FUZZ_EXAMPLES", "100"))
CALL_TIMEOUT = 30.0
STREAM_TIMEOUT = 0.05  # WatchAlerts never ends by itself; other streams end long before.
CRASH_CODES = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

SERVICES: dict[str, list[ServiceDescriptor]] = {
    "script": [script_pb2.DESCRIPTOR.services_by_name["ScriptService"]],
    "scene": [scene_pb2.DESCRIPTOR.services_by_name["SceneService"]],
    "cache": [cache_pb2.DESCRIPTOR.services_by_name["CacheService"]],
    "monitor": [
        monitor_pb2.DESCRIPTOR.services_by_name["MonitorService"],
        trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"],
        metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"],
    ],
}
RPCS = [
    (server, method)
    for server, services in SERVICES.items()
    for service in services
    for method in service.methods
]
OTLP_EXPORTS = {
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
}
OTLP_SERVICES = {
    trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name,
    metrics_service_pb2.DESCRIPTOR.services_by_name["MetricsService"].full_name,
}


@dataclass
class FuzzedStack:
    """The running servers, their ports, and the outcomes seen per RPC."""

    ports: dict[str, int]
    monitor_http: int
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)


async def start_stack(settings: Settings) -> dict[str, ServiceServer]:
    def telemetry(name: str) -> Telemetry:
        return Telemetry(name, settings)

    cache = await create_cache_server(settings, telemetry("cache"))
    scene = await create_scene_server(settings, telemetry("scene"))
    wired = settings.with_changes(
        cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
    )
    script = await create_script_server(wired, telemetry("script"))
    monitor = await create_monitor_server(settings, telemetry("monitor"))
    return {"cache": cache, "scene": scene, "script": script, "monitor": monitor}


@pytest.fixture(scope="module")
def stack(redis_server: RedisServer) -> Iterator[FuzzedStack]:
    settings = Settings(
        script_port=0,
        scene_port=0,
        cache_port=0,
        monitor_port=0,
        monitor_http_port=0,
        telemetry_disabled=True,
        grace_seconds=1.0,
        redis_url=redis_server.url,
    )
    loop = LoopThread()
    servers = loop.run(start_stack(settings))
    fuzzed = FuzzedStack(
        {name: server.port for name, server in servers.items()},
        monitor_http=servers["monitor"].http_port,
    )
    yield fuzzed
    report = ", ".join(f"{rpc} {dict(counts)}" for rpc, counts in sorted(fuzzed.outcomes.items()))
    print(f"\nfuzz outcomes ({EXAMPLES} examples per RPC): {report}")
    for server in servers.values():
        loop.run(server.stop(0))
    loop.close()


def invoker(channel: grpc.Channel, method: MethodDescriptor) -> Callable[[Message], str]:
    """Calls `method` with a message; returns the status code's name (OK when it succeeded)."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    response_class = GetMessageClass(method.output_type)
    serialize = lambda message: message.SerializeToString()  # noqa: E731
    if method.server_streaming:
        stream = channel.unary_stream(path, serialize, response_class.FromString)

        def call_stream(request: Message) -> str:
            for _ in stream(request, timeout=stream_timeout(method)):
                pass
            return "OK"

        return call_stream
    unary = channel.unary_unary(path, serialize, response_class.FromString)

    def call_unary(request: Message) -> str:
        unary(request, timeout=CALL_TIMEOUT)
        return "OK"

    return call_unary


def stream_timeout(method: MethodDescriptor) -> float:
    return STREAM_TIMEOUT if method.name == "WatchAlerts" else CALL_TIMEOUT


def check_refusal(error: grpc.RpcError, method: MethodDescriptor, request: Message) -> str:
    code = error.code()
    details = error.details() or ""
    assert code not in CRASH_CODES, f"{method.name} crashed with {code}: {details!r} on {request}"
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        assert method.name == "WatchAlerts", f"{method.name} hung on {request}"
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        names = proto_strategies.field_names(method.input_type)
        assert any(name in details for name in names), (
            f"{method.name}: INVALID_ARGUMENT names no field: {details!r}"
        )
    return str(code.name)


def http_call(
    port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", body, headers or {})
    try:
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def prometheus_values(text: str) -> dict[str, float]:
    """Sample -> value; lines end at a line feed only (a label value may hold a raw \\r)."""
    values = {}
    for line in text.split("\n"):
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            values[key] = float(value)
    return values


def assert_monitor_sane(stack: FuzzedStack) -> None:
    """/metrics and /api/health answer 200 with finite figures in range; GetHealth answers."""
    status, body = http_call(stack.monitor_http, "/metrics")
    assert status == 200, body[:300]
    values = prometheus_values(body.decode())
    bad = {key: value for key, value in values.items() if not math.isfinite(value)}
    assert not bad, f"/metrics has non-finite samples: {list(bad.items())[:5]}"
    assert 0 <= values["doppel_health_score"] <= 100
    status, body = http_call(stack.monitor_http, "/api/health")
    assert status == 200, body[:300]
    report = json.loads(body)
    assert isinstance(report["score"], int | float) and 0 <= report["score"] <= 100
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['monitor']}") as channel:
        health = monitor_pb2_grpc.MonitorServiceStub(channel).GetHealth(
            monitor_pb2.GetHealthRequest(), timeout=CALL_TIMEOUT
        )
    # Not equal to /api/health's score: the evaluator may fire or resolve alerts in between.
    assert 0.0 <= health.score <= 100.0
    scores = (health.errors, health.alerts, health.resources, health.trends)
    assert all(0.0 <= score <= 1.0 for score in scores), health
    assert 0 <= health.exporter_spans_dropped <= 2**53
    for row in health.service_stats:
        figures = (row.memory_rss_bytes, row.cpu_utilization, row.llm_calls_per_minute,
                   row.tokens_per_minute, row.cache_hit_rate)  # fmt: skip
        assert all(math.isfinite(figure) and figure >= 0 for figure in figures), row


def assert_still_serving(stack: FuzzedStack) -> None:
    for name, port in stack.ports.items():
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            health = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(), timeout=10
            )
            assert health.status == health_pb2.HealthCheckResponse.SERVING, name
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports['script']}") as channel:
        shows = script_pb2_grpc.ScriptServiceStub(channel).ListShows(
            script_pb2.ListShowsRequest(), timeout=10
        )
        assert shows.shows
    assert_monitor_sane(stack)


@pytest.mark.timeout(0)
@pytest.mark.parametrize(
    ("server", "method"),
    RPCS,
    ids=[f"{method.containing_service.name}.{method.name}" for _, method in RPCS],
)
def test_fuzzed_requests_never_crash_a_server(
    stack: FuzzedStack, server: str, method: MethodDescriptor
) -> None:
    outcomes = stack.outcomes.setdefault(
        f"{method.containing_service.name}.{method.name}", Counter()
    )
    with grpc.insecure_channel(f"127.0.0.1:{stack.ports[server]}") as channel:
        call = invoker(channel, method)

        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(proto_strategies.message(method.input_type))
        def fuzz(request: Message) -> None:
            try:
                outcomes[call(request)] += 1
            except grpc.RpcError as error:
                outcomes[check_refusal(error, method, request)] += 1
            if method.containing_service.full_name in OTLP_SERVICES:
                assert_monitor_sane(stack)

        fuzz()
    # Hypothesis stops early when a request type has fewer distinct values (empty messages).
    assert sum(outcomes.values()) >= 1
    assert_still_serving(stack)


TRANSPORTS = ("grpc", "http-protobuf", "http-gzip", "http-json")


def send_otlp(stack: FuzzedStack, export: Message, transport: str) -> str:
    """Sends an OTLP export to the monitor; returns the outcome (a status code's name, or the
    HTTP status)."""
    metrics = isinstance(export, metrics_service_pb2.ExportMetricsServiceRequest)
    signal = "metrics" if metrics else "traces"
    if transport == "grpc":
        with grpc.insecure_channel(f"127.0.0.1:{stack.ports['monitor']}") as channel:
            try:
                channel.unary_unary(OTLP_EXPORTS[signal])(
                    export.SerializeToString(), timeout=CALL_TIMEOUT
                )
                return "OK"
            except grpc.RpcError as error:
                assert error.code() not in CRASH_CODES, error.details()
                return str(error.code().name)
    body = export.SerializeToString()
    headers = {"Content-Type": "application/x-protobuf"}
    if transport == "http-gzip":
        body, headers["Content-Encoding"] = gzip.compress(body), "gzip"
    elif transport == "http-json":
        body, headers["Content-Type"] = otlp_json(export), "application/json"
    status, answer = http_call(stack.monitor_http, f"/v1/{signal}", body, headers)
    assert status in (200, 413, 429), (status, answer[:300])
    return f"HTTP {status}"


def otlp_json(export: Message) -> bytes:
    """The OTLP JSON encoding: proto JSON, but trace and span ids in hex instead of base64."""

    def hex_ids(node: Any) -> Any:
        if isinstance(node, list):
            return [hex_ids(item) for item in node]
        if not isinstance(node, dict):
            return node
        return {
            key: base64.b64decode(value).hex() if key in ("traceId", "spanId") else hex_ids(value)
            for key, value in node.items()
        }

    return json.dumps(hex_ids(json_format.MessageToDict(export))).encode()


@pytest.mark.timeout(0)
@pytest.mark.parametrize("signal", ["metrics", "traces"])
def test_fuzzed_otlp_values_never_break_the_monitor(stack: FuzzedStack, signal: str) -> None:
    """Exports aimed at the monitor's totals, gauges and names, over every OTLP transport; after
    each, /metrics, /api/health and GetHealth still answer with sane figures."""
    outcomes = stack.outcomes.setdefault(f"OTLP {signal} values", Counter())
    strategy = (
        proto_strategies.otlp_metrics() if signal == "metrics" else proto_strategies.otlp_traces()
    )

    @hypothesis_settings(
        max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(strategy, st.sampled_from(TRANSPORTS))
    def fuzz(export: Message, transport: str) -> None:
        outcomes[f"{transport} {send_otlp(stack, export, transport)}"] += 1
        assert_monitor_sane(stack)

    fuzz()
    assert sum(outcomes.values()) >= EXAMPLES // 2
    assert_still_serving(stack)
