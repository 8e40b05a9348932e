"""The monitor as a collector: any OTLP exporter (a separate process), overload shedding,
forwarding to an upstream (a second monitor, a dead port), OTLP/HTTP, Prometheus `/metrics`
checked by promtool, and `doppel health` (plain, --json, --watch) against the real server."""

from __future__ import annotations

import asyncio
import gzip
import json
import re
import signal
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc
from services.monitor.server import create_monitor_server
from shared.config import Settings
from shared.telemetry import Telemetry
from testkit import eventually, free_port
from tests.integration.monitor_support import (
    CLIENT,
    OUTSIDE,
    Clock,
    Monitor,
    child_env,
    export,
    export_from_another_process,
    kv,
    metrics_export,
    render_calls,
    rss,
    run,
    samples,
    span,
    start_monitor,
)
from tests.unit.otlp_builders import cost, token_usage


async def doppel(port: int, *args: str) -> tuple[int, str, str]:
    env = child_env(DOPPEL_MONITOR_TARGET=f"127.0.0.1:{port}")
    return await run(sys.executable, "-m", "doppel.cli", *args, env=env)


@pytest.fixture
async def monitor(settings: Settings) -> AsyncIterator[Monitor]:
    server, clock = await start_monitor(settings, monitor_thresholds=(("hold_seconds", 0.0),))
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Monitor(server, channel, clock)
    await server.stop(0)


async def test_spans_from_another_process_show_in_operations_and_the_cli(monitor: Monitor) -> None:
    await export_from_another_process(monitor.server.port)
    listed = await monitor.monitor.ListOperations(
        monitor_pb2.ListOperationsRequest(service=OUTSIDE)
    )
    rows = {(o.operation, o.kind): o for o in listed.operations}
    assert (rows[("checkout", "SERVER")].count, rows[("checkout", "SERVER")].errors) == (30, 0)
    assert (rows[("charge card", "CLIENT")].count, rows[("charge card", "CLIENT")].errors) == (
        30,
        10,
    )
    await monitor.tick(0.1)  # An evaluation: 33 % errors on charge card is critical.

    code, stdout, stderr = await doppel(monitor.server.port, "health", "--json")
    assert code == 0, stderr
    payload = json.loads(stdout)
    assert OUTSIDE in payload["health"]["services"]
    assert int(payload["health"]["spansReceived"]) == 60
    assert {(o["service"], o["operation"]) for o in payload["operations"]} == {
        (OUTSIDE, "checkout"), (OUTSIDE, "charge card"),
    }  # fmt: skip
    (alert,) = payload["alerts"]
    assert (alert["rule"], alert["severity"], alert["state"]) == (
        "error_rate", "SEVERITY_CRITICAL", "ALERT_STATE_FIRING",
    )  # fmt: skip
    health = await monitor.health()
    assert payload["health"]["score"] == pytest.approx(health.score)

    code, stdout, stderr = await doppel(monitor.server.port, "health")
    assert code == 0, stderr
    assert re.search(rf"^health score\s+{health.score:.1f} / 100$", stdout, re.M), stdout
    assert re.search(r"\[critical\] firing error_rate outside-app/charge card", stdout), stdout
    assert "checkout" in stdout and "Top operations" in stdout


async def test_doppel_health_watch_follows_alerts_until_ctrl_c(monitor: Monitor) -> None:
    env = child_env(DOPPEL_MONITOR_TARGET=f"127.0.0.1:{monitor.server.port}")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "doppel.cli", "health", "--watch", env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stdout is not None

    async def line_with(text: str) -> str:
        while True:
            line = (await asyncio.wait_for(process.stdout.readline(), 30)).decode()  # type: ignore[union-attr]
            assert line, "doppel health --watch ended early"
            if text in line:
                return line

    try:
        await line_with("watching alerts")
        engine = monitor.server.state.engine
        await eventually(lambda: engine.subscriber_count == 1, what="the CLI's stream subscribed")
        await monitor.send("scene", render_calls(failing=5))
        fired = await line_with("FIRING")
        assert re.search(r"critical\s+error_rate\s+scene/\S+RenderScene", fired), fired
        await monitor.tick(120)  # The window clears.
        resolved = await line_with("RESOLVED")
        assert "error_rate" in resolved
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 15) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def burst(port: int, exports: int, spans_each: int) -> list[grpc.RpcError | None]:
    """`exports` exports sent at the same moment from as many threads (the monitor's loop sees
    them arrive while it is busy applying the first); the error of each, or None."""
    batch = export("burst", [span("op") for _ in range(spans_each)])
    barrier = threading.Barrier(exports)

    def send(_: int) -> grpc.RpcError | None:
        barrier.wait()
        try:
            stub.Export(batch, timeout=30)
            return None
        except grpc.RpcError as error:
            return error

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        with ThreadPoolExecutor(exports) as pool:
            return list(pool.map(send, range(exports)))


async def test_overload_is_shed_with_counted_drops(settings: Settings) -> None:
    server, clock = await start_monitor(
        settings, monitor_max_pending_spans=1000, monitor_thresholds=(("hold_seconds", 0.0),)
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            m = Monitor(server, channel, clock)
            sent = refused = 0
            for _ in range(5):  # Bounded: one burst is nearly always enough.
                results = await asyncio.to_thread(burst, server.port, 10, 5000)
                errors = [r for r in results if r is not None]
                sent, refused = sent + 10, refused + len(errors)
                assert all(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED for e in errors)
                assert all("overloaded" in e.details() for e in errors)
                if errors:
                    trailing = dict(errors[0].trailing_metadata())
                    assert "google.rpc.retryinfo-bin" in trailing
                    break
            assert refused, "bursts of 50,000 spans at once must overflow a 1,000-span budget"
            health = await m.health()
            assert health.spans_dropped == 5000 * refused
            assert health.spans_received == 5000 * (sent - refused)
            assert health.spans_pending == 0
            await m.tick(0.1)
            (loss,) = [a for a in await m.alerts() if a.rule == "telemetry_loss"]
            assert (loss.service, loss.operation, loss.value) == (
                "monitor", "overload", 5000.0 * refused,
            )  # fmt: skip
            metrics = (await asyncio.to_thread(http_get, server.http_port, "/metrics"))[2]
            dropped = f'doppel_monitor_spans_dropped_total{{reason="overload"}} {5000 * refused}'
            assert dropped in metrics.decode()
    finally:
        await server.stop(0)


async def test_forwarding_to_a_second_monitor_unchanged(settings: Settings) -> None:
    upstream = await create_monitor_server(settings, Telemetry("upstream", settings))
    config = settings.with_changes(monitor_forward_endpoint=f"127.0.0.1:{upstream.port}")
    server = await create_monitor_server(config, Telemetry("monitor", config))
    try:
        async with (
            grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel,
            grpc.aio.insecure_channel(f"127.0.0.1:{upstream.port}") as upstream_channel,
        ):
            m = Monitor(server, channel, Clock())
            sent = export("forwarded", render_calls(failing=3))
            sent.resource_spans[0].scope_spans[0].spans[0].attributes.add(
                key="custom.attribute"
            ).value.string_value = "kept"
            await m.traces.Export(sent)
            await m.metrics.Export(metrics_export("forwarded", [rss(700)]))
            upstream_stub = monitor_pb2_grpc.MonitorServiceStub(upstream_channel)
            first = sent.resource_spans[0].scope_spans[0].spans[0]
            trace_id = first.trace_id.hex()
            spans = await wait_for_trace(upstream_stub, trace_id)
            assert spans[0].attributes["custom.attribute"] == "kept"
            assert spans[0].span_id == first.span_id.hex() and spans[0].name == first.name
            assert spans[0].service == "forwarded" and spans[0].error

            async def upstream_has_all() -> monitor_pb2.HealthReport:
                found = await upstream_stub.GetHealth(monitor_pb2.GetHealthRequest())
                assert found.spans_received == 10 and found.resources < 1, found
                return found

            upstream_health = await eventually(upstream_has_all, interval=0.05)
            assert upstream_health.spans_received == 10
            assert upstream_health.resources == pytest.approx(0.6)  # 700 MB reached it too.
            health = await m.health()
            assert (health.spans_forwarded, health.forward_spans_dropped) == (10, 0)
            assert health.forward_spans_failed == 0
    finally:
        await server.stop(0)
        await upstream.stop(0)


async def wait_for_trace(
    stub: monitor_pb2_grpc.MonitorServiceStub, trace_id: str
) -> list[monitor_pb2.SpanSummary]:
    async def found() -> list[monitor_pb2.SpanSummary]:
        try:
            response = await stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            raise AssertionError(f"trace {trace_id} never reached the upstream") from None
        return list(response.spans)

    return await eventually(found, interval=0.05)


async def test_a_dead_upstream_never_slows_ingestion(settings: Settings) -> None:
    config = settings.with_changes(
        monitor_forward_endpoint=f"127.0.0.1:{free_port()}", monitor_forward_queue=2
    )
    server = await create_monitor_server(config, Telemetry("monitor", config))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            m = Monitor(server, channel, Clock())
            for _ in range(10):
                await m.send("svc", [span("op") for _ in range(100)])  # None refused.
            health = await m.health()
            assert health.spans_received == 1000  # All applied, whatever the upstream does.
            forwarder = server.state.forwarder
            assert forwarder is not None and forwarder.queued <= 2
            # At most one export in flight and two queued: the other seven were dropped.
            assert health.forward_spans_dropped >= 700
            assert health.forward_spans_dropped == forwarder.counts["traces"].spans_dropped
            assert health.spans_forwarded == 0
    finally:
        await server.stop(0)


def http_get(port: int, path: str) -> tuple[int, str, bytes]:
    return http_request(port, path)


def http_request(
    port: int, path: str, body: bytes | None = None, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}", data=body, headers=headers or {}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


async def test_otlp_over_http(monitor: Monitor) -> None:
    port = monitor.server.http_port
    protobuf = {"Content-Type": "application/x-protobuf"}
    body = export("http-client", render_calls(failing=0)).SerializeToString()
    status, content_type, answer = await asyncio.to_thread(
        http_request, port, "/v1/traces", body, protobuf
    )
    assert (status, content_type) == (200, "application/x-protobuf")
    assert not trace_service_pb2.ExportTraceServiceResponse.FromString(answer).HasField(
        "partial_success"
    )
    zipped = {**protobuf, "Content-Encoding": "gzip"}
    status, _, _ = await asyncio.to_thread(
        http_request, port, "/v1/traces", gzip.compress(body), zipped
    )
    assert status == 200
    metrics = metrics_export("http-client", [rss(100)]).SerializeToString()
    status, _, _ = await asyncio.to_thread(http_request, port, "/v1/metrics", metrics, protobuf)
    assert status == 200
    health = await monitor.health()
    assert health.spans_received == 20 and "http-client" in health.services
    json_headers = {"Content-Type": "application/json"}
    status, content_type, answer = await asyncio.to_thread(
        http_request, port, "/v1/traces", b"{}", json_headers
    )
    assert (status, content_type, answer) == (200, "application/json", b"{}")
    text_headers = {"Content-Type": "text/plain"}
    status, _, _ = await asyncio.to_thread(http_request, port, "/v1/traces", body, text_headers)
    assert status == 415
    status, _, _ = await asyncio.to_thread(http_request, port, "/v1/traces", b"\xff" * 9, protobuf)
    assert status == 400
    status, _, _ = await asyncio.to_thread(http_get, port, "/v1/traces")
    assert status == 405


async def test_metrics_endpoint_passes_promtool(monitor: Monitor) -> None:
    await monitor.send("scene", render_calls(failing=5))
    await monitor.send("scene", [span('render "quoted"\\name', seconds=90.0)])
    await monitor.metrics.Export(metrics_export("scene", [rss(600)]))
    chat = span("chat claude-x", kind=CLIENT, seconds=2.0)
    chat.attributes.extend([kv("gen_ai.provider.name", "anthropic"),
                            kv("gen_ai.request.model", "claude-x")])  # fmt: skip
    await monitor.send("script", [chat])
    usage = token_usage([("claude-x", "input", 1200), ("claude-x", "output", 300)])
    await monitor.metrics.Export(metrics_export("script", [usage, cost(0.0123)]))
    await monitor.tick(0.1)
    status, content_type, body = await asyncio.to_thread(
        http_get, monitor.server.http_port, "/metrics"
    )
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    process = await asyncio.create_subprocess_exec(
        "promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    output, _ = await process.communicate(body)
    assert process.returncode == 0 and output.decode().strip() == "", output.decode()

    values = samples(body.decode())
    health = await monitor.health()
    assert values["doppel_health_score"] == pytest.approx(health.score)
    assert values['doppel_health_subscore{component="errors"}'] == pytest.approx(health.errors)
    render = 'service="scene",operation="doppelganger.v1.SceneService/RenderScene",kind="SERVER"'
    assert values[f"doppel_operation_calls_total{{{render}}}"] == 10
    assert values[f"doppel_operation_errors_total{{{render}}}"] == 5
    assert values[f'doppel_operation_duration_seconds_bucket{{{render},le="0.25"}}'] == 10
    assert values[f'doppel_operation_duration_seconds_bucket{{{render},le="0.1"}}'] == 0
    assert values[f"doppel_operation_duration_seconds_count{{{render}}}"] == 10
    slow = 'service="scene",operation="render \\"quoted\\"\\\\name",kind="SERVER"'
    assert values[f'doppel_operation_duration_seconds_bucket{{{slow},le="60"}}'] == 0
    assert values[f'doppel_operation_duration_seconds_bucket{{{slow},le="120"}}'] == 1
    assert values['doppel_alerts_firing{severity="critical"}'] == 1
    assert values['doppel_alerts_firing{severity="warning"}'] == 1  # 600 MB RSS.
    assert values['doppel_service_memory_rss_bytes{service="scene"}'] == 600 * 2**20
    assert values["doppel_monitor_spans_received_total"] == 12
    claude = 'provider="anthropic",model="claude-x"'
    assert values[f'doppel_llm_model_calls_total{{{claude},outcome="ok"}}'] == 1
    assert values[f'doppel_llm_model_call_duration_seconds_bucket{{{claude},le="2.5"}}'] == 1
    assert values[f'doppel_llm_model_tokens_total{{{claude},type="output"}}'] == 300
    assert values[f"doppel_llm_model_cost_usd_total{{{claude}}}"] == 0.0123


async def test_the_monitor_refuses_to_start_with_unusable_thresholds() -> None:
    env = child_env(DOPPEL_MONITOR_THRESHOLDS="error_rate_warning=0.5", DOPPEL_MONITOR_PORT="0")
    code, _, stderr = await run(sys.executable, "-m", "services.monitor", env=env)
    assert code == 1
    assert "DOPPEL_MONITOR_THRESHOLDS: error_rate_warning: must be below error_rate_critical" in (
        stderr
    )
