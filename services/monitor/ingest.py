"""Admission of OTLP trace exports: a bounded queue between the receivers and the statistics.

Receivers only count and queue (or refuse) an export, and one worker applies them in chunks,
yielding between chunks, so no exporter waits behind another's spans. The queue is bounded by
spans and by serialized bytes (exports wait serialized: a parsed one can be 3 to 85 times larger),
and an empty queue always accepts, so nothing is refused for ever. `settled()` lets a reader see
what was accepted before it asked. Bounds and numbers: docs/monitor.md, Ingestion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

log = logging.getLogger(__name__)

# Exports wait serialized: this caps what waits at 128 MiB resident, whatever is in them.
MAX_PENDING_BYTES = 128 * 1024 * 1024

Payload = ExportTraceServiceRequest | bytes  # An export, parsed or (as the monitor queues) not.
Apply = Callable[[Any], Iterator[int]]  # Takes a queued payload; yields spans applied per chunk.


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(len(scope.spans) for rs in request.resource_spans for scope in rs.scope_spans)


class _Pending:
    """One accepted export and how far its application got."""

    __slots__ = ("chunks", "left", "request", "size")

    def __init__(self, request: Payload, spans: int, size: int) -> None:
        self.request = request
        self.left = spans
        self.size = size
        self.chunks: Iterator[int] | None = None


class IngestQueue:
    """Accepted exports waiting for `apply`; bounded by the spans and the bytes they hold."""

    def __init__(
        self, apply: Apply, max_pending_spans: int, max_pending_bytes: int = MAX_PENDING_BYTES
    ) -> None:
        self._apply = apply
        self.max_pending_spans = max_pending_spans
        self.max_pending_bytes = max_pending_bytes
        self._queue: deque[_Pending] = deque()
        self._work = asyncio.Event()
        self._progress = asyncio.Condition()
        self._accepted = 0  # Exports accepted so far; `_applied` of them have been applied.
        self._applied = 0
        self._task: asyncio.Task[None] | None = None
        self.pending_spans = 0
        self.pending_bytes = 0
        self.refused_spans = 0
        self.refused_exports = 0
        self.refused_for_bytes = 0  # Exports of those refused because of the byte bound.

    def offer(self, request: Payload, spans: int, size: int = -1) -> bool:
        """Queues an export of `spans` spans and `size` bytes (default: its length, or its
        ByteSize() when parsed); False (counted) when it does not fit."""
        if size < 0:
            size = len(request) if isinstance(request, bytes) else request.ByteSize()
        weight = max(spans, 1)
        if self._queue:
            over_bytes = self.pending_bytes + size > self.max_pending_bytes
            if over_bytes or self.pending_spans + weight > self.max_pending_spans:
                self.refused_spans += spans
                self.refused_exports += 1
                self.refused_for_bytes += over_bytes
                return False
        self._queue.append(_Pending(request, weight, size))
        self.pending_spans += weight
        self.pending_bytes += size
        self._accepted += 1
        self._work.set()
        return True

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="monitor-ingest")

    async def close(self) -> None:
        """Stops the worker, then applies everything still queued."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self.drain()

    def drain(self) -> None:
        """Applies everything queued now, synchronously."""
        while self._queue:
            for _ in self._step():
                pass

    def _step(self) -> Iterator[None]:
        """Applies the export at the head chunk by chunk, yielding after each chunk."""
        head = self._queue[0]
        if head.chunks is None:
            head.chunks = self._apply(head.request)
        try:
            for applied in head.chunks:
                head.left -= applied
                self.pending_spans -= applied
                yield
        except Exception:  # A malformed export must not stop ingestion.
            log.exception("monitor: applying an export failed")
        self.pending_spans -= head.left  # Spans it did not apply (beyond the cap, or failed).
        self.pending_bytes -= head.size
        self._queue.popleft()
        self._applied += 1

    async def _run(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                for _ in self._step():
                    await asyncio.sleep(0)  # Let receivers answer between chunks.
                async with self._progress:
                    self._progress.notify_all()

    async def settled(self) -> None:
        """Returns once every export accepted before the call has been applied."""
        target = self._accepted
        if self._applied >= target:
            return
        if self._task is None or self._task.done():
            self.drain()
            return
        async with self._progress:
            await self._progress.wait_for(lambda: self._applied >= target)
