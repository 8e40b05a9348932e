"""Hypothesis strategies built from protobuf descriptors: any request message, valid or hostile.

Strings mix short unicode, values the services accept (so validation passes and deeper code
runs), control characters and huge texts; integers reach their type's extremes; floats include
NaN and infinities; enums take unknown numbers; repeated fields are empty, short or thousands
long; nested messages go as deep as the schema does (capped at `MAX_DEPTH`). `otlp_metrics` and
`otlp_traces` build OTLP exports aimed at what the monitor keeps, with hostile values and names.
"""

from __future__ import annotations

import math
from typing import Any

from google.protobuf.descriptor import Descriptor, EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1 import trace_pb2

MAX_DEPTH = 6
LONG_LIST_DEPTH = 2
HUGE_TEXT_DEPTH = 2
# Below the largest receive limits (scene 8 MiB, monitor 16 MiB); script and cache refuse more than
# 4 MiB with gRPC's own RESOURCE_EXHAUSTED, which the fuzz accepts as a refusal.
MAX_REQUEST_BYTES = 12 * 1024 * 1024

# Values that pass some service's validation, so fuzzing reaches past the first check.
PLAUSIBLE_STRINGS = (
    "",
    "I Love Lucy",
    "seinfeld",
    "The Office",
    "a Mars colony in 2157",
    "procedural",
    "chain",
    "anthropic",
    "openai",
    "ep-0123456789abcdef0123",
    "0123456789abcdef0123456789abcdef",
    "episodes",
    "scene-1",
    "script",
    "GenerateEpisode",
    "req-1",
    " ",
    "\x00",
    "\n\t",
    "\u202e\ufeff",
    "🎬" * 3,
)

INT_RANGES = {
    FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SINT32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SINT64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
    FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def huge_text() -> st.SearchStrategy[str]:
    """Texts of 10,000 to 200,000 characters (one character repeated: cheap to generate)."""
    return st.builds(
        lambda char, count: char * count,
        st.characters(codec="utf-8"),
        st.integers(10_000, 60_000),
    )


def text(small: bool) -> st.SearchStrategy[str]:
    """Short texts; unless `small`, also long and huge ones."""
    short = st.one_of(st.sampled_from(PLAUSIBLE_STRINGS), st.text(max_size=40))
    if small:
        return short
    long_ascii = st.text(alphabet=st.characters(codec="ascii"), min_size=100, max_size=3000)
    return st.one_of(short, long_ascii, huge_text())


def integer(low: int, high: int) -> st.SearchStrategy[int]:
    candidates = {low, high, 0, 1, -1, 19, 20, 21, 60, 300, 900}
    edges = sorted(value for value in candidates if low <= value <= high)
    small = st.integers(max(low, -3), min(high, 30))
    return st.one_of(st.sampled_from(edges), st.integers(low, high), small)


def scalar(field: FieldDescriptor, small: bool = False) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind == FieldDescriptor.TYPE_STRING:
        return text(small)
    if kind == FieldDescriptor.TYPE_BYTES:
        return st.one_of(st.binary(max_size=64), st.binary(min_size=1000, max_size=5000))
    if kind == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if kind == FieldDescriptor.TYPE_DOUBLE:
        return st.one_of(st.floats(), st.floats(-10, 1000), st.sampled_from([0.0, 1.0, 60.0]))
    if kind == FieldDescriptor.TYPE_FLOAT:
        return st.floats(width=32)
    if kind == FieldDescriptor.TYPE_ENUM:
        known = [value.number for value in enum_of(field).values]
        return st.one_of(st.sampled_from(known), integer(-(2**31), 2**31 - 1))
    low, high = INT_RANGES[kind]
    if low < 0:
        return st.one_of(integer(low, high), st.integers(-1000, 1000))
    return integer(low, high)


def repeated(field: FieldDescriptor, depth: int, small: bool) -> st.SearchStrategy[list[Any]]:
    """Empty, short, or one small element repeated into a long list beyond any documented cap.

    Elements of long lists are `small` (short texts, short lists): nested long lists of huge
    texts would need gigabytes.
    """
    short = st.one_of(
        st.just([]), st.lists(single(field, depth, small), max_size=2 if small else 4)
    )
    if small or depth > LONG_LIST_DEPTH:
        return short
    long_list = st.builds(
        lambda item, count: [item] * count, single(field, depth, True), st.integers(100, 2500)
    )
    return st.one_of(short, long_list)


def message(
    descriptor: Descriptor, depth: int = 0, small: bool = False
) -> st.SearchStrategy[Message]:
    """A message of `descriptor`'s type with any subset of its fields set."""
    cls = GetMessageClass(descriptor)
    small = small or depth > HUGE_TEXT_DEPTH
    fields = {
        field.name: st.one_of(st.none(), field_value(field, depth, small))
        for field in descriptor.fields
    }
    built = st.fixed_dictionaries(fields).map(lambda values: build(cls, values))
    if depth == 0:
        return built.filter(lambda request: request.ByteSize() <= MAX_REQUEST_BYTES)
    return built


def message_of(field: Any) -> Descriptor:
    """The message type of a message field (the stubs allow None: a scalar field has none).
    `Any`: descriptors come as the pure-Python or the upb class."""
    assert field.message_type is not None, field.full_name
    return field.message_type


def enum_of(field: Any) -> EnumDescriptor:
    assert field.enum_type is not None, field.full_name
    return field.enum_type


def field_value(field: FieldDescriptor, depth: int, small: bool) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        entry = message_of(field)
        if entry.GetOptions().map_entry:
            key, value = entry.fields_by_name["key"], entry.fields_by_name["value"]
            return st.dictionaries(scalar(key, True), single(value, depth, True), max_size=4)
        if depth >= MAX_DEPTH:
            return st.none()
    if field.is_repeated:
        return repeated(field, depth, small)
    return single(field, depth, small)


def single(field: FieldDescriptor, depth: int, small: bool) -> st.SearchStrategy[Any]:
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        return st.deferred(lambda: message(message_of(field), depth + 1, small))
    return scalar(field, small)


def build(cls: type[Message], values: dict[str, Any]) -> Message:
    """Sets the chosen fields; for a oneof the last one set wins, as on the wire."""
    instance = cls()
    for name, value in values.items():
        if value is None:
            continue
        field = cls.DESCRIPTOR.fields_by_name[name]
        if field.type == FieldDescriptor.TYPE_MESSAGE and message_of(field).GetOptions().map_entry:
            target = getattr(instance, name)
            for key, item in value.items():
                if isinstance(item, Message):
                    target[key].CopyFrom(item)
                else:
                    target[key] = item
        elif field.is_repeated:
            getattr(instance, name).extend(value)
        elif field.type == FieldDescriptor.TYPE_MESSAGE:
            getattr(instance, name).CopyFrom(value)
        else:
            setattr(instance, name, value)
    return instance


def field_names(descriptor: Descriptor, seen: set[str] | None = None) -> set[str]:
    """Every field name reachable from `descriptor` (what an INVALID_ARGUMENT may name)."""
    seen = seen if seen is not None else set()
    if descriptor.full_name in seen:
        return set()
    seen.add(descriptor.full_name)
    names: set[str] = set()
    for field in descriptor.fields:
        names.add(field.name)
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            names |= field_names(message_of(field), seen)
    return names


# OTLP exports aimed at what the monitor keeps ---------------------------------------------------
#
# Descriptor-driven messages almost never name a metric the monitor reads, so they never reach its
# totals. These build exports of exactly those metrics (and spans the statistics read), with the
# values and names an intruder would try: NaN, infinities, 1e19 and other out-of-range numbers,
# negative counters, int64 extremes, and names from empty to far beyond the monitor's limits.

KEPT_METRICS = (
    "otel.sdk.processor.span.processed",
    "gen_ai.client.token.usage",
    "doppel.cache.requests",
    "doppel.llm.cost",
    "process.memory.usage",
    "process.cpu.utilization",
)
LABEL_KEYS = (
    "error.type",
    "gen_ai.token.type",
    "doppel.cache.result",
    "gen_ai.provider.name",
    "gen_ai.request.model",
    "process.memory.type",
)
LABEL_VALUES = ("queue_full", "input", "output", "hit", "miss", "rss", "vms", "anthropic", "m")


# Built once: a strategy made afresh inside every draw is validated afresh, which is most of the
# cost of an example.
HOSTILE_FLOAT = st.one_of(
    st.sampled_from(
        [math.nan, math.inf, -math.inf, 1e19, -1e19, 1e300, -1.0, -0.0, 0.0, 1e15, 2.0**53]
    ),
    st.floats(),
    st.floats(0, 1e6),
)
# Names: plausible, empty, unicode, or long (past the 256 characters kept, up to 3,000).
NAME_TEXT = st.one_of(
    st.sampled_from(LABEL_VALUES),
    st.text(max_size=30),
    st.builds(lambda char, count: char * count, st.characters(codec="utf-8"),
              st.integers(250, 3000)),
)  # fmt: skip
ATTRIBUTES = st.lists(
    st.builds(
        lambda key, value: KeyValue(key=key, value=AnyValue(string_value=value)),
        st.one_of(st.sampled_from(LABEL_KEYS), NAME_TEXT),
        NAME_TEXT,
    ),
    max_size=5,
)
TIMES = st.integers(0, 2**64 - 1)
INT64 = integer(-(2**63), 2**63 - 1)


@st.composite
def _number_point(draw: st.DrawFn) -> metrics_pb2.NumberDataPoint:
    point = metrics_pb2.NumberDataPoint(
        time_unix_nano=draw(TIMES), start_time_unix_nano=draw(TIMES), attributes=draw(ATTRIBUTES)
    )
    if draw(st.booleans()):
        point.as_double = draw(HOSTILE_FLOAT)
    else:
        point.as_int = draw(INT64)
    return point


HISTOGRAM_POINTS = st.lists(
    st.builds(
        metrics_pb2.HistogramDataPoint,
        sum=HOSTILE_FLOAT,
        count=integer(0, 2**64 - 1),
        time_unix_nano=TIMES,
        attributes=ATTRIBUTES,
    ),
    max_size=4,
)
NUMBER_POINTS = st.lists(_number_point(), max_size=4)
KINDS = st.sampled_from(["sum", "gauge", "histogram", "exponential_histogram"])
TEMPORALITIES = st.sampled_from([0, 1, 2, 7])  # Unspecified, delta, cumulative, unknown.
REPEATS = st.one_of(st.just(1), st.integers(5, 25))  # Up to 100 points of one metric.


@st.composite
def kept_metric(draw: st.DrawFn) -> metrics_pb2.Metric:
    """One metric the monitor reads (or a near miss), as a sum, gauge or histogram."""
    name = draw(st.one_of(st.sampled_from(KEPT_METRICS), NAME_TEXT))
    temporality = draw(TEMPORALITIES)
    kind = draw(KINDS)
    if kind == "sum":
        data = metrics_pb2.Sum(
            data_points=draw(NUMBER_POINTS) * draw(REPEATS),
            aggregation_temporality=temporality,  # type: ignore[arg-type]
            is_monotonic=draw(st.booleans()),
        )
        return metrics_pb2.Metric(name=name, sum=data)
    if kind == "gauge":
        return metrics_pb2.Metric(
            name=name, gauge=metrics_pb2.Gauge(data_points=draw(NUMBER_POINTS))
        )
    points = draw(HISTOGRAM_POINTS)
    if kind == "histogram":
        histogram = metrics_pb2.Histogram(
            data_points=points,
            aggregation_temporality=temporality,  # type: ignore[arg-type]
        )
        return metrics_pb2.Metric(name=name, histogram=histogram)
    exponential = metrics_pb2.ExponentialHistogram(
        data_points=[
            metrics_pb2.ExponentialHistogramDataPoint(
                sum=p.sum, count=p.count, time_unix_nano=p.time_unix_nano, attributes=p.attributes
            )
            for p in points
        ],
        aggregation_temporality=temporality,  # type: ignore[arg-type]
    )
    return metrics_pb2.Metric(name=name, exponential_histogram=exponential)


RESOURCE = st.builds(
    lambda service, instance: Resource(attributes=[
        KeyValue(key="service.name", value=AnyValue(string_value=service)),
        KeyValue(key="service.instance.id", value=AnyValue(string_value=instance)),
    ]),
    NAME_TEXT,
    NAME_TEXT,
)  # fmt: skip
METRICS = st.lists(kept_metric(), min_size=1, max_size=4)


@st.composite
def otlp_metrics(draw: st.DrawFn) -> ExportMetricsServiceRequest:
    """An export of metrics the monitor reads, with hostile values and names."""
    request = ExportMetricsServiceRequest()
    for _ in range(draw(st.integers(1, 3))):
        resource_metrics = request.resource_metrics.add(resource=draw(RESOURCE))
        resource_metrics.scope_metrics.add().metrics.extend(draw(METRICS))
    return request


@st.composite
def _span(draw: st.DrawFn) -> trace_pb2.Span:
    start = draw(TIMES)
    name = draw(NAME_TEXT)
    span = trace_pb2.Span(
        trace_id=draw(st.binary(min_size=16, max_size=16)),
        span_id=draw(st.binary(min_size=8, max_size=8)),
        name="chat " + name if draw(st.booleans()) else name,  # LLM calls on CLIENT spans.
        kind=draw(st.integers(0, 7)),  # type: ignore[arg-type]
        start_time_unix_nano=start,
        end_time_unix_nano=draw(st.one_of(st.just(start), TIMES)),
        attributes=draw(ATTRIBUTES),
    )
    span.status.code = draw(st.integers(0, 3))  # type: ignore[assignment]
    return span


SPANS = st.lists(_span(), max_size=5)


@st.composite
def otlp_traces(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """An export of spans with hostile names, kinds, times and LLM attributes."""
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add(resource=draw(RESOURCE))
    resource_spans.scope_spans.add().spans.extend(draw(SPANS))
    return request
