"""The byte bounds of the monitor's ingestion queue and forward queue, and empty exports (without
a worker running, so what is pending stays pending)."""

from __future__ import annotations

import os
from collections.abc import Iterator

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1 import trace_pb2

from services.monitor import forward, ingest
from services.monitor.forward import Forwarder
from services.monitor.ingest import IngestQueue, count_spans
from services.monitor.state import MonitorState
from shared.config import Settings
from tests.unit.otlp_builders import Clock, export, span


def spans(count: int, attribute_bytes: int = 0) -> list[trace_pb2.Span]:
    made = [span(os.urandom(16), "op") for _ in range(count)]
    if attribute_bytes:
        for one in made:
            one.attributes.add(key="payload").value.string_value = "p" * attribute_bytes
    return made


def applied_into(applied: list[int]) -> ingest.Apply:
    def apply(request: ExportTraceServiceRequest) -> Iterator[int]:
        applied.append(count_spans(request))
        yield count_spans(request)

    return apply


def test_the_default_bounds() -> None:
    assert ingest.MAX_PENDING_BYTES == 128 * 1024 * 1024
    assert forward.MAX_QUEUE_BYTES == 64 * 1024 * 1024
    state = MonitorState(Settings(), clock=Clock())
    assert state.queue.max_pending_bytes == ingest.MAX_PENDING_BYTES
    assert state.queue.max_pending_spans == Settings().monitor_max_pending_spans


async def test_the_ingest_queue_refuses_by_bytes_but_never_an_export_into_empty() -> None:
    applied: list[int] = []
    fat = [export("svc", spans(2, attribute_bytes=10_000)) for _ in range(3)]
    size = fat[0].ByteSize()
    assert all(one.ByteSize() == size for one in fat)
    queue = IngestQueue(applied_into(applied), max_pending_spans=1000, max_pending_bytes=2 * size)
    assert queue.offer(fat[0], 2) and queue.offer(fat[1], 2)  # Exactly full, by bytes.
    assert queue.pending_bytes == 2 * size and queue.pending_spans == 4  # Far from 1000 spans.
    assert not queue.offer(fat[2], 2)
    assert (queue.refused_exports, queue.refused_spans, queue.refused_for_bytes) == (1, 2, 1)
    queue.drain()
    assert (queue.pending_bytes, queue.pending_spans, applied) == (0, 0, [2, 2])
    huge = export("svc", spans(1, attribute_bytes=3 * size))
    assert queue.offer(huge, 1)  # Beyond the bound, but the queue is empty.
    assert not queue.offer(fat[2], 2)
    queue.drain()
    assert queue.offer(fat[2], 2) and queue.pending_bytes == size
    queue.drain()
    assert queue.pending_bytes == 0 and queue.refused_for_bytes == 2


async def test_the_size_defaults_to_byte_size_and_a_failed_export_gives_its_bytes_back() -> None:
    def fail(request: ExportTraceServiceRequest) -> Iterator[int]:
        raise ValueError("bad export")
        yield 0

    queue = IngestQueue(fail, max_pending_spans=1000)
    request = export("svc", spans(3))
    assert queue.offer(request, 3)
    assert queue.pending_bytes == request.ByteSize() > 0
    queue.drain()
    assert (queue.pending_bytes, queue.pending_spans) == (0, 0)


async def test_an_export_without_spans_counts_as_one() -> None:
    applied: list[int] = []
    queue = IngestQueue(applied_into(applied), max_pending_spans=3)
    empty = export("svc", [])
    assert count_spans(empty) == 0
    assert all(queue.offer(empty, 0) for _ in range(3))
    assert queue.pending_spans == 3
    assert not queue.offer(empty, 0)  # Before, empty exports always passed.
    assert (queue.refused_exports, queue.refused_spans) == (1, 0)
    queue.drain()
    assert (queue.pending_spans, queue.pending_bytes, applied) == (0, 0, [0, 0, 0])


async def test_the_forward_queue_drops_by_bytes_and_counts_what_it_dropped() -> None:
    forwarder = Forwarder("127.0.0.1:1", max_queue=1000)  # Not started: nothing is sent.
    assert forwarder.max_bytes == forward.MAX_QUEUE_BYTES
    exports = [export("svc", spans(10, attribute_bytes=1000)) for _ in range(5)]
    size = exports[0].ByteSize()
    forwarder.max_bytes = 3 * size
    for request in exports:
        forwarder.offer("traces", request, 10, size)
    metrics = ExportMetricsServiceRequest()
    metrics.resource_metrics.add().resource.attributes.add(key="k").value.string_value = "v"
    forwarder.offer("metrics", metrics)  # Its size from ByteSize(): over the bound too.
    traces = forwarder.counts["traces"]
    assert (forwarder.queued, forwarder.queued_bytes) == (3, 3 * size)
    assert (traces.exports_dropped, traces.spans_dropped, traces.bytes_dropped) == (2, 20, 2 * size)
    dropped = forwarder.counts["metrics"]
    assert (dropped.exports_dropped, dropped.bytes_dropped) == (1, metrics.ByteSize())
    await forwarder.close(0)


async def test_the_forward_queue_takes_one_large_export_when_empty() -> None:
    forwarder = Forwarder("127.0.0.1:1", max_queue=1000, max_bytes=1000)
    large = export("svc", spans(1, attribute_bytes=5000))
    forwarder.offer("traces", large, 1)
    assert (forwarder.queued, forwarder.queued_bytes) == (1, large.ByteSize())
    forwarder.offer("traces", export("svc", spans(1)), 1)
    assert forwarder.counts["traces"].exports_dropped == 1
    await forwarder.close(0)


async def test_the_export_count_bound_still_holds() -> None:
    forwarder = Forwarder("127.0.0.1:1", max_queue=2)
    for _ in range(4):
        forwarder.offer("traces", export("svc", spans(1)), 1)
    counts = forwarder.counts["traces"]
    assert (forwarder.queued, counts.exports_dropped, counts.spans_dropped) == (2, 2, 2)
    assert forwarder.queued_bytes == 2 * export("svc", spans(1)).ByteSize()
    await forwarder.close(0)
