"""`doppel load` / `make load`: open-loop GenerateEpisode load against a real stack.

Scenarios, each bounded in time and count, loopback only:
- steady: a fixed arrival rate;
- ramp: rising rates, step by step; the breaking point is the highest rate whose p99 latency is
  under the SLO with errors under 1%;
- spike: a base rate, five times that for a short burst, and back;
- soak: half the breaking point for longer; RSS of every service is sampled after warm-up and at
  the end (growth should stay under 10%). The warm-up lasts until the stack has written as many
  episodes as the monitor keeps traces (DOPPEL_MONITOR_MAX_TRACES): before that, the trace store
  is still filling towards its cap and its growth is by design, not a leak. RSS is also sampled
  every `SOAK_SAMPLE_SECONDS` through the soak, to show the trend.
After each phase: CPU and RSS per service, and what the monitor says (health score, firing
alerts), to see whether it followed the load. `--phases` picks scenarios; `--seed-pool N` draws
seeds from N values, so repeated episodes take the warm path, answered from the library
(default: every episode new, the cold path).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import psutil

from bench.measure import machine, percentile
from bench.stacks import running, stack_env
from doppel.stack import Stack
from doppelganger.v1 import (
    faults_pb2,
    faults_pb2_grpc,
    monitor_pb2,
    monitor_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from shared.faults import FaultSpecError, parse_spec
from testkit.llm_server import LLMServer

MAX_IN_FLIGHT = 512  # Beyond it the client sheds (counted), so memory stays bounded.
SOAK_SAMPLE_SECONDS = 10.0
PHASES = ("steady", "ramp", "spike", "soak")
FIRST_SEED = 5_000_000
WRITERS = ("procedural", "anthropic", "chain")


class Seeds:
    """New seeds for every episode, or a cycle through a pool of `pool` seeds."""

    def __init__(self, pool: int = 0) -> None:
        self._seeds: Iterator[int] = itertools.count(FIRST_SEED)
        if pool:
            self._seeds = itertools.cycle(range(FIRST_SEED, FIRST_SEED + pool))

    def __next__(self) -> int:
        return next(self._seeds)


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


@dataclass
class Load:
    """What every episode of a run shares."""

    stack: Stack
    scenes: int
    seeds: Seeds
    writer: str = "procedural"
    processes: dict[str, psutil.Process] = field(default_factory=dict)
    episodes_sent: int = 0

    def __post_init__(self) -> None:
        # One psutil.Process per child: cpu_percent measures since the same object's last call.
        self.processes = {c.name: psutil.Process(c.process.pid) for c in self.stack.children}


async def _one_episode(
    stub: script_pb2_grpc.ScriptServiceStub, phase: Phase, load: Load, seed: int
) -> None:
    request = script_pb2.GenerateEpisodeRequest(
        show="Cheers", setting="a generation starship", scene_count=load.scenes, seed=seed,
        writer=load.writer,
    )  # fmt: skip
    started = time.perf_counter()
    try:
        async for _ in stub.GenerateEpisode(request, timeout=60):
            pass
    except grpc.aio.AioRpcError as exc:
        phase.errors[exc.code().name] = phase.errors.get(exc.code().name, 0) + 1
        return
    phase.completed += 1
    phase.latencies.append(time.perf_counter() - started)


async def drive(load: Load, phase: Phase) -> None:
    """Open loop: requests start on schedule whether or not earlier ones finished."""
    async with grpc.aio.insecure_channel(load.stack.settings.script_address) as channel:
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
            load.episodes_sent += 1
            task = asyncio.create_task(_one_episode(stub, phase, load, next(load.seeds)))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        if in_flight:
            await asyncio.wait(in_flight, timeout=60)


def sample_services(load: Load) -> dict[str, dict[str, float]]:
    """CPU (percent of one core, since the last sample) and RSS of every service."""
    rss = rss_mb(load)
    return {
        name: {"cpu_percent": process.cpu_percent(interval=None), "rss_mb": rss[name]}
        for name, process in load.processes.items()
    }


def rss_mb(load: Load) -> dict[str, float]:
    return {name: p.memory_info().rss / 2**20 for name, p in load.processes.items()}


async def monitor_view(stack: Stack, phase: Phase) -> None:
    async with grpc.aio.insecure_channel(stack.settings.monitor_address) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        health = await stub.GetHealth(monitor_pb2.GetHealthRequest(), timeout=30)
        alerts = await stub.ListAlerts(monitor_pb2.ListAlertsRequest(), timeout=30)
    phase.health_score = health.score
    phase.firing_alerts = [f"{a.rule} {a.service}/{a.operation}" for a in alerts.alerts]


async def run_phase(load: Load, phase: Phase) -> Phase:
    sample_services(load)  # Starts the CPU window.
    await drive(load, phase)
    phase.services = sample_services(load)
    await asyncio.sleep(1.5)  # Let the last spans reach the monitor.
    await monitor_view(load.stack, phase)
    return phase


def breaking_point(phases: list[Phase], slo_p99: float) -> float:
    good = [p.target_rate for p in phases if p.p(99) <= slo_p99 and p.error_rate < 0.01]
    return max(good, default=0.0)


async def scenarios(load: Load, args: argparse.Namespace) -> dict[str, Any]:
    step = args.seconds
    results: dict[str, Any] = {}
    if "steady" in args.phases:
        results["steady"] = [(await run_phase(load, Phase("steady", args.rate, step))).summary()]
    base = args.rate
    if "ramp" in args.phases:
        best = await ramp(load, args)
        results["ramp"] = [phase.summary() for phase in best[1]]
        results["breaking_point_episodes_per_s"] = best[0]
        base = max(1.0, best[0] / 2)
    if "spike" in args.phases:
        results["spike"] = [
            (await run_phase(load, Phase(name, rate, seconds))).summary()
            for name, rate, seconds in (
                ("spike-before", base, step), ("spike", base * 5, step / 2),
                ("spike-after", base, step),
            )
        ]  # fmt: skip
    if "soak" in args.phases:
        results.update(await soak(load, args, base))
    results["faults_injected"] = await faults_injected(load.stack)
    return results


async def faults_injected(stack: Stack) -> dict[str, dict[str, int]]:
    """How often each fault acted, by service: shows whether a --faults run really bit (empty
    without --faults: the stack has no FaultService then)."""
    counts: dict[str, dict[str, int]] = {}
    if not stack.settings.faults_enabled:
        return counts
    for child in stack.children:
        async with grpc.aio.insecure_channel(child.address) as channel:
            state = await faults_pb2_grpc.FaultServiceStub(channel).GetFaults(
                faults_pb2.GetFaultsRequest(), timeout=10
            )
        counts[child.name] = {name: int(n) for name, n in state.injected.items() if n}
    return counts


async def ramp(load: Load, args: argparse.Namespace) -> tuple[float, list[Phase]]:
    """Rising rates until well past the breaking point; (breaking point, phases)."""
    phases = []
    for rate in args.ramp:
        phase = await run_phase(load, Phase("ramp", rate, args.seconds))
        phases.append(phase)
        print(_line(phase), flush=True)
        if phase.error_rate > 0.05 or phase.p(99) > 4 * args.slo_p99:
            break  # Well past the breaking point; no need to push harder.
    return breaking_point(phases, args.slo_p99), phases


async def soak(load: Load, args: argparse.Namespace, rate: float) -> dict[str, Any]:
    """A warm-up that fills the monitor's trace store, then the soak, sampling RSS as it goes."""
    fill = args.soak_warmup_episodes
    if fill is None:
        fill = load.stack.settings.monitor_max_traces
    warmup_seconds = max(args.seconds, (fill - load.episodes_sent) / rate)
    warm = await run_phase(load, Phase("soak-warmup", rate, warmup_seconds))
    print(_line(warm), flush=True)
    timeline = [rss_mb(load)]
    soaked = Phase("soak", rate, args.soak_seconds)
    sampler = asyncio.create_task(_sample_rss(load, timeline))
    try:
        await run_phase(load, soaked)
    finally:
        sampler.cancel()
    timeline.append({name: sample["rss_mb"] for name, sample in soaked.services.items()})
    print(_line(soaked), flush=True)
    growth = {name: timeline[-1][name] / timeline[0][name] - 1 for name in timeline[0]}
    return {
        "soak": [warm.summary(), soaked.summary()],
        "soak_rss_growth": growth,
        "soak_rss_timeline_mb": timeline,
        "soak_warmup_episodes": load.episodes_sent - soaked.sent,
    }


async def _sample_rss(load: Load, timeline: list[dict[str, float]]) -> None:
    while True:
        await asyncio.sleep(SOAK_SAMPLE_SECONDS)
        timeline.append(rss_mb(load))


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
    parser.add_argument(
        "--soak-warmup-episodes",
        type=int,
        default=None,
        help="episodes written before the soak's RSS baseline (default: the monitor's trace "
        "capacity, DOPPEL_MONITOR_MAX_TRACES, so its trace store is full)",
    )
    parser.add_argument(
        "--phases", nargs="+", choices=PHASES, default=list(PHASES), help="scenarios to run"
    )
    parser.add_argument(
        "--seed-pool",
        type=int,
        default=0,
        help="draw seeds from this many values, so episodes repeat (answered from the library) "
        "(default 0: every episode new)",
    )
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--slo-p99", type=float, default=2.0, help="p99 latency SLO, seconds")
    parser.add_argument("--out", default="bench/results/load.json")
    parser.add_argument(
        "--writer",
        choices=WRITERS,
        default="procedural",
        help="procedural (default), or anthropic / chain (anthropic, then procedural) on the "
        "loopback provider of testkit/llm_server.py; llm_* faults need one of the latter",
    )
    parser.add_argument(
        "--llm-latency-ms", type=float, default=200.0, help="the loopback provider's latency"
    )
    parser.add_argument(
        "--faults",
        type=_fault_spec,
        default="",
        help="fault switches for every service of the stack, e.g. llm_error_rate=0.3,"
        "cache_unavailable=1 (DOPPEL_FAULTS; docs/reliability.md)",
    )


def loopback_llm_env(provider: LLMServer) -> dict[str, str]:
    """The `anthropic` writer on the loopback provider, with limits that never bind."""
    return {
        "ANTHROPIC_BASE_URL": provider.anthropic_url,
        "ANTHROPIC_API_KEY": "sk-load-loopback",
        "DOPPEL_WRITER_FALLBACK": "anthropic,procedural",
        "DOPPEL_LLM_REQUESTS_PER_MINUTE": "1000000",
        "DOPPEL_LLM_TOKENS_PER_MINUTE": "1000000000000",
        "DOPPEL_LLM_EPISODE_MAX_TOKENS": "1000000000000",
        "DOPPEL_LLM_EPISODE_MAX_COST_USD": "1000000",
    }


def _fault_spec(text: str) -> str:
    try:
        parse_spec(text)
    except FaultSpecError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def run(args: argparse.Namespace) -> int:
    if args.writer == "procedural" and any(
        name.startswith("llm_") for name in parse_spec(args.faults)
    ):
        print("doppel load: llm_* faults act on LLM calls; add --writer anthropic or chain")
        return 2
    extra = {"OTEL_METRIC_EXPORT_INTERVAL": "2000"}
    if args.faults:  # FaultService exists only where enabled (shared/faults.py).
        extra.update(DOPPEL_FAULTS_ENABLED="true", DOPPEL_FAULTS=args.faults)

    async def main() -> dict[str, Any]:
        with contextlib.ExitStack() as scope:
            if args.writer != "procedural":
                provider = scope.enter_context(LLMServer(latency=args.llm_latency_ms / 1000))
                extra.update(loopback_llm_env(provider))
            stack = scope.enter_context(running(stack_env(telemetry=True, extra=extra)))
            load = Load(stack, args.scenes, Seeds(args.seed_pool), args.writer)
            return await scenarios(load, args)

    results = asyncio.run(main())
    results["writer"] = args.writer
    results["faults"] = args.faults
    results["machine"] = machine()
    results["slo_p99_s"] = args.slo_p99
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    if "breaking_point_episodes_per_s" in results:
        print(f"breaking point: {results['breaking_point_episodes_per_s']} episodes/s "
              f"(p99 <= {args.slo_p99}s, errors < 1%)")  # fmt: skip
    for name, injected in results["faults_injected"].items():
        if injected:
            print(f"faults injected {name:8} {injected}")
    for name, growth in results.get("soak_rss_growth", {}).items():
        print(f"soak RSS growth {name:8} {growth:+.1%}")
    print(f"results {out}")
    return 0
