"""Alerts through the real monitor server: OTLP in over gRPC, WatchAlerts and GetHealth out.

The monitor runs with a clock the test moves (the acceptance scenario spans minutes), while its
alert evaluator runs on its real timer (every 20 ms here).
"""

from __future__ import annotations

import asyncio
import urllib.request
from collections.abc import AsyncIterator

import grpc
import pytest
from opentelemetry.proto.metrics.v1 import metrics_pb2

from doppelganger.v1 import episode_pb2, monitor_pb2, monitor_pb2_grpc
from shared.config import Settings
from testkit import eventually
from tests.integration.monitor_support import (
    CLIENT,
    NANOS,
    RENDER,
    Monitor,
    kv,
    metrics_export,
    render_calls,
    rss,
    span,
    start_monitor,
)


@pytest.fixture
async def monitor(settings: Settings) -> AsyncIterator[Monitor]:
    server, clock = await start_monitor(settings)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Monitor(server, channel, clock)
    await server.stop(0)


async def next_event(stream: grpc.aio.UnaryStreamCall, timeout: float = 5.0) -> monitor_pb2.Alert:
    event = await asyncio.wait_for(stream.read(), timeout)
    assert event is not grpc.aio.EOF
    return event.alert


async def test_acceptance_half_failing_for_a_minute_then_recovery(monitor: Monitor) -> None:
    """Idle 100; half of RenderScene failing for a minute: a critical error_rate alert, pending
    then firing after the 30 s hold, score <= 70; once the window clears: resolved, >= 95."""
    stream = monitor.monitor.WatchAlerts(monitor_pb2.WatchAlertsRequest())
    assert (await monitor.health()).score == 100.0

    for _ in range(12):  # A minute: 10 calls every 5 s, half failing, beside healthy traffic.
        await monitor.send("scene", render_calls(failing=5))
        await monitor.send("cache", [span("doppelganger.v1.CacheService/Get") for _ in range(20)])
        await monitor.tick(5)

    pending = await next_event(stream)
    assert (pending.rule, pending.service, pending.operation) == ("error_rate", "scene", RENDER)
    assert pending.state == monitor_pb2.ALERT_STATE_PENDING
    assert pending.severity == episode_pb2.SEVERITY_CRITICAL
    firing = await next_event(stream)
    assert (firing.id, firing.state) == (pending.id, monitor_pb2.ALERT_STATE_FIRING)
    assert firing.fired_unix_nano - firing.started_unix_nano >= 30 * 10**9
    assert firing.value == pytest.approx(0.5) and firing.threshold == pytest.approx(0.2)

    health = await monitor.health()
    assert health.score <= 70
    assert (health.errors, health.alerts) == (0.0, 0.5)  # 50 % errors; one critical alert.
    # No traffic in the window before, so no trend: 30 * 0 + 30 * 0.5 + 20 * 1 + 20 * 1.
    assert health.score == pytest.approx(55.0)
    assert [a.id for a in health.firing] == [pending.id]

    for _ in range(14):  # 70 s without errors: the window clears.
        await monitor.send("scene", render_calls(failing=0))
        await monitor.tick(5)
    severities = []
    while (resolved := await next_event(stream)).state != monitor_pb2.ALERT_STATE_RESOLVED:
        assert (resolved.id, resolved.state) == (pending.id, monitor_pb2.ALERT_STATE_FIRING)
        severities.append(resolved.severity)  # Calming down: critical, then warning.
    assert severities in ([], [episode_pb2.SEVERITY_WARNING])
    assert resolved.id == pending.id
    assert resolved.resolved_unix_nano > resolved.fired_unix_nano
    health = await monitor.health()
    assert health.score >= 95 and list(health.firing) == []
    listed = await monitor.monitor.ListAlerts(monitor_pb2.ListAlertsRequest(include_resolved=True))
    assert [(a.id, a.state) for a in listed.alerts] == [
        (pending.id, monitor_pb2.ALERT_STATE_RESOLVED)
    ]
    stream.cancel()


async def test_slow_spans_fire_with_the_right_severities(monitor: Monitor) -> None:
    await monitor.monitor.UpdateThresholds(
        monitor_pb2.UpdateThresholdsRequest(thresholds=monitor_pb2.AlertThresholds(hold_seconds=0))
    )
    await monitor.send("scene", [span("warm", seconds=6.0) for _ in range(10)])
    await monitor.send("scene", [span("hot", seconds=12.0) for _ in range(10)])
    episodes = [span("doppelganger.v1.ScriptService/GenerateEpisode", seconds=200.0)] * 10
    await monitor.send("script", episodes)  # Long streams have their own levels (300 s / 600 s).
    await monitor.tick(1)
    found = {(a.rule, a.operation): a for a in await monitor.alerts()}
    assert set(found) == {("slow_operation", "hot"), ("slow_operation", "warm")}
    assert found[("slow_operation", "hot")].severity == episode_pb2.SEVERITY_CRITICAL
    assert found[("slow_operation", "warm")].severity == episode_pb2.SEVERITY_WARNING
    assert found[("slow_operation", "hot")].state == monitor_pb2.ALERT_STATE_FIRING
    health = await monitor.health()
    assert health.alerts == pytest.approx(1 - 0.5 - 0.25)


async def test_every_severity_through_the_real_server(settings: Settings) -> None:
    server, clock = await start_monitor(
        settings,
        monitor_max_operations=2,
        monitor_thresholds=(("hold_seconds", 0.0),),
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            m = Monitor(server, channel, clock)
            await m.send("script", [span(f"op{i}") for i in range(4)])  # 2 past the cap: info.
            await m.send("script", [span("chat small-model", kind=CLIENT)] * 120)  # 120/min.
            dropped = exporter_dropped(7)  # The script's own span queue overflowed: error.
            await m.metrics.Export(metrics_export("script", [dropped]))
            await m.metrics.Export(metrics_export("cache", [cache_lookups(hits=5, misses=25)]))
            await m.metrics.Export(metrics_export("script", [rss(1200)]))
            await m.tick(1)
            by_rule = {a.rule: a for a in await m.alerts()}
            assert {rule: a.severity for rule, a in by_rule.items()} == {
                "operations_capped": episode_pb2.SEVERITY_INFO,
                "llm_calls": episode_pb2.SEVERITY_WARNING,
                "telemetry_loss": episode_pb2.SEVERITY_ERROR,
                "cache_hit_rate": episode_pb2.SEVERITY_CRITICAL,
                "memory": episode_pb2.SEVERITY_CRITICAL,
            }
            assert by_rule["telemetry_loss"].operation == "exporter_queue_full"
            assert by_rule["llm_calls"].value == pytest.approx(120.0)
            assert by_rule["cache_hit_rate"].value == pytest.approx(5 / 30)
            health = await m.health()
            assert health.exporter_spans_dropped == 7
            assert health.alerts == 0.0  # 0 + 0.25 + 0.35 + 0.5 + 0.5, floored.
            stats = {s.service: s for s in health.service_stats}
            assert stats["script"].llm_calls_per_minute == pytest.approx(120.0)
            assert stats["cache"].cache_lookups == 30
    finally:
        await server.stop(0)


def cache_lookups(hits: int, misses: int) -> metrics_pb2.Metric:
    data = metrics_pb2.Sum(
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA, is_monotonic=True
    )
    for result, count in (("hit", hits), ("miss", misses)):
        point = data.data_points.add(as_int=count, time_unix_nano=NANOS)
        point.attributes.extend(
            [kv("doppel.cache.operation", "get"), kv("doppel.cache.result", result)]
        )
    return metrics_pb2.Metric(name="doppel.cache.requests", sum=data)


def exporter_dropped(spans: int) -> metrics_pb2.Metric:
    data = metrics_pb2.Sum(
        aggregation_temporality=metrics_pb2.AGGREGATION_TEMPORALITY_DELTA, is_monotonic=True
    )
    point = data.data_points.add(as_int=spans, time_unix_nano=NANOS)
    point.attributes.append(kv("error.type", "queue_full"))
    return metrics_pb2.Metric(name="otel.sdk.processor.span.processed", sum=data)


@pytest.mark.parametrize(
    ("thresholds", "field"),
    [
        (monitor_pb2.AlertThresholds(error_rate_warning=0.5), "error_rate_warning"),
        (monitor_pb2.AlertThresholds(cache_hit_rate_critical=2.0), "cache_hit_rate_critical"),
        (monitor_pb2.AlertThresholds(hold_seconds=-1), "hold_seconds"),
        (monitor_pb2.AlertThresholds(min_calls=float("inf")), "min_calls"),
    ],
)
async def test_update_thresholds_rejects_bad_values_naming_the_field(
    monitor: Monitor, thresholds: monitor_pb2.AlertThresholds, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await monitor.monitor.UpdateThresholds(
            monitor_pb2.UpdateThresholdsRequest(thresholds=thresholds)
        )
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"thresholds.{field}" in (error.value.details() or "")
    current = await monitor.monitor.UpdateThresholds(monitor_pb2.UpdateThresholdsRequest())
    assert current.thresholds.error_rate_warning == 0.10  # Nothing changed.


async def test_update_thresholds_changes_what_fires(monitor: Monitor) -> None:
    updated = await monitor.monitor.UpdateThresholds(
        monitor_pb2.UpdateThresholdsRequest(
            thresholds=monitor_pb2.AlertThresholds(
                error_rate_warning=0.01, error_rate_critical=0.5, hold_seconds=0
            )
        )
    )
    assert updated.thresholds.error_rate_warning == 0.01
    assert updated.thresholds.slow_p95_warning_seconds == 5.0  # Unset fields keep their value.
    assert updated.thresholds.HasField("memory_critical_mb")
    await monitor.send("scene", render_calls(failing=1))  # 10 %: warning now, nothing before.
    await monitor.tick(1)
    (alert,) = await monitor.alerts()
    assert (alert.rule, alert.severity) == ("error_rate", episode_pb2.SEVERITY_WARNING)


async def test_thresholds_from_configuration(settings: Settings) -> None:
    server, _ = await start_monitor(
        settings, monitor_thresholds=(("llm_calls_warning_per_minute", 10.0),)
    )
    try:
        assert server.state.thresholds.llm_calls_warning_per_minute == 10.0
    finally:
        await server.stop(0)
    with pytest.raises(ValueError, match="llm_calls_warning_per_minute"):
        await start_monitor(settings, monitor_thresholds=(("llm_calls_warning_per_minute", 900.0),))


async def test_a_stream_that_stops_reading_is_dropped_without_stalling(settings: Settings) -> None:
    server, clock = await start_monitor(settings, monitor_thresholds=(("hold_seconds", 0.0),))
    engine = server.state.engine
    engine.subscriber_queue = 8
    try:
        # Without BDP probing the client's HTTP/2 window stays at 64 KiB, so a stream nobody
        # reads pushes back on the server after a few large events.
        small_window = [("grpc.http2.bdp_probe", 0)]
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}", options=small_window) as slow,
        ):
            m = Monitor(server, channel, clock)
            stalled = monitor_pb2_grpc.MonitorServiceStub(slow).WatchAlerts(
                monitor_pb2.WatchAlertsRequest()
            )
            reader = m.monitor.WatchAlerts(monitor_pb2.WatchAlertsRequest())
            await eventually(lambda: engine.subscriber_count == 2, what="both streams subscribed")
            # Names are cut to 256 characters at ingestion; a long service name and four alerts
            # an evaluation (the healthy reader's queue holds 8) make events of about 1 KB.
            service = "scene-" + "s" * 250
            for i in range(20):  # 80 alerts firing and resolving: 160 events, about 160 KB.
                names = [f"op{i}-{j}-" + "x" * 250 for j in range(4)]
                await m.send(service, [span(name, seconds=30.0) for name in names] * 10)
                await m.tick(1)
                await m.tick(60)
                for state in (monitor_pb2.ALERT_STATE_FIRING, monitor_pb2.ALERT_STATE_RESOLVED):
                    for _ in names:
                        assert (await next_event(reader)).state == state
            assert engine.subscribers_dropped == 1 and engine.subscriber_count == 1
            received = 0
            with pytest.raises(grpc.aio.AioRpcError) as error:
                async for _ in stalled:  # What was already on its way, then the end.
                    received += 1
            assert error.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "fell more than 8 events behind" in (error.value.details() or "")
            assert 0 < received < 160
            reader.cancel()
    finally:
        await server.stop(0)


async def test_a_silent_service_raises_service_silent_until_it_comes_back(
    settings: Settings,
) -> None:
    """A service heard from over at least the threshold (30 s here) that then goes quiet for
    longer: pending, firing after the hold (30 s), an error in the score and in /metrics; when
    it sends again, resolved. The CLI (excluded) and a one-off sender never raise it."""
    server, clock = await start_monitor(
        settings, monitor_silent_services=(("doppel-cli", float("inf")), ("*", 30.0))
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            m = Monitor(server, channel, clock)
            stream = m.monitor.WatchAlerts(monitor_pb2.WatchAlertsRequest(only_new=True))
            for _ in range(4):  # Heard from at 0, 10, 20 and 30 s: watched from then on.
                await m.metrics.Export(metrics_export("scene", [rss(100)]))
                await m.send("doppel-cli", [span("doppel generate", seconds=1.0)])
                await m.tick(10)
            await m.send("probe", [span("once")])  # Heard from once: never watched.
            await m.tick(20)  # scene silent for 30 s: not yet over the threshold.
            assert await m.alerts() == []
            await m.tick(5)
            pending = await next_event(stream)
            assert (pending.rule, pending.service, pending.state) == (
                "service_silent", "scene", monitor_pb2.ALERT_STATE_PENDING,
            )  # fmt: skip
            assert pending.severity == episode_pb2.SEVERITY_ERROR
            assert pending.threshold == 30.0 and pending.value > 30.0
            assert "scene: no spans or metrics for" in pending.message
            await m.tick(30)  # The hold: firing.
            firing = await next_event(stream)
            assert (firing.id, firing.state) == (pending.id, monitor_pb2.ALERT_STATE_FIRING)
            await m.tick(120)  # The CLI and the probe have been quiet for minutes too.
            assert [(a.rule, a.service) for a in await m.alerts()] == [("service_silent", "scene")]
            health = await m.health()
            assert health.alerts == pytest.approx(0.65)  # One error: 1 - 0.35.
            assert health.score == pytest.approx(100 - 30 * 0.35)
            status, _, body = await asyncio.to_thread(http_get, server.http_port, "/metrics")
            assert status == 200
            text = body.decode()
            assert 'doppel_service_last_seen_timestamp_seconds{service="scene"}' in text
            assert 'last_seen_timestamp_seconds{service="doppel-cli"}' not in text
            assert 'last_seen_timestamp_seconds{service="probe"}' not in text
            assert 'doppel_alert_active{rule="service_silent",service="scene"' in text

            await m.metrics.Export(metrics_export("scene", [rss(100)]))  # Back.
            await m.tick(0.1)
            resolved = await next_event(stream)
            assert (resolved.id, resolved.state) == (pending.id, monitor_pb2.ALERT_STATE_RESOLVED)
            health = await m.health()
            assert list(health.firing) == [] and health.score == 100.0
            stream.cancel()
    finally:
        await server.stop(0)


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.status, response.headers["Content-Type"], response.read()
