"""What the monitor keeps from OTLP metrics; every other metric is ignored.

Resource gauges (RSS, CPU) per service instance; running totals of dropped spans, tokens, LLM
cost and cache lookups; and the same increases per 10-second slot for rates over the alert
window. Cumulative points count by their change (a drop means a restart), and a series older
than the monitor does not flood its first window. Every point is checked first
(services/monitor/sanitize.py), and series are capped (`max_series`, keyed by a digest), so an
exporter cannot decide how much the monitor holds. Details: docs/monitor.md, Ingestion.
"""

from __future__ import annotations

import hashlib
import time
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    AGGREGATION_TEMPORALITY_DELTA,
    Metric,
    NumberDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from services.monitor.llm import MODEL, PROVIDER, LLMStats
from services.monitor.rates import WindowedCounters
from services.monitor.sanitize import (
    EXPORT_CAP,
    MAX_NAME_CHARS,
    MAX_POINTS_PER_EXPORT,
    NAME_TOO_LONG,
    Sanitizer,
    clamp_total,
    value_problem,
)
from services.monitor.stats import OTHER, SLOT_SECONDS, CappedValues
from services.monitor.traces import value_text

MEMORY = "process.memory.usage"
CPU = "process.cpu.utilization"
SPANS_PROCESSED = "otel.sdk.processor.span.processed"
TOKEN_USAGE = "gen_ai.client.token.usage"
CACHE_REQUESTS = "doppel.cache.requests"
LLM_COST = "doppel.llm.cost"

UNKNOWN_SERVICE = "unknown_service"
DEFAULT_STALE_SECONDS = 300.0
DEFAULT_MAX_SERIES = 10_000
MAX_TOTAL_LABELS = 200  # (metric, label) pairs with running totals; later labels fold into _other.


@dataclass(frozen=True)
class _Counted:
    """A counter kept as totals by the value of one attribute (`label`)."""

    label: str
    allowed: frozenset[str] | None  # None: every value, including none ("").
    require_label: bool = False
    by_service: bool = True  # Totals by label and windows by (service, label).
    by_model: bool = False  # Into `MetricsStore.llm` by provider and model.


COUNTED = {
    SPANS_PROCESSED: _Counted("error.type", None, require_label=True),
    TOKEN_USAGE: _Counted("gen_ai.token.type", None, by_model=True),
    CACHE_REQUESTS: _Counted("doppel.cache.result", frozenset({"hit", "miss"})),
    LLM_COST: _Counted("", None, by_service=False, by_model=True),
}

SeriesKey = tuple[str, str, str, bytes]  # (metric, service, instance, digest of the attributes)


def resource_identity(resource: Resource, names: Sanitizer) -> tuple[str, str]:
    """(service.name, service.instance.id) of a resource, cut to length; unnamed services are
    unknown_service."""
    service = instance = ""
    for kv in resource.attributes:
        if kv.key == "service.name":
            service = kv.value.string_value
        elif kv.key == "service.instance.id":
            instance = kv.value.string_value
    return names.name(service, "service") or UNKNOWN_SERVICE, names.name(instance, "instance")


def _number(point: NumberDataPoint) -> float:
    return float(point.as_int) if point.WhichOneof("value") == "as_int" else point.as_double


def _attribute(attributes: Iterable[KeyValue], key: str) -> str:
    for kv in attributes:
        if kv.key == key:
            return value_text(kv.value)
    return ""


def _digest(attributes: tuple[tuple[str, str], ...]) -> bytes:
    return hashlib.blake2b(repr(attributes).encode(), digest_size=16).digest()


def _long_label(named: dict[str, str], label: str, counted: _Counted) -> str | None:
    """`name_too_long` when a value this point would be kept under is over the name limit."""
    kept = [label]
    if counted.by_model:
        kept += [named.get(PROVIDER, ""), named.get(MODEL, "")]
    return NAME_TOO_LONG if any(len(text) > MAX_NAME_CHARS for text in kept) else None


class MetricsStore:
    """Latest resource gauges per service instance and running totals of a few counters."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        stale_seconds: float = DEFAULT_STALE_SECONDS,
        max_series: int = DEFAULT_MAX_SERIES,
        llm: LLMStats | None = None,
        sanitizer: Sanitizer | None = None,
    ) -> None:
        self._clock = clock
        self.sanitizer = Sanitizer() if sanitizer is None else sanitizer
        self._points_left = MAX_POINTS_PER_EXPORT
        self._stale = stale_seconds
        self._max_series = max_series
        self._gauges: dict[str, dict[tuple[str, str], tuple[float, float]]] = {MEMORY: {}, CPU: {}}
        self._series: OrderedDict[SeriesKey, float] = OrderedDict()
        self._totals: dict[tuple[str, str], float] = {}
        self._total_labels = CappedValues(MAX_TOTAL_LABELS)  # Labels come from the wire.
        self.windowed = WindowedCounters(max_series)
        self.llm = LLMStats() if llm is None else llm
        self._started_unix_nano = time.time_ns()

    def ingest(self, request: ExportMetricsServiceRequest) -> list[str]:
        """Takes in one export; returns the services it came from."""
        now = self._clock()
        services = []
        self._points_left = MAX_POINTS_PER_EXPORT
        for resource_metrics in request.resource_metrics:
            service, instance = resource_identity(resource_metrics.resource, self.sanitizer)
            services.append(service)
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    self._ingest_metric(metric, service, instance, now)
        return services

    def epoch(self, now: float | None = None) -> int:
        return int((self._clock() if now is None else now) // SLOT_SECONDS)

    def _ingest_metric(self, metric: Metric, service: str, instance: str, now: float) -> None:
        gauges = self._gauges.get(metric.name)
        if gauges is not None:
            value = self._latest_value(metric)
            if value is not None:
                gauges.pop((service, instance), None)
                gauges[(service, instance)] = (value, now)
                if len(gauges) > self._max_series:
                    del gauges[next(iter(gauges))]
            return
        counted = COUNTED.get(metric.name)
        if counted is not None:
            self._count(metric, counted, service, instance, self.epoch(now))

    def _budgeted(self, points: Sequence[Any]) -> Sequence[Any]:
        """The points of a kept metric within what is left of the per-export cap; the rest are
        rejected (`export_cap`)."""
        allowed = min(len(points), self._points_left)
        self._points_left -= allowed
        if allowed == len(points):
            return points
        self.sanitizer.reject(EXPORT_CAP, len(points) - allowed)
        return points[:allowed]

    def _latest_value(self, metric: Metric) -> float | None:
        """The value of the newest usable RSS-or-unlabelled point of a gauge or sum."""
        data = metric.WhichOneof("data")
        if data not in ("gauge", "sum"):
            return None
        points = metric.gauge.data_points if data == "gauge" else metric.sum.data_points
        best: tuple[int, float] | None = None
        for point in self._budgeted(points):
            if _attribute(point.attributes, "process.memory.type") not in ("", "rss"):
                continue
            value = _number(point)
            problem = value_problem(value, counter=False)
            if problem is not None:
                self.sanitizer.reject(problem)
            elif best is None or point.time_unix_nano >= best[0]:
                best = (point.time_unix_nano, value)
        return None if best is None else best[1]

    def _count(
        self, metric: Metric, counted: _Counted, service: str, instance: str, epoch: int
    ) -> None:
        data = metric.WhichOneof("data")
        container: Any
        if data == "sum":
            container = metric.sum
        elif data == "histogram":
            container = metric.histogram
        elif data == "exponential_histogram":
            container = metric.exponential_histogram
        else:
            return
        delta = container.aggregation_temporality == AGGREGATION_TEMPORALITY_DELTA
        for point in self._budgeted(container.data_points):
            attributes = tuple(sorted((kv.key, value_text(kv.value)) for kv in point.attributes))
            named = dict(attributes)
            label = named.get(counted.label, "")
            if (counted.require_label and not label) or (
                counted.allowed is not None and label not in counted.allowed
            ):
                continue
            value = _number(point) if data == "sum" else point.sum
            problem = value_problem(value, counter=True) or _long_label(named, label, counted)
            if problem is not None:
                self.sanitizer.reject(problem)
                continue
            key = (metric.name, service, instance, _digest(attributes))
            increase, windowed = self._increase(key, value, delta, point.start_time_unix_nano)
            if counted.by_service:
                total_key = self._total_labels((metric.name, label), (metric.name, OTHER))
                total = self._totals.get(total_key, 0.0) + increase
                self._totals[total_key] = clamp_total(total)
                if windowed:
                    self.windowed.add((metric.name, service, total_key[1]), epoch, windowed)
            if counted.by_model:
                self._by_model(metric.name, named, label, increase)

    def _increase(
        self, key: SeriesKey, value: float, delta: bool, start_unix_nano: int
    ) -> tuple[float, float]:
        """(increase for the totals, increase for the windows) of one point."""
        if delta:
            return value, value
        previous = self._series.get(key)
        self._series[key] = value
        self._series.move_to_end(key)
        if len(self._series) > self._max_series:
            self._series.popitem(last=False)
        if previous is None:
            return value, value if start_unix_nano >= self._started_unix_nano else 0.0
        if value < previous:
            return value, value
        return value - previous, value - previous

    def _by_model(self, name: str, attributes: dict[str, str], label: str, increase: float) -> None:
        provider, model = attributes.get(PROVIDER, ""), attributes.get(MODEL, "")
        if name == TOKEN_USAGE:
            self.llm.add_tokens(provider, model, label, increase)
        elif name == LLM_COST:
            self.llm.add_cost(provider, model, increase)

    def window_total(
        self, metric: str, first_epoch: int, last_epoch: int
    ) -> dict[str, dict[str, float]]:
        """Per service, the increase of a counted metric in the epochs, by label value."""
        found: dict[str, dict[str, float]] = {}
        for key, value in self.windowed.totals(first_epoch, last_epoch).items():
            name, service, label = typing.cast(tuple[str, str, str], key)
            if name == metric:
                found.setdefault(service, {})[label] = value
        return found

    def _fresh(self, name: str) -> dict[str, float]:
        now = self._clock()
        by_service: dict[str, float] = {}
        for (service, _), (value, seen) in self._gauges[name].items():
            if now - seen <= self._stale:
                by_service[service] = max(value, by_service.get(service, value))
        return by_service

    def memory_by_service(self) -> dict[str, float]:
        """RSS bytes per service (highest over its live instances)."""
        return self._fresh(MEMORY)

    def cpu_by_service(self) -> dict[str, float]:
        """CPU utilization (0-1 of all cores) per service (highest over its live instances)."""
        return self._fresh(CPU)

    def total(self, metric: str) -> dict[str, float]:
        """Running totals of a counted metric by label value."""
        return {label: v for (name, label), v in self._totals.items() if name == metric}

    @property
    def exporter_spans_dropped(self) -> int:
        return int(clamp_total(sum(self.total(SPANS_PROCESSED).values())))

    def token_usage(self) -> dict[str, float]:
        """Tokens by `gen_ai.token.type` (input, output)."""
        return self.total(TOKEN_USAGE)

    def cache_lookups(self) -> tuple[int, int]:
        """(hits, misses)."""
        counts = self.total(CACHE_REQUESTS)
        return int(counts.get("hit", 0)), int(counts.get("miss", 0))
