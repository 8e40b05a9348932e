"""Forwarding to an upstream OTLP gRPC endpoint (Jaeger, an OpenTelemetry Collector, a monitor).

Every accepted export is queued as it arrived (serialized, as received: a parsed export can
hold many times its size) in a queue bounded twice: by exports (DOPPEL_MONITOR_FORWARD_QUEUE) and
by bytes (`MAX_QUEUE_BYTES` of serialized exports, queued or being sent); a background task sends
them in order. Retryable failures (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, ABORTED) are
retried with exponential backoff up to `MAX_ATTEMPTS`; then, or on any other error, the export
is given up and counted as failed. When either bound is reached a new export is not queued and
counted as dropped (an export is always queued when nothing else is, so none is dropped for its
size alone). Ingestion only ever does a non-blocking `put_nowait`, so a dead or slow upstream
never slows it down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

import grpc
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from shared.server import CHANNEL_OPTIONS

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 5
FIRST_BACKOFF_SECONDS = 0.2
MAX_BACKOFF_SECONDS = 5.0
CALL_TIMEOUT_SECONDS = 5.0
RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.ABORTED,
    }
)
SIGNALS = ("traces", "metrics")
# Exports are held serialized: 64 MiB is ~220,000 small spans (~300 B each), 64 MiB resident.
MAX_QUEUE_BYTES = 64 * 1024 * 1024
EXPORT_PATHS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}
PARSE_RESPONSE = {
    "traces": trace_service_pb2.ExportTraceServiceResponse.FromString,
    "metrics": metrics_service_pb2.ExportMetricsServiceResponse.FromString,
}


@dataclass
class ForwardCounts:
    """Per signal: exports and items (spans, or metric data points' exports) by outcome."""

    exports_sent: int = 0
    exports_failed: int = 0
    exports_dropped: int = 0
    spans_sent: int = 0
    spans_failed: int = 0
    spans_dropped: int = 0
    bytes_dropped: int = 0


_Request = (
    trace_service_pb2.ExportTraceServiceRequest
    | metrics_service_pb2.ExportMetricsServiceRequest
    | bytes
)


def _serialized(request: _Request) -> bytes:
    return request if isinstance(request, bytes) else request.SerializeToString()


def _target(endpoint: str) -> str:
    """host:port of an endpoint given as host:port or http://host:port."""
    return endpoint.removeprefix("http://").removeprefix("grpc://").rstrip("/")


class Forwarder:
    """Sends what the monitor receives on to `endpoint`."""

    def __init__(
        self,
        endpoint: str,
        max_queue: int,
        *,
        max_bytes: int = MAX_QUEUE_BYTES,
        backoff: float = FIRST_BACKOFF_SECONDS,
    ):
        self.endpoint = endpoint
        self._queue: asyncio.Queue[tuple[str, bytes, int, int]] = asyncio.Queue(max_queue)
        self.max_bytes = max_bytes
        self.queued_bytes = 0  # Serialized size of the exports queued or being sent.
        self._first_backoff = backoff
        self._channel: grpc.aio.Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self.counts = {signal: ForwardCounts() for signal in SIGNALS}

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def offer(self, signal: str, request: _Request, spans: int = 0, size: int = -1) -> None:
        """Queues one export, serialized (`spans` is 0 for metrics; `size` defaults to its
        serialized size); counts it as dropped when the queue is full by exports or by bytes."""
        if size < 0:
            size = len(request) if isinstance(request, bytes) else request.ByteSize()
        try:
            if self.queued_bytes and self.queued_bytes + size > self.max_bytes:
                raise asyncio.QueueFull
            self._queue.put_nowait((signal, _serialized(request), spans, size))
        except asyncio.QueueFull:
            counts = self.counts[signal]
            counts.exports_dropped += 1
            counts.spans_dropped += spans
            counts.bytes_dropped += size
            return
        self.queued_bytes += size

    def start(self) -> None:
        self._channel = grpc.aio.insecure_channel(_target(self.endpoint), options=CHANNEL_OPTIONS)
        self._task = asyncio.create_task(self._run(), name="monitor-forward")

    async def close(self, timeout: float) -> None:
        """Gives the queue up to `timeout` seconds to empty, then stops."""
        deadline = time.monotonic() + timeout
        while self._queue.qsize() and time.monotonic() < deadline and self._task is not None:
            await asyncio.sleep(0.05)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._channel is not None:
            await self._channel.close()
            self._channel = None

    async def _run(self) -> None:
        assert self._channel is not None
        exports = {
            signal: self._channel.unary_unary(
                path, response_deserializer=PARSE_RESPONSE[signal]
            )  # Bytes in: the export goes on as it was queued.
            for signal, path in EXPORT_PATHS.items()
        }
        while True:
            signal, request, spans, size = await self._queue.get()
            try:
                rejected = await self._send(exports[signal], request)
            finally:
                self.queued_bytes -= size
            del request
            counts = self.counts[signal]
            if rejected is None:
                counts.exports_failed += 1
                counts.spans_failed += spans
            else:
                counts.exports_sent += 1
                counts.spans_sent += spans - rejected
                counts.spans_failed += rejected

    async def _send(self, export: grpc.aio.UnaryUnaryMultiCallable, request: bytes) -> int | None:
        """Sends with retries; the spans the upstream rejected, or None when it failed."""
        backoff = self._first_backoff
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                response = await export(request, timeout=CALL_TIMEOUT_SECONDS)
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRYABLE or attempt == MAX_ATTEMPTS:
                    log.warning("forward to %s failed: %s", self.endpoint, error.code().name)
                    return None
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            partial = getattr(response.partial_success, "rejected_spans", 0)
            return int(partial)
        return None
