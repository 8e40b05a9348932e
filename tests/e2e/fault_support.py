"""Helpers for the end-to-end fault tests: the stack as real processes (doppel.stack.Stack), fault
switches set over FaultService on the running processes, episodes run concurrently through the
real ScriptService, and what the monitor says, all over gRPC.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

from bench.stacks import stack_env
from doppel.stack import Stack, address_of
from doppelganger.v1 import (
    episode_pb2,
    faults_pb2,
    faults_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from shared.config import Settings
from shared.faults import BY_NAME
from testkit import eventually
from testkit.llm_server import LLMServer
from tests.fakes.llm_support import TEST_KEY

EPISODES = 20
SCENES = 2
POLLS = 400  # Tries of a bounded wait for telemetry to arrive (POLL_SECONDS apart).
POLL_SECONDS = 0.1
STARTUP_TIMEOUT = 90.0  # Per service, until it answers SERVING.
Stage = script_pb2.Stage

# Telemetry exported quickly, and alert rules that fire on the first window with 5 calls.
FAST_TELEMETRY = {
    "OTEL_BSP_SCHEDULE_DELAY": "200",
    "OTEL_METRIC_EXPORT_INTERVAL": "1000",
    "DOPPEL_MONITOR_EVAL_INTERVAL_SECONDS": "0.1",
    "DOPPEL_MONITOR_THRESHOLDS": "hold_seconds=0,min_calls=5",
}
# FaultService exists only where enabled; the stack is open on loopback (no tokens), so these
# tests may call SetFaults without one.
FAULTS_ON = {"DOPPEL_FAULTS_ENABLED": "true"}
# Every episode of a run of 20 is written at once; downstream calls give up after 2 s.
STACK_LIMITS = {
    "DOPPEL_MAX_CONCURRENT_EPISODES": str(EPISODES + 4),
    "DOPPEL_RPC_TIMEOUT_SECONDS": "2",
    "DOPPEL_GRACE_SECONDS": "5",
    "DOPPEL_REFINEMENT_ROUNDS": "0",
    "PYTHONUNBUFFERED": "1",
}


def llm_env(provider: LLMServer) -> dict[str, str]:
    """The anthropic writer on the loopback provider, fast retries, no client-side rate limit;
    `chain` is anthropic, then procedural."""
    return {
        "ANTHROPIC_BASE_URL": provider.anthropic_url,
        "ANTHROPIC_API_KEY": TEST_KEY,
        "DOPPEL_ANTHROPIC_MODEL": "claude-loopback",
        "DOPPEL_WRITER_FALLBACK": "anthropic,procedural",
        "DOPPEL_LLM_MAX_ATTEMPTS": "2",
        "DOPPEL_LLM_BACKOFF_SECONDS": "0.05",
        "DOPPEL_LLM_MAX_BACKOFF_SECONDS": "0.2",
        "DOPPEL_LLM_TIMEOUT_SECONDS": "10",
        "DOPPEL_LLM_REQUESTS_PER_MINUTE": "1000000",
        "DOPPEL_LLM_TOKENS_PER_MINUTE": "1000000000",
    }


@dataclass
class Studio:
    """A running stack; `env` is its children's environment."""

    stack: Stack
    env: dict[str, str]
    log_dir: Path

    def address(self, name: str) -> str:
        return address_of(self.stack.settings, name)

    def alive(self) -> list[str]:
        return [c.name for c in self.stack.children if c.process.poll() is None]

    def assert_none_exited(self) -> None:
        exited = {c.name: c.process.returncode for c in self.stack.exited()}
        assert not exited, f"service processes exited: {exited}; logs: {self.logs(*exited)}"

    def logs(self, *names: str) -> dict[str, str]:
        """The last lines of the named services' logs, for failure messages."""
        found = {}
        for name in names:
            path = self.log_dir / f"{name}.log"
            if path.exists():
                found[name] = "\n".join(path.read_text(errors="replace").splitlines()[-20:])
        return found

    def stop_service(self, name: str, signum: signal.Signals) -> int:
        """Sends `signum` to one service process; returns its exit code once it is gone."""
        child = next(c for c in self.stack.children if c.name == name)
        os.kill(child.process.pid, signum)
        return child.process.wait(timeout=30)


@contextmanager
def running_studio(extra: Mapping[str, str], log_dir: Path) -> Iterator[Studio]:
    """Redis and the four services as processes, on free ports, telemetry on."""
    env = stack_env(telemetry=True, extra={**FAULTS_ON, **FAST_TELEMETRY, **STACK_LIMITS, **extra})
    # Generous: on a busy 2-core machine a service can take well over 10 s to import and serve.
    stack = Stack(Settings.from_env(env), log_dir, STARTUP_TIMEOUT, env=env)
    with stack:
        yield Studio(stack, env, log_dir)


# -- fault switches over FaultService ----------------------------------------------------------


async def set_switches(
    address: str, values: Mapping[str, float], reset: bool = False
) -> faults_pb2.FaultsState:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = faults_pb2_grpc.FaultServiceStub(channel)
        switches = [faults_pb2.FaultSwitch(name=n, value=v) for n, v in values.items()]
        request = faults_pb2.SetFaultsRequest(switches=switches, reset=reset)
        return await stub.SetFaults(request, timeout=10)


async def get_faults(address: str) -> faults_pb2.FaultsState:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = faults_pb2_grpc.FaultServiceStub(channel)
        return await stub.GetFaults(faults_pb2.GetFaultsRequest(), timeout=10)


async def injected(address: str, name: str) -> int:
    """How many times fault `name` has acted on the server at `address`."""
    return (await get_faults(address)).injected[name]


def switch_values(state: faults_pb2.FaultsState) -> dict[str, float]:
    return {switch.name: switch.value for switch in state.switches}


async def reset_faults(studio: Studio) -> None:
    """Every switch off on every live service, checked."""
    for name in studio.alive():
        state = await set_switches(studio.address(name), {}, reset=True)
        assert switch_values(state) == dict.fromkeys(BY_NAME, 0.0), name


# -- episodes through ScriptService --------------------------------------------------------------


@dataclass
class Outcome:
    episode: episode_pb2.Episode | None
    trace_id: str
    code: grpc.StatusCode
    details: str

    @property
    def ok(self) -> bool:
        return self.code == grpc.StatusCode.OK

    def describe(self) -> str:
        return f"{self.code.name}: {self.details}"


def request(seed: int, **fields: Any) -> script_pb2.GenerateEpisodeRequest:
    values: dict[str, Any] = {
        "show": "I Love Lucy", "setting": "a Mars colony in 2157", "scene_count": SCENES,
        "seed": seed,
    }  # fmt: skip
    values.update(fields)
    return script_pb2.GenerateEpisodeRequest(**values)


async def run_one(
    stub: script_pb2_grpc.ScriptServiceStub, message: script_pb2.GenerateEpisodeRequest
) -> Outcome:
    """One episode; honours `retry-after-ms` should the replica be at its cap."""
    for _ in range(100):
        events: list[script_pb2.GenerateEpisodeEvent] = []
        try:
            async for event in stub.GenerateEpisode(message, timeout=90):
                events.append(event)
        except grpc.aio.AioRpcError as exc:
            if exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and _retry_after_ms(exc):
                await asyncio.sleep(_retry_after_ms(exc) / 1000)
                continue
            return Outcome(None, _trace_id(events), exc.code(), exc.details() or "")
        assert events[-1].stage == Stage.STAGE_DONE, events[-1]
        return Outcome(events[-1].episode, _trace_id(events), grpc.StatusCode.OK, "")
    raise AssertionError("still overloaded after 100 tries")


def _trace_id(events: list[script_pb2.GenerateEpisodeEvent]) -> str:
    return next((event.trace_id for event in events if event.trace_id), "")


def _retry_after_ms(exc: grpc.aio.AioRpcError) -> int:
    hints = [int(v) for k, v in exc.trailing_metadata() or () if k == "retry-after-ms"]
    return hints[0] if hints else 0


async def run_episodes(studio: Studio, count: int = EPISODES, writer: str = "") -> list[Outcome]:
    """`count` new episodes at once, each with a fresh seed (the stack's Redis outlives tests)."""
    first = random.randrange(1, 10**9)
    async with grpc.aio.insecure_channel(studio.address("script")) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        return await asyncio.gather(
            *(run_one(stub, request(seed=first + n, writer=writer)) for n in range(count))
        )


def assert_clear(outcomes: list[Outcome]) -> None:
    """Each episode completed, or failed with a status that says why (never INTERNAL or
    UNKNOWN, never without a message)."""
    assert len(outcomes) > 0
    for outcome in outcomes:
        if outcome.ok:
            assert outcome.episode is not None
            assert [s.index for s in outcome.episode.scenes] == list(range(SCENES))
        else:
            unclear = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
            assert outcome.code not in unclear, outcome.describe()
            assert outcome.details.strip(), outcome.describe()


def assert_all_rendered(outcomes: list[Outcome]) -> None:
    """Every episode completed with its screenplay and no render error."""
    failed = [o.describe() for o in outcomes if not o.ok]
    assert failed == [], failed
    for outcome in outcomes:
        assert outcome.episode is not None
        assert outcome.episode.render_error == "", outcome.episode.render_error
        assert outcome.episode.fountain.strip(), outcome.episode.id


# -- the monitor ---------------------------------------------------------------------------------


async def health(studio: Studio) -> monitor_pb2.HealthReport:
    async with grpc.aio.insecure_channel(studio.address("monitor")) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        return await stub.GetHealth(monitor_pb2.GetHealthRequest(), timeout=10)


async def alerts(studio: Studio) -> list[monitor_pb2.Alert]:
    async with grpc.aio.insecure_channel(studio.address("monitor")) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        response = await stub.ListAlerts(monitor_pb2.ListAlertsRequest(), timeout=10)
        return list(response.alerts)


async def wait_for_error_alert(studio: Studio, service: str, operation: str) -> list[str]:
    """Polls ListAlerts (bounded) until an error_rate alert on `service` names an operation
    starting with `operation`; returns every alert seen last, as text."""
    seen: list[monitor_pb2.Alert] = []

    async def alerted() -> bool:
        nonlocal seen
        seen = await alerts(studio)
        return any(_is_error_alert(a, service, operation) for a in seen)

    with contextlib.suppress(AssertionError):  # The caller's check shows what was seen.
        await eventually(alerted, timeout=POLLS * POLL_SECONDS, interval=POLL_SECONDS)
    return [f"{a.rule} {a.service} {a.operation}" for a in seen]


def _is_error_alert(alert: monitor_pb2.Alert, service: str, operation: str) -> bool:
    return (
        alert.rule == "error_rate"
        and alert.service == service
        and alert.operation.startswith(operation)
    )


async def trace_services(studio: Studio, trace_id: str, wanted: set[str]) -> set[str]:
    """Polls GetTrace (bounded) until the trace has spans from every `wanted` service."""
    found: set[str] = set()
    async with grpc.aio.insecure_channel(studio.address("monitor")) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)

        async def complete() -> bool:
            nonlocal found
            try:
                trace = await stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id))
                found = {span.service for span in trace.spans}
            except grpc.aio.AioRpcError:
                found = set()
            return wanted <= found

        with contextlib.suppress(AssertionError):  # The caller's check shows what came.
            await eventually(complete, timeout=POLLS * POLL_SECONDS, interval=POLL_SECONDS)
    return found
