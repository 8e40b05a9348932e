"""Settings of the monitor: what it keeps, when it alerts, where it forwards."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config.setting import COUNT, SECONDS, TEXT, integer, setting
from shared.config.values import NAME_NUMBERS, SILENT_SERVICES, SLOW_OPERATIONS

# Bytes of one decoded OTLP export: 64 KiB to 16 MiB (the gRPC message limit).
EXPORT_BYTES = integer(64 * 1024, 16 * 1024 * 1024)


@dataclass(frozen=True)
class MonitorSettings:
    """Monitor"""

    monitor_max_traces: int = setting(
        "DOPPEL_MONITOR_MAX_TRACES", 2000, COUNT,
        "Traces the monitor keeps for GetTrace (oldest evicted).",
    )  # fmt: skip
    monitor_max_operations: int = setting(
        "DOPPEL_MONITOR_MAX_OPERATIONS", 500, COUNT,
        "Distinct (service, operation) pairs; the excess folds into `_other`.",
    )  # fmt: skip
    monitor_window_seconds: int = setting(
        # Two windows fit in 15 minutes; the rules' buckets are 10 s.
        "DOPPEL_MONITOR_WINDOW_SECONDS", 60, integer(10, 450, step=10),
        "Window of the monitor's alert rules and error score; trends compare it with the previous.",
    )  # fmt: skip
    monitor_eval_interval_seconds: float = setting(
        "DOPPEL_MONITOR_EVAL_INTERVAL_SECONDS", 1.0, SECONDS,
        "How often the monitor evaluates its alert rules.",
    )  # fmt: skip
    monitor_thresholds: tuple[tuple[str, float], ...] = setting(
        "DOPPEL_MONITOR_THRESHOLDS", (), NAME_NUMBERS,
        "Alert thresholds as name=value,... (names of UpdateThresholds; docs/monitor.md).",
    )  # fmt: skip
    monitor_slow_operations: tuple[tuple[str, float, float], ...] = setting(
        "DOPPEL_MONITOR_SLOW_OPERATIONS",
        (
            ("*/GenerateEpisode", 300.0, 600.0),
            ("doppel generate", 300.0, 600.0),
            ("chat *", 60.0, 120.0),
            ("*/WatchAlerts", float("inf"), float("inf")),
        ),
        SLOW_OPERATIONS,
        "Per-operation slow thresholds: glob=warning:critical seconds, or glob=off.",
    )
    monitor_max_pending_spans: int = setting(
        "DOPPEL_MONITOR_MAX_PENDING_SPANS", 200_000, COUNT,
        "Spans accepted but not yet applied; beyond it exports get RESOURCE_EXHAUSTED.",
    )  # fmt: skip
    monitor_forward_endpoint: str = setting(
        "DOPPEL_MONITOR_FORWARD_ENDPOINT", "", TEXT,
        "Upstream OTLP gRPC endpoint (host:port) the monitor forwards everything to; unset: none.",
    )  # fmt: skip
    monitor_forward_queue: int = setting(
        "DOPPEL_MONITOR_FORWARD_QUEUE", 1000, COUNT,
        "Exports waiting to be forwarded; when full, new ones are dropped and counted.",
    )  # fmt: skip
    monitor_silent_services: tuple[tuple[str, float], ...] = setting(
        "DOPPEL_MONITOR_SILENT_SERVICES", (("doppel-cli", float("inf")), ("*", 120.0)),
        SILENT_SERVICES,
        "When a service heard from (over at least that long) and then silent raises "
        "`service_silent`: glob=seconds or glob=off, first match wins.",
    )  # fmt: skip
    monitor_max_export_bytes: int = setting(
        "DOPPEL_MONITOR_MAX_EXPORT_BYTES", 4 * 1024 * 1024, EXPORT_BYTES,
        "Largest OTLP export the monitor parses, decoded (after gzip), on gRPC and HTTP; larger: "
        "RESOURCE_EXHAUSTED / 413.",
    )  # fmt: skip
