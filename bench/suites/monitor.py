"""Monitor ingestion: spans per second from pre-encoded OTLP batches, and RSS after many spans.

The monitor runs as its own process; a client process pushes pre-encoded
ExportTraceServiceRequest bytes (so the client's encoding cost is not in the figure) with
several calls in flight. The rate is what the monitor says it ingested (`spans_received`) over
the wall time, not what the client sent.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import time

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from bench.measure import Figure
from bench.stacks import rss_bytes, running, stack_env
from bench.suites.common import Scale
from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc

SPANS_PER_REQUEST = 1000
DISTINCT_REQUESTS = 32
IN_FLIGHT = 4
EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def encoded_requests() -> list[bytes]:
    """Batches like a busy studio's: 5 services, 40 operations, 2% errors, traces of 50 spans."""
    requests = []
    for number in range(DISTINCT_REQUESTS):
        by_service: dict[str, list[trace_pb2.Span]] = {}
        for index in range(SPANS_PER_REQUEST):
            service = f"svc-{index % 5}"
            start = 1_700_000_000_000_000_000 + index * 1_000_000
            span = trace_pb2.Span(
                trace_id=(number * 1000 + index // 50).to_bytes(16, "big"),
                span_id=(index + 1).to_bytes(8, "big"),
                name=f"doppelganger.v1.Op{index % 40}/Call",
                kind=trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + (index % 97 + 1) * 100_000,
                attributes=[common_pb2.KeyValue(
                    key="rpc.grpc.status_code",
                    value=common_pb2.AnyValue(int_value=14 if index % 50 == 0 else 0),
                )],
            )  # fmt: skip
            by_service.setdefault(service, []).append(span)
        request = trace_service_pb2.ExportTraceServiceRequest()
        for service, spans in by_service.items():
            resource = resource_pb2.Resource(attributes=[common_pb2.KeyValue(
                key="service.name", value=common_pb2.AnyValue(string_value=service)
            )])  # fmt: skip
            request.resource_spans.add(
                resource=resource, scope_spans=[trace_pb2.ScopeSpans(spans=spans)]
            )
        requests.append(request.SerializeToString())
    return requests


def _push(address: str, total_spans: int) -> None:
    """Client process: sends pre-encoded batches until `total_spans` went out."""

    async def main() -> None:
        payloads = encoded_requests()
        async with grpc.aio.insecure_channel(address) as channel:
            export = channel.unary_unary(EXPORT)  # Bytes in, bytes out: no client-side encoding.
            batches = iter(range(total_spans // SPANS_PER_REQUEST))

            async def sender() -> None:
                for number in batches:
                    await export(payloads[number % len(payloads)], timeout=30)

            await asyncio.gather(*(sender() for _ in range(IN_FLIGHT)))

    asyncio.run(main())


async def _received(address: str) -> int:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        report = await stub.GetHealth(monitor_pb2.GetHealthRequest())
        return int(report.spans_received)


def _send(address: str, spans: int) -> None:
    process = multiprocessing.get_context("spawn").Process(target=_push, args=(address, spans))
    process.start()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"span client exited with {process.exitcode}")


async def run(scale: Scale) -> list[Figure]:
    throughput = Figure(
        "monitor.spans_per_s", "spans/s", target=50_000,
        note=f"pre-encoded batches of {SPANS_PER_REQUEST}, {IN_FLIGHT} in flight",
    )  # fmt: skip
    rss = Figure(
        "monitor.rss_mb_after_spans", "MB", higher_is_better=False, target=200,
        note=f"after {scale.monitor_rss_spans:,} spans",
    )  # fmt: skip
    env = stack_env(telemetry=False)
    with running(env, services=("monitor",)) as stack:
        address = stack.settings.monitor_address
        for _ in range(scale.repetitions):
            before = await _received(address)
            started = time.perf_counter()
            await asyncio.to_thread(_send, address, scale.monitor_spans)
            elapsed = time.perf_counter() - started
            throughput.values.append((await _received(address) - before) / elapsed)
        sent = await _received(address)
        if scale.monitor_rss_spans > sent:
            await asyncio.to_thread(_send, address, scale.monitor_rss_spans - sent)
        rss.values.append(rss_bytes(stack.pid("monitor")) / 2**20)
    throughput.note += f"; client on its own process, {os.cpu_count()} cores shared"
    return [throughput, rss]
