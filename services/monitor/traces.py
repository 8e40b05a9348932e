"""Recent spans by trace id (for GetTrace) and the services seen recently.

Ingestion stores each span as its serialized OTLP bytes, which costs one C-level call; the
`SpanSummary` is built only when someone asks for the trace. The store is bounded three ways, the
least recently updated trace going first: at most `max_traces` traces, `max_spans_per_trace`
spans per trace (later spans of a full trace are not kept), and `max_bytes` in all.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from doppelganger.v1 import monitor_pb2
from services.monitor.stats import KIND_NAMES

DEFAULT_MAX_SPANS_PER_TRACE = 2000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SERVICES = 1000


class StoredSpan(NamedTuple):
    service: str
    error: bool
    data: bytes  # Serialized opentelemetry.proto.trace.v1.Span.


class _Trace:
    __slots__ = ("size", "spans")

    def __init__(self) -> None:
        self.spans: list[StoredSpan] = []
        self.size = 0


class TraceStore:
    """The spans of the most recently active traces."""

    def __init__(
        self,
        max_traces: int,
        max_spans_per_trace: int = DEFAULT_MAX_SPANS_PER_TRACE,
        max_bytes: int = DEFAULT_MAX_BYTES,
    ) -> None:
        self._max_traces = max_traces
        self._max_spans = max_spans_per_trace
        self._max_bytes = max_bytes
        self._traces: OrderedDict[bytes, _Trace] = OrderedDict()
        self._bytes = 0
        self.spans_not_kept = 0

    def add(self, trace_id: bytes, span: StoredSpan) -> None:
        stored = self._traces.get(trace_id)
        if stored is None:
            stored = self._traces[trace_id] = _Trace()
            if len(self._traces) > self._max_traces:
                self._evict_oldest()
        else:
            self._traces.move_to_end(trace_id)
        if len(stored.spans) >= self._max_spans:
            self.spans_not_kept += 1
            return
        stored.spans.append(span)
        stored.size += len(span.data)
        self._bytes += len(span.data)
        while self._bytes > self._max_bytes and len(self._traces) > 1:
            self._evict_oldest()

    def _evict_oldest(self) -> None:
        _, trace = self._traces.popitem(last=False)
        self._bytes -= trace.size

    def latest(self, count: int) -> list[bytes]:
        """Ids of the `count` most recently updated traces, newest first."""
        found: list[bytes] = []
        for trace_id in reversed(self._traces):
            if len(found) == count:
                break
            found.append(trace_id)
        return found

    def get(self, trace_id: bytes) -> list[StoredSpan] | None:
        stored = self._traces.get(trace_id)
        return None if stored is None else list(stored.spans)

    def __len__(self) -> int:
        return len(self._traces)

    @property
    def total_bytes(self) -> int:
        return self._bytes


def summarize(stored: StoredSpan) -> monitor_pb2.SpanSummary:
    """The SpanSummary of a stored span; attribute values become strings."""
    span = Span.FromString(stored.data)
    return monitor_pb2.SpanSummary(
        trace_id=span.trace_id.hex(),
        span_id=span.span_id.hex(),
        parent_span_id=span.parent_span_id.hex(),
        service=stored.service,
        name=span.name,
        kind=KIND_NAMES.get(span.kind, str(span.kind)),
        start_unix_nano=span.start_time_unix_nano,
        end_unix_nano=span.end_time_unix_nano,
        error=stored.error,
        status_message=span.status.message,
        attributes={kv.key: value_text(kv.value) for kv in span.attributes},
    )


def value_text(value: AnyValue) -> str:
    """An attribute value as text: strings as is, arrays as [a, b], bytes as hex."""
    which = value.WhichOneof("value")
    if which == "string_value":
        return value.string_value
    if which == "bool_value":
        return "true" if value.bool_value else "false"
    if which == "int_value":
        return str(value.int_value)
    if which == "double_value":
        return repr(value.double_value)
    if which == "bytes_value":
        return value.bytes_value.hex()
    if which == "array_value":
        return "[" + ", ".join(value_text(v) for v in value.array_value.values) + "]"
    if which == "kvlist_value":
        items = (f"{kv.key}={value_text(kv.value)}" for kv in value.kvlist_value.values)
        return "{" + ", ".join(items) + "}"
    return ""


class RecentServices:
    """When each service was last heard from (spans or metrics); at most `max_services`."""

    def __init__(self, max_services: int = DEFAULT_MAX_SERVICES) -> None:
        self._max = max_services
        self._last_seen: dict[str, float] = {}

    def seen(self, service: str, now: float) -> None:
        self._last_seen.pop(service, None)
        self._last_seen[service] = now
        if len(self._last_seen) > self._max:
            del self._last_seen[next(iter(self._last_seen))]

    def active(self, now: float, window_seconds: float) -> list[str]:
        """Services heard from in the last `window_seconds`, sorted."""
        return sorted(s for s, t in self._last_seen.items() if now - t <= window_seconds)
