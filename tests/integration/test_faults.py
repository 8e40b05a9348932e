"""Fault switches injected into the real running stack (cache on a real Redis, scene, script, and
the monitor when alerts are checked), each during a run of episodes: every episode completes or
fails with a clear status, and the fault is counted where it acted.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from doppelganger.v1 import (
    faults_pb2,
    faults_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from services.monitor.server import create_monitor_server
from shared.config import Settings
from shared.faults import Faults, FaultSpecError, parse_spec, set_faults
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from testkit import eventually
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
from tests.fakes.llm_support import llm_settings
from tests.integration.fault_studio import Studio, request, retry_after_ms, studio

EPISODES = 20
Stage = script_pb2.Stage


@dataclass
class Outcome:
    episode: Any | None
    code: grpc.StatusCode
    details: str


async def run_one(
    stub: script_pb2_grpc.ScriptServiceStub, message: script_pb2.GenerateEpisodeRequest
) -> Outcome:
    """One episode, retried after the server's `retry-after-ms` while it is overloaded."""
    for _ in range(100):
        try:
            events = [event async for event in stub.GenerateEpisode(message, timeout=60)]
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
                await asyncio.sleep(retry_after_ms(exc) / 1000)
                continue
            return Outcome(None, exc.code(), exc.details() or "")
        assert events[-1].stage == Stage.STAGE_DONE
        return Outcome(events[-1].episode, grpc.StatusCode.OK, "")
    raise AssertionError("still overloaded after 100 tries")


async def run_episodes(studio: Studio, count: int = EPISODES, **fields: Any) -> list[Outcome]:
    """`count` new episodes at once (fresh seeds: the session's Redis outlives the test)."""
    first = random.randrange(1, 10**9)
    return await asyncio.gather(
        *(run_one(studio.stub, request(seed=first + n, **fields)) for n in range(count))
    )


def assert_clear(outcomes: list[Outcome]) -> None:
    """Completed, or failed with a status that says why (never INTERNAL/UNKNOWN, never empty)."""
    for outcome in outcomes:
        if outcome.code == grpc.StatusCode.OK:
            assert outcome.episode is not None and len(outcome.episode.scenes) == 2
        else:
            assert outcome.code not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
            assert outcome.details


# -- the switches themselves -------------------------------------------------------------------


def test_fault_spec_parsing_names_the_bad_switch() -> None:
    assert parse_spec("llm_error_rate=0.3, cache_unavailable") == {
        "llm_error_rate": 0.3,
        "cache_unavailable": 1.0,
    }
    with pytest.raises(FaultSpecError, match="llm_error_rate must be between 0 and 1"):
        parse_spec("llm_error_rate=3")
    with pytest.raises(FaultSpecError, match="unknown fault 'disk_full'"):
        parse_spec("disk_full=1")
    with pytest.raises(ValueError, match="DOPPEL_FAULTS"):
        Settings.from_env({"DOPPEL_FAULTS": "render_delay_ms=-1"})


def test_a_rate_switch_acts_at_its_rate() -> None:
    faults = Faults({"llm_error_rate": 0.3}, seed=5)
    hits = sum(faults.roll("llm_error_rate") for _ in range(2000))
    assert 450 < hits < 750
    assert not any(Faults(seed=5).roll("llm_error_rate") for _ in range(100))


async def test_with_faults_enabled_every_server_has_the_fault_service(
    settings: Settings, redis_server: RedisServer
) -> None:
    enabled = settings.with_changes(faults_enabled=True, faults="render_delay_ms=5")
    async with studio(enabled, redis_server) as s:
        for server in (s.script, s.scene, s.cache):
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = faults_pb2_grpc.FaultServiceStub(channel)
                state = await stub.GetFaults(faults_pb2.GetFaultsRequest())
                assert {sw.name: sw.value for sw in state.switches}["render_delay_ms"] == 5
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.SetFaults(
                        faults_pb2.SetFaultsRequest(
                            switches=[faults_pb2.FaultSwitch(name="llm_error_rate", value=2)]
                        )
                    )
                assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert "llm_error_rate" in (raised.value.details() or "")
                state = await set_faults(channel, {"cache_unavailable": 1}, reset=True)
                values = {sw.name: sw.value for sw in state.switches}
                assert values["cache_unavailable"] == 1 and values["render_delay_ms"] == 0


# -- degradation, 20 episodes per fault ------------------------------------------------------


async def test_cache_unavailable_episodes_still_complete_and_an_alert_fires(
    settings: Settings, redis_server: RedisServer
) -> None:
    monitor_settings = settings.with_changes(
        monitor_port=0, monitor_http_port=0, monitor_eval_interval_seconds=0.05,
        monitor_thresholds=(("hold_seconds", 0.0), ("min_calls", 5.0)),
    )  # fmt: skip
    monitor = await create_monitor_server(monitor_settings, Telemetry("monitor", monitor_settings))
    try:
        async with studio(settings, redis_server, monitor_port=monitor.port) as s:
            await s.set_faults(s.cache, cache_unavailable=1)
            outcomes = await run_episodes(s)
            assert [(o.code, o.details) for o in outcomes if o.code != grpc.StatusCode.OK] == []
            assert_clear(outcomes)
            assert s.cache.telemetry.faults.injected()["cache_unavailable"] >= EPISODES * 3
            for server in (s.script, s.scene, s.cache):
                await asyncio.to_thread(server.telemetry.force_flush)
            alerts = await _wait_for_alert(monitor.port, "cache")
        assert any(a.rule == "error_rate" for a in alerts), alerts
    finally:
        await monitor.stop(0)


async def test_cache_service_gone_episodes_complete_and_the_callers_side_alerts(
    settings: Settings, redis_server: RedisServer
) -> None:
    """The cache process itself is gone: the script's CLIENT spans to it fail, and alert."""
    monitor_settings = settings.with_changes(
        monitor_port=0, monitor_http_port=0, monitor_eval_interval_seconds=0.05,
        monitor_thresholds=(("hold_seconds", 0.0), ("min_calls", 5.0)),
    )  # fmt: skip
    monitor = await create_monitor_server(monitor_settings, Telemetry("monitor", monitor_settings))
    try:
        async with studio(settings, redis_server, monitor_port=monitor.port) as s:
            await s.cache.stop(0)
            outcomes = await run_episodes(s, count=10)
            assert [o.code for o in outcomes] == [grpc.StatusCode.OK] * 10
            await asyncio.to_thread(s.script.telemetry.force_flush)
            alerts = await _wait_for_alert(monitor.port, "script")
        cache_calls = [a for a in alerts if a.operation.startswith("doppelganger.v1.CacheService/")]
        assert any(a.rule == "error_rate" for a in cache_calls), alerts
    finally:
        await monitor.stop(0)


async def _wait_for_alert(port: int, service: str) -> list[monitor_pb2.Alert]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)

        async def found() -> list[monitor_pb2.Alert]:
            response = await stub.ListAlerts(monitor_pb2.ListAlertsRequest())
            return [a for a in response.alerts if a.service == service]

        return await eventually(found, interval=0.05, what=f"an alert on {service}")


async def test_render_slowdown_returns_episodes_with_a_clear_render_error(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with studio(settings.with_changes(rpc_timeout_seconds=0.3), redis_server) as s:
        await s.set_faults(s.scene, render_delay_ms=1000)
        outcomes = await run_episodes(s)
    assert_clear(outcomes)
    for outcome in outcomes:
        assert outcome.code == grpc.StatusCode.OK and outcome.episode is not None
        assert "DEADLINE_EXCEEDED" in outcome.episode.render_error
        assert not outcome.episode.fountain


async def test_scene_service_down_returns_episodes_with_a_render_error(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with studio(settings, redis_server) as s:
        await s.scene.stop(0)
        outcomes = await run_episodes(s, count=5)
    for outcome in outcomes:
        assert outcome.code == grpc.StatusCode.OK and outcome.episode is not None
        # Refused (UNAVAILABLE) or, while the channel reconnects, out of time (DEADLINE_EXCEEDED).
        assert outcome.episode.render_error.startswith("scene service: ")
        assert not outcome.episode.fountain


async def test_monitor_unreachable_generation_is_unaffected_and_drops_are_counted(
    settings: Settings, redis_server: RedisServer
) -> None:
    monitor_settings = settings.with_changes(monitor_port=0, monitor_http_port=0)
    monitor = await create_monitor_server(monitor_settings, Telemetry("monitor", monitor_settings))
    try:
        async with studio(settings, redis_server, monitor_port=monitor.port) as s:
            for server in (s.script, s.scene, s.cache):
                await s.set_faults(server, monitor_unreachable=1)
            outcomes = await run_episodes(s)
            for server in (s.script, s.scene, s.cache):
                await asyncio.to_thread(server.telemetry.force_flush)
            dropped = s.script.telemetry.faults.injected()["monitor_unreachable"]
    finally:
        await monitor.stop(0)
    assert all(o.code == grpc.StatusCode.OK for o in outcomes)
    assert dropped >= 1


@pytest.mark.parametrize(
    ("switches", "writer"),
    [
        ({"llm_error_rate": 0.3}, "chain"),
        ({"llm_latency_ms": 20}, "anthropic"),
        ({"llm_429_storm": 1}, "chain"),
        ({"llm_429_storm": 1}, "anthropic"),
    ],
    ids=["error-rate", "latency", "429-storm-chain", "429-storm-alone"],
)
async def test_llm_faults_during_twenty_episodes(
    settings: Settings, redis_server: RedisServer, switches: dict[str, float], writer: str
) -> None:
    with LLMServer() as provider:
        config = llm_settings(
            provider, **_ports(settings), llm_max_attempts=2, refinement_rounds=0,
            writer_fallback=("anthropic", "procedural"),
            llm_requests_per_minute=100_000, llm_tokens_per_minute=10**9,
        )  # fmt: skip
        async with studio(config, redis_server) as s:
            await s.set_faults(s.script, **switches)
            outcomes = await run_episodes(s, writer=writer)
            injected = s.script.telemetry.faults.injected()
    assert_clear(outcomes)
    name = next(iter(switches))
    assert injected[name] > 0
    ok = [o for o in outcomes if o.code == grpc.StatusCode.OK]
    if name == "llm_429_storm" and writer == "anthropic":
        # No fallback: every episode fails, saying the provider kept answering 429.
        assert not ok and all(o.code == grpc.StatusCode.UNAVAILABLE for o in outcomes)
        assert all("429" in o.details for o in outcomes)
        assert not provider.calls(ANTHROPIC_PATH)  # The storm was ours: no tokens were spent.
    elif name == "llm_429_storm":
        assert len(ok) == EPISODES  # The chain fell back to the procedural writer.
        assert all(o.episode and (o.episode.writer == "chain" or o.episode.attempts) for o in ok)
    else:
        # Retries, then the fallback, absorb a 30% error rate; latency only slows.
        assert len(ok) == EPISODES


def _ports(settings: Settings) -> dict[str, int]:
    return {"script_port": 0, "scene_port": 0, "cache_port": 0}
