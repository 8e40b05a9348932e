"""Fault injection switches: one `Faults` registry per service instance, and FaultService.

The switches start from DOPPEL_FAULTS ("llm_error_rate=0.3,cache_unavailable=1,...") and are
changed at runtime with FaultService.SetFaults (admin role). The bootstrap registers FaultService
only when DOPPEL_FAULTS_ENABLED is true; otherwise it does not exist (UNIMPLEMENTED) and
DOPPEL_FAULTS must be empty. Each accepted SetFaults is logged at WARNING with the caller's
identity and counted (`doppel.faults.changes`, attribute `doppel.caller`), and the server's own
gRPC health status of `doppelganger.v1.FaultService` is NOT_SERVING while any switch is on: both
stay visible when `monitor_unreachable` drops the telemetry.
Each switch acts where its component lives, so an injected fault takes the same path as a real
one: the LLM switches in the script service's LLM caller (before the HTTP request), the cache
switch in the cache service (Get, Set and Delete answer UNAVAILABLE), the render delay in the
scene service, and the monitor switch in every service's OTLP exporters (exports dropped and
counted). Every time a fault acts it is counted (`injected`, `doppel.faults.injected`).
"""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from opentelemetry import metrics
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from doppelganger.v1 import faults_pb2, faults_pb2_grpc
from shared.access import current_caller
from shared.fault_switches import (  # Re-exported: callers import the switches from here too.
    BY_NAME,
    MAX_SWITCHES_PER_REQUEST,
    STORM_RETRY_AFTER_MS,
    SWITCHES,
    FaultSpecError,
    Switch,
    check_switch,
    parse_spec,
    spec_of,
)

log = logging.getLogger(__name__)

__all__ = [
    "BY_NAME",
    "MAX_SWITCHES_PER_REQUEST",
    "SERVICE_NAME",
    "STORM_RETRY_AFTER_MS",
    "SWITCHES",
    "FaultServicer",
    "FaultSpecError",
    "Faults",
    "GatedMetricExporter",
    "GatedSpanExporter",
    "Switch",
    "add_fault_service",
    "check_switch",
    "parse_spec",
    "set_faults",
    "spec_of",
]  # fmt: skip


class Faults:
    """The switches of one service instance; thread-safe (exporters read them off the loop)."""

    def __init__(self, initial: Mapping[str, float] | None = None, seed: int | None = None) -> None:
        self._values = dict.fromkeys(BY_NAME, 0.0)
        self._injected = dict.fromkeys(BY_NAME, 0)
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._counter: metrics.Counter | None = None
        self._changes: metrics.Counter | None = None
        self.update(initial or {})

    @classmethod
    def from_spec(cls, spec: str) -> Faults:
        return cls(parse_spec(spec))

    def attach_meter(self, meter: metrics.Meter) -> None:
        self._counter = meter.create_counter(
            "doppel.faults.injected", unit="{fault}", description="Injected faults that acted."
        )
        self._changes = meter.create_counter(
            "doppel.faults.changes",
            unit="{change}",
            description="Accepted FaultService.SetFaults calls, by caller identity.",
        )

    def update(self, values: Mapping[str, float], reset: bool = False) -> None:
        checked = {name: check_switch(name, float(value)) for name, value in values.items()}
        with self._lock:
            if reset:
                self._values = dict.fromkeys(BY_NAME, 0.0)
            self._values.update(checked)

    def values(self) -> dict[str, float]:
        with self._lock:
            return dict(self._values)

    def switched_on(self) -> dict[str, float]:
        """The switches that are not off."""
        return {name: value for name, value in self.values().items() if value}

    def count_change(self, caller: str) -> None:
        """Records an accepted SetFaults by `caller` (an identity, never a token)."""
        if self._changes is not None:
            self._changes.add(1, {"doppel.caller": caller})

    def injected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._injected)

    def value(self, name: str) -> float:
        with self._lock:
            return self._values[name]

    def active(self, name: str) -> bool:
        """Whether an on/off switch is on."""
        return self.value(name) >= 0.5

    def roll(self, name: str) -> bool:
        """True with the probability the rate switch `name` holds."""
        rate = self.value(name)
        with self._lock:
            return rate > 0 and self._rng.random() < rate

    def count(self, name: str, times: int = 1) -> None:
        """Records that fault `name` acted."""
        with self._lock:
            self._injected[name] += times
        if self._counter is not None:
            self._counter.add(times, {"doppel.fault": name})

    def state(self) -> faults_pb2.FaultsState:
        return faults_pb2.FaultsState(
            switches=[faults_pb2.FaultSwitch(name=n, value=v) for n, v in self.values().items()],
            injected=self.injected(),
        )


OnChange = Callable[[Faults], Awaitable[None]]


class FaultServicer(faults_pb2_grpc.FaultServiceServicer):
    def __init__(self, faults: Faults, on_change: OnChange | None = None) -> None:
        self._faults = faults
        self._on_change = on_change

    async def SetFaults(
        self, request: faults_pb2.SetFaultsRequest, context: grpc.aio.ServicerContext
    ) -> faults_pb2.FaultsState:
        if len(request.switches) > MAX_SWITCHES_PER_REQUEST:
            await context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"switches: at most {MAX_SWITCHES_PER_REQUEST}, got {len(request.switches)}",
            )
        try:
            self._faults.update({s.name: s.value for s in request.switches}, request.reset)
        except FaultSpecError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"switches: {exc}")
        caller = current_caller()
        log.warning(
            "fault switches set by %s (%s): now %s",
            caller.name, caller.via, spec_of(self._faults.switched_on()) or "all off",
        )  # fmt: skip
        self._faults.count_change(caller.name)
        if self._on_change is not None:
            await self._on_change(self._faults)
        return self._faults.state()

    async def GetFaults(
        self, request: faults_pb2.GetFaultsRequest, context: grpc.aio.ServicerContext
    ) -> faults_pb2.FaultsState:
        return self._faults.state()


SERVICE_NAME = faults_pb2.DESCRIPTOR.services_by_name["FaultService"].full_name


def add_fault_service(
    server: grpc.aio.Server, faults: Faults, on_change: OnChange | None = None
) -> str:
    """Registers FaultService; returns its full name (for reflection and health).
    `on_change` runs after every accepted SetFaults."""
    faults_pb2_grpc.add_FaultServiceServicer_to_server(FaultServicer(faults, on_change), server)
    return SERVICE_NAME


async def set_faults(
    channel: grpc.aio.Channel, values: Mapping[str, float], reset: bool = False
) -> faults_pb2.FaultsState:
    """Client helper: sets switches on the server behind `channel`."""
    stub = faults_pb2_grpc.FaultServiceStub(channel)
    switches = [faults_pb2.FaultSwitch(name=n, value=v) for n, v in values.items()]
    return await stub.SetFaults(faults_pb2.SetFaultsRequest(switches=switches, reset=reset))


class GatedSpanExporter(SpanExporter):
    """The real span exporter, unless `monitor_unreachable` is on: then the batch is dropped
    (as when the monitor cannot be reached) and counted."""

    def __init__(self, inner: SpanExporter, faults: Faults) -> None:
        self._inner = inner
        self._faults = faults

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._faults.active("monitor_unreachable"):
            self._faults.count("monitor_unreachable")
            return SpanExportResult.FAILURE
        return self._inner.export(spans)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


class GatedMetricExporter(MetricExporter):
    """The real metric exporter, unless `monitor_unreachable` is on (then dropped, counted)."""

    def __init__(self, inner: MetricExporter, faults: Faults) -> None:
        super().__init__(
            preferred_temporality=inner._preferred_temporality,
            preferred_aggregation=inner._preferred_aggregation,
        )
        self._inner = inner
        self._faults = faults

    def export(
        self, metrics_data: MetricsData, timeout_millis: float = 10_000, **kwargs: Any
    ) -> MetricExportResult:
        if self._faults.active("monitor_unreachable"):
            self._faults.count("monitor_unreachable")
            return MetricExportResult.FAILURE
        return self._inner.export(metrics_data, timeout_millis=timeout_millis, **kwargs)

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return self._inner.force_flush(timeout_millis)

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        self._inner.shutdown(timeout_millis=timeout_millis, **kwargs)
