"""`doppel load` / `make load`: open-loop GenerateEpisode load against a real stack.

Scenarios, each bounded in time and count, loopback only:
- steady: a fixed arrival rate;
- ramp: rising rates, step by step; the breaking point is the highest rate whose p99 latency is
  under the SLO with errors under 1%;
- spike: a base rate, five times that for a short burst, and back;
- soak: half the breaking point for longer; RSS of every service is sampled after warm-up and at
  the end (growth should stay under 10%).
After each phase: CPU and RSS per service, and what the monitor says (health score, firing
alerts), to see whether it followed the load.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench.measure import machine, percentile
from bench.stacks import running, stack_env
from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc, script_pb2, script_pb2_grpc
from shared.faults import FaultSpecError, parse_spec
from shared.stack import Stack

MAX_IN_FLIGHT = 512  # Beyond it the client sheds (counted), so memory stays bounded.
_seeds = itertools.count(5_000_000)


@dataclass
class Phase:
    scenario: str
    target_rate: float
    seconds: float
    sent: int = 0
    completed: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    shed_by_client: int = 0
    latencies: list[float] = field(default_factory=list)
    services: dict[str, dict[str, float]] = field(default_factory=dict)
    health_score: float = 0.0
    firing_alerts: list[str] = field(default_factory=list)

    @property
    def error_rate(self) -> float:
        failed = sum(self.errors.values()) + self.shed_by_client
        return failed / self.sent if self.sent else 0.0

    def p(self, q: float) -> float:
        return percentile(self.latencies, q) if self.latencies else float("nan")

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies")
        data.update(
            achieved_rate=self.completed / self.seconds,
            p50_s=self.p(50), p99_s=self.p(99), error_rate=self.error_rate,
        )  # fmt: skip
        return data


async def _one_episode(stub: script_pb2_grpc.ScriptServiceStub, phase: Phase, scenes: int) -> None:
    request = script_pb2.GenerateEpisodeRequest(
        show="Cheers", setting="a generation starship", scene_count=scenes, seed=next(_seeds)
    )
    started = time.perf_counter()
    try:
        async for _ in stub.GenerateEpisode(request, timeout=60):
            pass
    except grpc.aio.AioRpcError as exc:
        phase.errors[exc.code().name] = phase.errors.get(exc.code().name, 0) + 1
        return
    phase.completed += 1
    phase.latencies.append(time.perf_counter() - started)


async def drive(address: str, phase: Phase, scenes: int) -> None:
    """Open loop: requests start on schedule whether or not earlier ones finished."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        in_flight: set[asyncio.Task[None]] = set()
        interval = 1.0 / phase.target_rate
        started = time.perf_counter()
        for tick in range(int(phase.seconds * phase.target_rate)):
            await asyncio.sleep(max(0.0, started + tick * interval - time.perf_counter()))
            phase.sent += 1
            if len(in_flight) >= MAX_IN_FLIGHT:
                phase.shed_by_client += 1
                continue
            task = asyncio.create_task(_one_episode(stub, phase, scenes))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)


def sample_services(stack: Stack, interval: float = 0.5) -> dict[str, dict[str, float]]:
    sampled = {}
    for child in stack.children:
        process = psutil.Process(child.process.pid)
        sampled[child.name] = {
            "cpu_percent": process.cpu_percent(interval=None),
            "rss_mb": process.memory_info().rss / 2**20,
        }
    return sampled


async def monitor_view(stack: Stack, phase: Phase) -> None:
    async with grpc.aio.insecure_channel(stack.settings.monitor_address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        health = await stub.GetHealth(monitor_pb2.GetHealthRequest())
        alerts = await stub.ListAlerts(monitor_pb2.ListAlertsRequest())
    phase.health_score = health.score
    phase.firing_alerts = [f"{a.rule} {a.service}/{a.operation}" for a in alerts.alerts]


async def run_phase(stack: Stack, phase: Phase, scenes: int) -> Phase:
    for child in stack.children:
        psutil.Process(child.process.pid).cpu_percent(interval=None)  # Start the CPU window.
    await drive(stack.settings.script_address, phase, scenes)
    phase.services = sample_services(stack)
    await asyncio.sleep(1.5)  # Let the last spans reach the monitor.
    await monitor_view(stack, phase)
    return phase


def breaking_point(phases: list[Phase], slo_p99: float) -> float:
    good = [p.target_rate for p in phases if p.p(99) <= slo_p99 and p.error_rate < 0.01]
    return max(good, default=0.0)


async def scenarios(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    step = args.seconds
    results: dict[str, Any] = {}
    steady = await run_phase(stack, Phase("steady", args.rate, step), args.scenes)
    results["steady"] = [steady.summary()]
    ramp = []
    for rate in args.ramp:
        phase = await run_phase(stack, Phase("ramp", rate, step), args.scenes)
        ramp.append(phase)
        print(_line(phase), flush=True)
        if phase.error_rate > 0.05 or phase.p(99) > 4 * args.slo_p99:
            break  # Well past the breaking point; no need to push harder.
    best = breaking_point(ramp, args.slo_p99)
    results["ramp"] = [phase.summary() for phase in ramp]
    results["breaking_point_episodes_per_s"] = best
    base = max(1.0, best / 2)
    spike = [
        await run_phase(stack, Phase("spike-before", base, step), args.scenes),
        await run_phase(stack, Phase("spike", base * 5, step / 2), args.scenes),
        await run_phase(stack, Phase("spike-after", base, step), args.scenes),
    ]
    results["spike"] = [phase.summary() for phase in spike]
    warm = await run_phase(stack, Phase("soak-warmup", base, step), args.scenes)
    soak = await run_phase(stack, Phase("soak", base, args.soak_seconds), args.scenes)
    growth = {
        name: soak.services[name]["rss_mb"] / warm.services[name]["rss_mb"] - 1
        for name in soak.services
    }
    results["soak"] = [warm.summary(), soak.summary()]
    results["soak_rss_growth"] = growth
    return results


def _line(phase: Phase) -> str:
    return (
        f"{phase.scenario:12} {phase.target_rate:6.1f}/s  done {phase.completed:5}  "
        f"p50 {phase.p(50):6.3f}s  p99 {phase.p(99):6.3f}s  errors {phase.error_rate:6.1%}  "
        f"health {phase.health_score:5.1f}"
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rate", type=float, default=5.0, help="steady rate, episodes/s")
    parser.add_argument(
        "--ramp", type=float, nargs="+", default=[2, 5, 10, 20, 40, 60], help="ramp rates"
    )
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--soak-seconds", type=float, default=60.0)
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--slo-p99", type=float, default=2.0, help="p99 latency SLO, seconds")
    parser.add_argument("--out", default="bench/results/load.json")
    parser.add_argument(
        "--faults",
        type=_fault_spec,
        default="",
        help="fault switches for every service of the stack, e.g. llm_error_rate=0.3,"
        "cache_unavailable=1 (DOPPEL_FAULTS; docs/reliability.md)",
    )


def _fault_spec(text: str) -> str:
    try:
        parse_spec(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def run(args: argparse.Namespace) -> int:
    extra = {"OTEL_METRIC_EXPORT_INTERVAL": "2000"}
    if getattr(args, "faults", ""):
        extra["DOPPEL_FAULTS"] = args.faults
    env = stack_env(telemetry=True, extra=extra)

    async def main() -> dict[str, Any]:
        with running(env) as stack:
            return await scenarios(stack, args)

    results = asyncio.run(main())
    results["machine"] = machine()
    results["slo_p99_s"] = args.slo_p99
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"breaking point: {results['breaking_point_episodes_per_s']} episodes/s "
          f"(p99 <= {args.slo_p99}s, errors < 1%)")  # fmt: skip
    for name, growth in results["soak_rss_growth"].items():
        print(f"soak RSS growth {name:8} {growth:+.1%}")
    print(f"results {out}")
    return 0
