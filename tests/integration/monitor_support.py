"""The monitor's integration tests' shared parts: OTLP spans and metrics built by hand, a monitor
on a clock the test moves, raw HTTP exchanges with its status port, an exporter in another
process."""

from __future__ import annotations

import asyncio
import os
import sys

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2, metrics_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor.server import MonitorServer, create_monitor_server
from shared.config import Settings
from shared.telemetry import Telemetry
from testkit import eventually

START = 10_000.0
NANOS = 1_700_000_000_000_000_000
SERVER = trace_pb2.Span.SPAN_KIND_SERVER
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
RENDER = "doppelganger.v1.SceneService/RenderScene"


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kv(key: str, value: str | int) -> KeyValue:
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span(
    name: str, *, kind: int = SERVER, seconds: float = 0.01, grpc_code: int | None = None
) -> trace_pb2.Span:
    result = trace_pb2.Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=name,
        kind=kind,  # type: ignore[arg-type]
        start_time_unix_nano=NANOS,
        end_time_unix_nano=NANOS + int(seconds * 1e9),
    )
    if grpc_code is not None:
        result.attributes.append(kv("rpc.grpc.status_code", grpc_code))
    return result


def export(
    service: str, spans: list[trace_pb2.Span]
) -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv("service.name", service))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def metrics_export(
    service: str, metrics: list[metrics_pb2.Metric]
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(
        [kv("service.name", service), kv("service.instance.id", f"{service}-1")]
    )
    resource_metrics.scope_metrics.add().metrics.extend(metrics)
    return request


class Monitor:
    """A monitor server on a test clock, with stubs for its three services."""

    def __init__(self, server: MonitorServer, channel: grpc.aio.Channel, clock: Clock) -> None:
        self.server = server
        self.clock = clock
        self.monitor = monitor_pb2_grpc.MonitorServiceStub(channel)
        self.traces = trace_service_pb2_grpc.TraceServiceStub(channel)
        self.metrics = metrics_service_pb2_grpc.MetricsServiceStub(channel)

    async def send(self, service: str, spans: list[trace_pb2.Span]) -> None:
        await self.traces.Export(export(service, spans))

    async def tick(self, seconds: float) -> None:
        """Moves the clock and waits for an evaluation that saw the new time."""
        self.clock.now += seconds
        engine = self.server.state.engine
        seen = engine.evaluations
        await eventually(lambda: engine.evaluations > seen, what="an evaluation after the tick")

    async def health(self) -> monitor_pb2.HealthReport:
        return await self.monitor.GetHealth(monitor_pb2.GetHealthRequest())

    async def alerts(self) -> list[monitor_pb2.Alert]:
        return list((await self.monitor.ListAlerts(monitor_pb2.ListAlertsRequest())).alerts)


async def start_monitor(settings: Settings, **changes: object) -> tuple[MonitorServer, Clock]:
    clock = Clock()
    config = settings.with_changes(monitor_eval_interval_seconds=0.02, **changes)
    server = await create_monitor_server(config, Telemetry("monitor", config), clock=clock)
    return server, clock


def render_calls(failing: int) -> list[trace_pb2.Span]:
    """10 RenderScene calls, `failing` of them INTERNAL (13)."""
    return [span(RENDER, grpc_code=13 if i < failing else 0, seconds=0.2) for i in range(10)]


def rss(mb: int) -> metrics_pb2.Metric:
    point = metrics_pb2.NumberDataPoint(as_int=mb * 1024 * 1024, time_unix_nano=NANOS)
    point.attributes.append(kv("process.memory.type", "rss"))
    return metrics_pb2.Metric(
        name="process.memory.usage", gauge=metrics_pb2.Gauge(data_points=[point])
    )


PROTOBUF = "application/x-protobuf"
Reply = tuple[int, dict[str, str], bytes]


async def connect(
    port: int, head: str = "", source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection to the loopback port from `source` (another 127.x.y.z: another peer)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    if head:
        writer.write(head.encode("latin-1"))
        await writer.drain()
    return reader, writer


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    """Reads a response up to the end of the stream (every response closes the connection)."""
    data = await asyncio.wait_for(reader.read(), 30)
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split(" ")[1]), headers, body


async def exchange(port: int, head: str, body: bytes = b"", source: str = "127.0.0.1") -> Reply:
    reader, writer = await connect(port, head, source)
    if body:
        writer.write(body)
    try:
        return await read_reply(reader)
    finally:
        writer.close()


def get(path: str) -> str:
    return f"GET {path} HTTP/1.1\r\nHost: monitor\r\n\r\n"


OUTSIDE = "outside-app"
EXPORTER_SCRIPT = """
import sys
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import SpanKind, Status, StatusCode

provider = TracerProvider(resource=Resource.create({"service.name": "outside-app"}))
exporter = OTLPSpanExporter(endpoint=sys.argv[1], insecure=True)
provider.add_span_processor(BatchSpanProcessor(exporter))
tracer = provider.get_tracer("outside")
for i in range(30):
    with tracer.start_as_current_span("checkout", kind=SpanKind.SERVER):
        with tracer.start_as_current_span("charge card", kind=SpanKind.CLIENT) as call:
            if i % 3 == 0:
                call.set_status(Status(StatusCode.ERROR, "declined"))
provider.shutdown()
print("exported")
"""


def child_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("OTEL_")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


async def run(*args: str, env: dict[str, str], timeout: float = 60) -> tuple[int, str, str]:
    """Runs a child process without blocking the loop the monitor serves on."""
    process = await asyncio.create_subprocess_exec(
        *args, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def export_from_another_process(port: int) -> None:
    """30 traces from the official OpenTelemetry exporter, in a separate Python process."""
    code, stdout, stderr = await run(
        sys.executable, "-c", EXPORTER_SCRIPT, f"http://127.0.0.1:{port}", env=child_env()
    )
    assert code == 0 and "exported" in stdout, stderr


def samples(text: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample line of an exposition."""
    found = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            found[key] = float(value)
    return found
