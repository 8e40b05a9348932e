"""No API key and no bearer token in logs, spans, metrics or error messages.

A real episode is written by the `anthropic` writer against the loopback provider, through the
real script, scene and cache services (bearer tokens on, the script service sending its token to
the scene service), every service exporting spans and metrics over OTLP to a real in-process
monitor. Captured: every log record of every logger at DEBUG, the monitor's traces (GetTrace, with
span attributes), its alerts, operations, health, Prometheus /metrics and /api pages, and the
details of refused calls. The test key and the token appear nowhere.
"""

from __future__ import annotations

import asyncio
import logging
import urllib.request

import grpc
import pytest
from google.protobuf import json_format

from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc, script_pb2
from services.monitor.server import create_monitor_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from testkit import eventually, in_process_stack
from testkit.llm_server import LLMServer
from tests.fakes.llm_support import TEST_KEY, llm_settings

BEARER_TOKEN = "doppel-bearer-9d41c7e2b6a8"
SECRETS = (TEST_KEY, BEARER_TOKEN)


async def wait_for_trace(
    stub: monitor_pb2_grpc.MonitorServiceStub, trace_id: str, services: set[str]
) -> monitor_pb2.GetTraceResponse:
    async def complete() -> monitor_pb2.GetTraceResponse | None:
        try:
            found = await stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id))
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.NOT_FOUND
            return None
        return found if services <= {span.service for span in found.spans} else None

    return await eventually(
        complete, timeout=15, interval=0.1, what=f"trace {trace_id} from {services}"
    )


def http_text(port: int, path: str) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return str(response.read().decode())


@pytest.mark.timeout(120)
async def test_episode_leaves_no_key_or_token_in_logs_spans_or_metrics(
    settings: Settings, redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    monitor = await create_monitor_server(settings, Telemetry("monitor", settings))
    with LLMServer() as provider:
        config = llm_settings(
            provider,
            script_port=0, scene_port=0, cache_port=0, monitor_port=0, monitor_http_port=0,
            redis_url=redis_server.url, telemetry_disabled=False, llm_capture_content=True,
            otlp_endpoint=f"http://127.0.0.1:{monitor.port}", bsp_schedule_delay_ms=50,
            metric_export_interval_ms=200, auth_tokens=f"service:studio:{BEARER_TOKEN}",
            auth_token=BEARER_TOKEN,
            refinement_rounds=0,
        )  # fmt: skip
        refusals: list[str] = []
        try:
            async with (
                in_process_stack(config) as stack,
                grpc.aio.insecure_channel(f"127.0.0.1:{monitor.port}") as monitor_channel,
            ):
                script, scene, cache = stack.script, stack.scene, stack.cache
                stub = stack.script_stub
                request = script_pb2.GenerateEpisodeRequest(
                    show="I Love Lucy", setting="a Mars colony in 2157", scene_count=3,
                    seed=11, writer="anthropic",
                )  # fmt: skip
                for metadata in ((), (("authorization", "Bearer wrong-" + BEARER_TOKEN),)):
                    with pytest.raises(grpc.aio.AioRpcError) as refused:
                        await stub.ListShows(script_pb2.ListShowsRequest(), metadata=metadata)
                    assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
                    refusals.append(str(refused.value.details()))
                auth = (("authorization", f"Bearer {BEARER_TOKEN}"),)
                events = [event async for event in stub.GenerateEpisode(request, metadata=auth)]
                episode = events[-1].episode
                assert episode.fountain and not episode.render_error  # scene accepted the token
                assert episode.usage and provider.received  # the key really went to the provider
                monitor_stub = monitor_pb2_grpc.MonitorServiceStub(monitor_channel)
                trace = await wait_for_trace(
                    monitor_stub, events[-1].trace_id, {"script", "scene", "cache"}
                )
                for server in (script, scene, cache):
                    # Off the loop: the exporters' blocking calls go to the monitor, which
                    # answers on this loop (flushing here would wait out their 10 s timeout).
                    await asyncio.to_thread(server.telemetry.force_flush)
                await monitor.state.queue.settled()  # Every export it accepted is applied.
                captured = [
                    json_format.MessageToJson(trace),
                    json_format.MessageToJson(
                        await monitor_stub.GetHealth(monitor_pb2.GetHealthRequest())
                    ),
                    json_format.MessageToJson(
                        await monitor_stub.ListOperations(monitor_pb2.ListOperationsRequest())
                    ),
                    json_format.MessageToJson(
                        await monitor_stub.ListAlerts(
                            monitor_pb2.ListAlertsRequest(include_resolved=True)
                        )
                    ),
                ]
                for path in ("/metrics", "/api/health", "/api/operations", "/api/traces?limit=50"):
                    captured.append(await asyncio.to_thread(http_text, monitor.http_port, path))
        finally:
            await monitor.stop(0)
    logs = "\n".join(
        f"{record.getMessage()} {record.exc_text or ''} {record.args!r}"
        for record in caplog.records
    )
    everything = "\n".join([logs, *captured, *refusals])
    assert "claude-loopback" in captured[0]  # the LLM calls' spans reached the monitor
    assert "rpc" in captured[4] or "doppel" in captured[4]  # and so did metrics
    for secret in SECRETS:
        assert secret not in everything, f"{secret[:8]}... leaked"
