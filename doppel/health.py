"""`doppel health`: the monitor's view in a terminal (what the status page shows, as text).

- plain: score and sub-scores, spans received/dropped/forwarded, firing and pending alerts, per
  service figures, and the busiest operations of the last minute;
- `--json`: {"health": HealthReport, "alerts": [...], "operations": [...]} (proto3 JSON names);
- `--watch`: one line per alert event from WatchAlerts (the active alerts first), until Ctrl-C;
  it reconnects when the monitor goes away or drops the stream.
"""

from __future__ import annotations

import signal
import threading
import time
from typing import Any

import grpc
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from doppelganger.v1 import episode_pb2, monitor_pb2, monitor_pb2_grpc
from shared import security
from shared.config import Settings

RECONNECT_SECONDS = 2.0
STATES = {
    monitor_pb2.ALERT_STATE_PENDING: "PENDING",
    monitor_pb2.ALERT_STATE_FIRING: "FIRING",
    monitor_pb2.ALERT_STATE_RESOLVED: "RESOLVED",
}


def severity_name(alert: monitor_pb2.Alert) -> str:
    return episode_pb2.Severity.Name(alert.severity).removeprefix("SEVERITY_").lower()


def fetch(
    settings: Settings,
) -> tuple[monitor_pb2.HealthReport, list[monitor_pb2.Alert], list[Any]]:
    """The health report, the active alerts and the last minute's operations."""
    with security.blocking_channel(settings.monitor_address, settings) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        report = stub.GetHealth(monitor_pb2.GetHealthRequest(), timeout=10)
        alerts = stub.ListAlerts(monitor_pb2.ListAlertsRequest(), timeout=10).alerts
        operations = stub.ListOperations(monitor_pb2.ListOperationsRequest(), timeout=10)
    return report, list(alerts), list(operations.operations)


def as_json(
    report: monitor_pb2.HealthReport,
    alerts: list[monitor_pb2.Alert],
    operations: list[monitor_pb2.OperationStats],
) -> dict[str, Any]:
    def plain(message: Any) -> dict[str, Any]:
        return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)

    return {
        "health": plain(report),
        "alerts": [plain(a) for a in alerts],
        "operations": [plain(o) for o in operations],
    }


def print_report(
    out: Console,
    report: monitor_pb2.HealthReport,
    alerts: list[monitor_pb2.Alert],
    operations: list[monitor_pb2.OperationStats] | None = None,
    top: int = 10,
) -> None:
    out.print(f"health score  {report.score:.1f} / 100")
    out.print(
        f"  errors {report.errors:.2f}  alerts {report.alerts:.2f}  "
        f"resources {report.resources:.2f}  trends {report.trends:.2f}"
    )
    out.print(
        f"  spans received {report.spans_received}, dropped {report.spans_dropped}, "
        f"dropped by exporters {report.exporter_spans_dropped}"
        + (f", forwarded {report.spans_forwarded}" if report.spans_forwarded else "")
    )
    if not alerts:
        out.print("  no alerts")
    for alert in alerts:
        where = "/".join(part for part in (alert.service, alert.operation) if part)
        out.print(
            f"  [{severity_name(alert)}] {STATES.get(alert.state, '?').lower()} "
            f"{alert.rule} {where}: {alert.message}",
            markup=False,
        )
    if report.service_stats:
        services = Table("service", "RSS MB", "CPU", "LLM/min", "tokens/min", "cache hit")
        for s in report.service_stats:
            services.add_row(
                s.service, f"{s.memory_rss_bytes / 2**20:.0f}", f"{s.cpu_utilization:.0%}",
                f"{s.llm_calls_per_minute:.1f}", f"{s.tokens_per_minute:.0f}",
                f"{s.cache_hit_rate:.0%}" if s.cache_lookups else "-",
            )  # fmt: skip
        out.print(services)
    if operations:
        busiest = sorted(operations, key=lambda o: -o.count)[:top]
        table = Table("service", "operation", "kind", "calls", "errors", "p50 ms", "p95 ms",
                      title="Top operations, last minute")  # fmt: skip
        for o in busiest:
            table.add_row(
                o.service, o.operation, o.kind, str(o.count), f"{o.error_rate:.1%}",
                f"{o.p50_seconds * 1000:.1f}", f"{o.p95_seconds * 1000:.1f}",
            )  # fmt: skip
        out.print(table)


def event_line(event: monitor_pb2.AlertEvent) -> str:
    alert = event.alert
    stamp = alert.resolved_unix_nano or alert.fired_unix_nano or alert.started_unix_nano
    when = time.strftime("%H:%M:%S", time.localtime(stamp / 1e9)) if stamp else "--:--:--"
    state = STATES.get(alert.state, "?") + ("*" if event.initial else "")  # *: at the start.
    where = "/".join(part for part in (alert.service, alert.operation) if part) or "-"
    return f"{when}  {state:9} {severity_name(alert):8} {alert.rule:17} {where}: {alert.message}"


def watch(settings: Settings, out: Console) -> int:
    """Prints alert events until Ctrl-C (or SIGTERM); returns the exit code."""
    address = settings.monitor_address
    stop = threading.Event()
    current: list[grpc.Future] = []

    def interrupt(signum: int, frame: object) -> None:
        stop.set()
        for call in current:
            call.cancel()

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGINT, signal.SIGTERM)}
    out.print(f"watching alerts on {address} (Ctrl-C stops)")
    _flush(out)
    try:
        with security.blocking_channel(address, settings) as channel:
            stub = monitor_pb2_grpc.MonitorServiceStub(channel)
            while not stop.is_set():
                _follow(stub, out, stop, current)
                if not stop.is_set():
                    stop.wait(RECONNECT_SECONDS)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0


def _follow(
    stub: monitor_pb2_grpc.MonitorServiceStub,
    out: Console,
    stop: threading.Event,
    current: list[grpc.Future],
) -> None:
    stream = stub.WatchAlerts(monitor_pb2.WatchAlertsRequest())
    current[:] = [stream]  # type: ignore[list-item]
    try:
        for event in stream:
            out.print(event_line(event), markup=False)
            _flush(out)
    except grpc.RpcError as error:
        if stop.is_set() or error.code() == grpc.StatusCode.CANCELLED:  # type: ignore[attr-defined]
            return
        out.print(f"stream ended ({error.code().name}); reconnecting")  # type: ignore[attr-defined]
        _flush(out)
    finally:
        current.clear()


def _flush(out: Console) -> None:
    out.file.flush()
