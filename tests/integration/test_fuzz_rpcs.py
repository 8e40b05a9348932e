"""Every RPC of every service fuzzed with generated messages, against real servers on loopback.

The four services (cache on a real Redis, scene, script wired to both, monitor) run in-process on
an event loop in a background thread; hypothesis drives blocking stubs over real channels. Per
RPC `DOPPEL_FUZZ_EXAMPLES` requests (default 300; `make fuzz` runs 10,000). A request may be
refused for any reason but INTERNAL or UNKNOWN (a crash); every INVALID_ARGUMENT names a field
of the request; every server still answers health checks and a real call afterwards.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor, ServiceDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from doppelganger.v1 import cache_pb2, monitor_pb2, scene_pb2, script_pb2, script_pb2_grpc
from services.cache.server import create_cache_server
from services.monitor.server import create_monitor_server
from services.scene.server import create_scene_server
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from tests.integration import proto_strategies

EXAMPLES = int(os.environ.get("DOPPEL_FUZZ_EXAMPLES", "300"))
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


@dataclass
class FuzzedStack:
    """The running servers, their ports, and the outcomes seen per RPC."""

    ports: dict[str, int]
    outcomes: dict[str, Counter[str]] = field(default_factory=dict)


class LoopThread:
    """An asyncio loop in a daemon thread, for servers that must outlive one test's loop."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coroutine: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


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
    fuzzed = FuzzedStack({name: server.port for name, server in servers.items()})
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

        fuzz()
    # Hypothesis stops early when a request type has fewer distinct values (empty messages).
    assert sum(outcomes.values()) >= 1
    assert_still_serving(stack)
