"""OTLP exports and metrics for the monitor's tests, built by hand: spans, resource attributes,
gauges, counters and the GenAI metrics, on a clock the test moves."""

from __future__ import annotations

import os

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

START = 10_000.0
NANOS = 1_700_000_000_000_000_000


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def span(
    trace_id: bytes,
    name: str,
    *,
    kind: trace_pb2.Span.SpanKind.ValueType = trace_pb2.Span.SPAN_KIND_SERVER,
    millis: int = 10,
    grpc_code: int | None = None,
    parent: bytes = b"",
) -> trace_pb2.Span:
    result = trace_pb2.Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        parent_span_id=parent,
        name=name,
        kind=kind,
        start_time_unix_nano=NANOS,
        end_time_unix_nano=NANOS + millis * 1_000_000,
    )
    if grpc_code is not None:
        result.attributes.append(kv("rpc.grpc.status_code", grpc_code))
    return result


def export(service: str, spans: list[trace_pb2.Span]) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    resource_spans.resource.attributes.append(kv("service.name", service))
    resource_spans.scope_spans.add().spans.extend(spans)
    return request


def gauge_metric(
    name: str, value: float, attributes: list[KeyValue] | None = None
) -> metrics_pb2.Metric:
    point = metrics_pb2.NumberDataPoint(as_double=value, time_unix_nano=NANOS)
    point.attributes.extend(attributes or [])
    return metrics_pb2.Metric(name=name, gauge=metrics_pb2.Gauge(data_points=[point]))


def counter_metric(
    name: str, points: list[tuple[float, list[KeyValue]]], *, delta: bool = False
) -> metrics_pb2.Metric:
    temporality = (
        metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        if delta
        else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    data = metrics_pb2.Sum(aggregation_temporality=temporality, is_monotonic=True)
    for value, attributes in points:
        data.data_points.add(as_int=int(value), time_unix_nano=NANOS).attributes.extend(attributes)
    return metrics_pb2.Metric(name=name, sum=data)


def metrics_export(
    service: str, metrics: list[metrics_pb2.Metric], instance: str = "i-1"
) -> ExportMetricsServiceRequest:
    request = ExportMetricsServiceRequest()
    resource_metrics = request.resource_metrics.add()
    resource_metrics.resource.attributes.extend(
        [kv("service.name", service), kv("service.instance.id", instance)]
    )
    resource_metrics.scope_metrics.add().metrics.extend(metrics)
    return request


def token_usage(
    points: list[tuple[str, str, float]], *, delta: bool = False, provider: str = "anthropic"
) -> metrics_pb2.Metric:
    """`gen_ai.client.token.usage` with one point per (model, token type, sum)."""
    histogram = metrics_pb2.Histogram(
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        if delta
        else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    for model, token_type, total in points:
        point = histogram.data_points.add(sum=total, count=1, time_unix_nano=NANOS)
        point.attributes.extend([kv("gen_ai.provider.name", provider)])
        point.attributes.append(kv("gen_ai.request.model", model))
        if token_type:
            point.attributes.append(kv("gen_ai.token.type", token_type))
    return metrics_pb2.Metric(name="gen_ai.client.token.usage", histogram=histogram)


def cost(usd: float, model: str = "claude-x", *, delta: bool = False) -> metrics_pb2.Metric:
    data = metrics_pb2.Sum(
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA
        if delta
        else metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
        is_monotonic=True,
    )
    point = data.data_points.add(as_double=usd, time_unix_nano=NANOS)
    point.attributes.extend(
        [kv("gen_ai.provider.name", "anthropic"), kv("gen_ai.request.model", model)]
    )
    return metrics_pb2.Metric(name="doppel.llm.cost", unit="USD", sum=data)
