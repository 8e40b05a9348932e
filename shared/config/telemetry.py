"""Settings of logs, spans and metrics (the OpenTelemetry SDK's own variable names)."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config.setting import COUNT, FLAG, TEXT, setting


@dataclass(frozen=True)
class TelemetrySettings:
    """Logs and telemetry"""

    log_level: str = setting("DOPPEL_LOG_LEVEL", "INFO", TEXT, "Python logging level.")
    telemetry_disabled: bool = setting(
        "OTEL_SDK_DISABLED", False, FLAG, "true: no spans or metrics."
    )
    otlp_endpoint: str = setting(
        "OTEL_EXPORTER_OTLP_ENDPOINT", "", TEXT,
        "OTLP gRPC endpoint (default: the monitor, http://host:monitor port).",
    )  # fmt: skip
    bsp_max_queue_size: int = setting(
        "OTEL_BSP_MAX_QUEUE_SIZE", 65536, COUNT,
        "Span queue per process (the SDK's 2048 drops bursts).",
    )  # fmt: skip
    bsp_max_export_batch_size: int = setting(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 2048, COUNT, "Spans per OTLP export."
    )
    bsp_schedule_delay_ms: int = setting(
        "OTEL_BSP_SCHEDULE_DELAY", 1000, COUNT, "Milliseconds between span exports."
    )
    sdk_internal_metrics: bool = setting(
        "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED", True, FLAG,
        "SDK self-metrics, among them the count of dropped spans.",
    )  # fmt: skip
    metric_export_interval_ms: int = setting(
        "OTEL_METRIC_EXPORT_INTERVAL", 10000, COUNT, "Milliseconds between metric exports."
    )
