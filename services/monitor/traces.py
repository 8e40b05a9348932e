"""Recent spans by trace id (for GetTrace) and the services seen recently.

Ingestion stores each span as its serialized OTLP bytes, which costs one C-level call; the
`SpanSummary` is built only when someone asks for the trace, its texts cut to length then (names
and attribute keys to `sanitize.MAX_NAME_CHARS`, attribute values and the status message to
`MAX_TEXT_CHARS`). The store is bounded three ways, the least recently updated trace going first:
at most `max_traces` traces, `max_spans_per_trace` spans per trace (later spans of a full trace
are not kept), and `max_bytes` in all.

`RecentServices` also says which services have gone silent (the `service_silent` alert rule).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from doppelganger.v1 import monitor_pb2
from services.monitor.sanitize import MAX_NAME_CHARS
from services.monitor.stats import KIND_NAMES

DEFAULT_MAX_SPANS_PER_TRACE = 2000
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_SERVICES = 1000
DEFAULT_MAX_WATCHED = 200
MAX_TEXT_CHARS = 4096


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
        name=cut(span.name, MAX_NAME_CHARS),
        kind=KIND_NAMES.get(span.kind, str(span.kind)),
        start_unix_nano=span.start_time_unix_nano,
        end_unix_nano=span.end_time_unix_nano,
        error=stored.error,
        status_message=cut(span.status.message, MAX_TEXT_CHARS),
        attributes={
            cut(kv.key, MAX_NAME_CHARS): cut(value_text(kv.value), MAX_TEXT_CHARS)
            for kv in span.attributes
        },
    )


def cut(text: str, limit: int) -> str:
    """`text`, or its first `limit` characters and an ellipsis that says it was cut."""
    return text if len(text) <= limit else text[:limit] + "…"


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
    """When each service was first and last heard from (spans or metrics).

    At most `max_services`, the least recently heard from forgotten first. Beside them, the
    services watched for silence: a service is watched once it has been heard from over at
    least its silence threshold, so a one-off sender (a CLI run, a test, a probe) is not expected
    to keep talking. Watched services are kept apart (at most `max_watched`; later ones are not
    watched) so that a flood of new names cannot push a silent one out and end its alert.
    """

    def __init__(
        self, max_services: int = DEFAULT_MAX_SERVICES, max_watched: int = DEFAULT_MAX_WATCHED
    ) -> None:
        self._max = max_services
        self._max_watched = max_watched
        self._last_seen: dict[str, float] = {}
        self._first_seen: dict[str, float] = {}
        self._watched: dict[str, float] = {}  # Service -> last heard from.

    def seen(self, service: str, now: float) -> None:
        self._last_seen.pop(service, None)
        self._last_seen[service] = now
        self._first_seen.setdefault(service, now)
        if service in self._watched:
            self._watched[service] = now
        if len(self._last_seen) > self._max:
            oldest = next(iter(self._last_seen))
            del self._last_seen[oldest]
            del self._first_seen[oldest]

    def watched(self, threshold_of: Callable[[str], float]) -> dict[str, float]:
        """Watched services and when each was last heard from, after watching those that
        qualify now (`threshold_of(service)`: its silence threshold, infinite for none)."""
        for service, last in self._last_seen.items():
            if len(self._watched) >= self._max_watched:
                break
            if service not in self._watched:
                threshold = threshold_of(service)
                if math.isfinite(threshold) and last - self._first_seen[service] >= threshold:
                    self._watched[service] = last
        return dict(self._watched)

    def active(self, now: float, window_seconds: float) -> list[str]:
        """Services heard from in the last `window_seconds`, sorted."""
        return sorted(s for s, t in self._last_seen.items() if now - t <= window_seconds)
