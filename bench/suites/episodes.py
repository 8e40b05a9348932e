"""Episodes per second with the procedural writer: cache cold and warm, telemetry on and off.

Two whole stacks run side by side (telemetry off, telemetry on, exporting to its own monitor);
their measurements alternate, so machine noise hits both alike. "Cold" requests use seeds never
seen before (every outline, scene and episode is written); "warm" repeats them (the finished
episode comes from the library).
"""

from __future__ import annotations

import itertools

import grpc

from bench.measure import Figure
from bench.stacks import running, stack_env
from bench.suites.common import Scale, rate
from doppelganger.v1 import script_pb2, script_pb2_grpc

CONCURRENCY = 4
SCENES = 3
_seeds = itertools.count(1_000_000)


async def _episodes_per_second(address: str, seeds: list[int]) -> float:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)

        async def generate(index: int) -> object:
            request = script_pb2.GenerateEpisodeRequest(
                show="I Love Lucy", setting="a Mars colony in 2157",
                scene_count=SCENES, seed=seeds[index],
            )  # fmt: skip
            events = [event async for event in stub.GenerateEpisode(request)]
            assert events[-1].HasField("episode")
            return events[-1]

        return await rate(generate, len(seeds), CONCURRENCY)


async def run(scale: Scale) -> list[Figure]:
    cold_off = Figure("episodes.cold_per_s", "episodes/s", note=f"{SCENES} scenes, telemetry off")
    warm_off = Figure("episodes.warm_per_s", "episodes/s", note="same requests again")
    cold_on = Figure("episodes.cold_per_s_telemetry_on", "episodes/s")
    ratio = Figure(
        "telemetry.throughput_ratio_on_off", "ratio", is_ratio=True, target=0.85,
        note="cold episodes/s with telemetry on over off, alternating in one run",
    )  # fmt: skip
    warm_ratio = Figure("episodes.warm_over_cold", "ratio", is_ratio=True)
    with running(stack_env(telemetry=False)) as off, running(stack_env(telemetry=True)) as on:
        for _ in range(scale.repetitions):
            seeds_off = [next(_seeds) for _ in range(scale.episodes)]
            seeds_on = [next(_seeds) for _ in range(scale.episodes)]
            off_rate = await _episodes_per_second(off.settings.script_address, seeds_off)
            on_rate = await _episodes_per_second(on.settings.script_address, seeds_on)
            warm = await _episodes_per_second(off.settings.script_address, seeds_off)
            cold_off.values.append(off_rate)
            cold_on.values.append(on_rate)
            warm_off.values.append(warm)
            ratio.values.append(on_rate / off_rate)
            warm_ratio.values.append(warm / off_rate)
    return [cold_off, warm_off, cold_on, ratio, warm_ratio]
