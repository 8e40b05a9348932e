"""Telemetry bootstrap: tracer and meter providers exporting over OTLP gRPC.

One `Telemetry` per service instance, passed explicitly (no global providers), so several services
can run in one process in tests, each with its own `service.name`. Shutdown flushes and is
idempotent.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import psutil
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

from shared import security
from shared.config import Settings
from shared.faults import Faults, GatedMetricExporter, GatedSpanExporter

log = logging.getLogger(__name__)

INSTRUMENTATION_SCOPE = "doppelganger"
SDK_INTERNAL_METRICS = "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED"


def otlp_exporter_arguments(settings: Settings) -> dict[str, Any]:
    """Endpoint and channel security of the OTLP gRPC exporters.

    TLS exactly when every other client uses it (`DOPPEL_TLS_CA` set): the monitor serves OTLP
    on its gRPC port, which is TLS then. The client certificate goes along for mutual TLS.
    """
    credentials = security.channel_credentials(settings)
    return {
        "endpoint": settings.otlp_traces_endpoint,
        "insecure": credentials is None,
        "credentials": credentials,
    }


def final_flush_seconds(settings: Settings) -> float:
    """How long the last exports may take at shutdown: a quarter of the grace period, 1 to 5 s.

    An export retries for up to 10 s (the exporter's default, right while running: a busy
    monitor answers RESOURCE_EXHAUSTED with a retry delay). At shutdown that made a service whose
    monitor was gone take about 20 s to exit (spans, then metrics), past its grace period."""
    return max(1.0, min(5.0, settings.grace_seconds / 4))


class Telemetry:
    """Tracer and meter providers of one service, with OTLP exporters and process metrics."""

    def __init__(
        self,
        service_name: str,
        settings: Settings,
        *,
        span_exporter: SpanExporter | None = None,
        metric_readers: Sequence[MetricReader] | None = None,
    ) -> None:
        self.service_name = service_name
        self.enabled = not settings.telemetry_disabled
        # This instance's fault switches (shared/faults.py); FaultService changes them.
        self.faults = Faults.from_spec(settings.faults)
        self._shutdown_lock = threading.Lock()
        self._is_shut_down = False
        self._span_processor: SpanProcessor | None = None
        self._otlp_exporters: list[OTLPSpanExporter | OTLPMetricExporter] = []
        self._final_flush_seconds = final_flush_seconds(settings)
        if not self.enabled:
            self.tracer_provider: trace.TracerProvider = trace.NoOpTracerProvider()
            self.meter_provider: metrics.MeterProvider = metrics.NoOpMeterProvider()
        else:
            resource = Resource.create(
                {
                    "service.name": service_name,
                    "service.version": settings.service_version,
                    "service.namespace": "doppelganger",
                    # Containers all run as PID 1: the host name tells replicas apart.
                    "service.instance.id": f"{service_name}-{socket.gethostname()}-{os.getpid()}",
                }
            )
            self.meter_provider = self._build_meter_provider(resource, settings, metric_readers)
            self.tracer_provider = self._build_tracer_provider(resource, settings, span_exporter)
        self.tracer = self.tracer_provider.get_tracer(
            INSTRUMENTATION_SCOPE, settings.service_version
        )
        self.meter = self.meter_provider.get_meter(INSTRUMENTATION_SCOPE, settings.service_version)
        self.faults.attach_meter(self.meter)
        if self.enabled:
            register_process_metrics(self.meter)

    def _build_meter_provider(
        self, resource: Resource, settings: Settings, readers: Sequence[MetricReader] | None
    ) -> MeterProvider:
        if readers is None:
            otlp = OTLPMetricExporter(**otlp_exporter_arguments(settings))
            self._otlp_exporters.append(otlp)
            exporter = GatedMetricExporter(otlp, self.faults)
            readers = [
                PeriodicExportingMetricReader(
                    exporter, export_interval_millis=settings.metric_export_interval_ms
                )
            ]
        return MeterProvider(resource=resource, metric_readers=list(readers))

    def _build_tracer_provider(
        self, resource: Resource, settings: Settings, exporter: SpanExporter | None
    ) -> TracerProvider:
        if settings.sdk_internal_metrics:
            # The SDK reads this switch from the environment only, when a processor is built.
            os.environ[SDK_INTERNAL_METRICS] = "true"
        provider = TracerProvider(resource=resource)
        if exporter is None:
            exporter = OTLPSpanExporter(**otlp_exporter_arguments(settings))
            self._otlp_exporters.append(exporter)
        # Passing the meter provider makes the SDK count what it drops
        # (otel.sdk.processor.span.processed{error.type="queue_full"}), so nothing is silent.
        self._span_processor = BatchSpanProcessor(
            GatedSpanExporter(exporter, self.faults),
            max_queue_size=settings.bsp_max_queue_size,
            max_export_batch_size=min(
                settings.bsp_max_export_batch_size, settings.bsp_max_queue_size
            ),
            schedule_delay_millis=settings.bsp_schedule_delay_ms,
            meter_provider=self.meter_provider,
        )
        provider.add_span_processor(self._span_processor)
        return provider

    def force_flush(self, timeout_millis: int = 5000) -> None:
        """Exports what is queued now (spans first, then metrics)."""
        if isinstance(self.tracer_provider, TracerProvider):
            self.tracer_provider.force_flush(timeout_millis)
        if isinstance(self.meter_provider, MeterProvider):
            self.meter_provider.force_flush(timeout_millis)

    def shutdown(self) -> None:
        """Flushes and stops the exporters. Safe to call more than once."""
        with self._shutdown_lock:
            if self._is_shut_down:
                return
            self._is_shut_down = True
        # Past the final-flush budget, the exporters stop: retries in progress end at once.
        deadline = threading.Timer(self._final_flush_seconds, self._stop_exporting)
        deadline.daemon = True
        deadline.start()
        try:
            if isinstance(self.tracer_provider, TracerProvider):
                self.tracer_provider.shutdown()
            if isinstance(self.meter_provider, MeterProvider):
                self.meter_provider.shutdown()
        finally:
            deadline.cancel()

    def _stop_exporting(self) -> None:
        for exporter in self._otlp_exporters:
            exporter.shutdown()


def register_process_metrics(meter: metrics.Meter) -> None:
    """Process RSS and CPU as observable gauges (OTel process semantic conventions)."""
    process = psutil.Process()
    process.cpu_percent(None)  # The first reading primes the counter.

    def memory(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(process.memory_info().rss, {"process.memory.type": "rss"})

    def cpu(_: CallbackOptions) -> Iterable[Observation]:
        yield Observation(process.cpu_percent(None) / 100.0 / (psutil.cpu_count() or 1))

    meter.create_observable_gauge(
        "process.memory.usage", [memory], unit="By", description="Resident set size."
    )
    meter.create_observable_gauge(
        "process.cpu.utilization",
        [cpu],
        unit="1",
        description="CPU time over wall time since the last reading, divided by the core count.",
    )


def trace_id_hex(span: trace.Span | None = None) -> str:
    """The 32-hex-digit trace id of a span (the current one by default), or '' outside a trace."""
    context = (span or trace.get_current_span()).get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else ""
