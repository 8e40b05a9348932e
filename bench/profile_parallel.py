"""Where the time of a parallel scene phase goes: `python -m bench.profile_parallel [OUT]`.

Two views, written to OUT (default bench/results/profile-parallel.txt):
1. A timeline on the real stack (cache, scene and script as processes, the loopback provider at
   200 ms a call, 8-scene episodes with `max_parallel_scenes=8`): for every scene, when its
   request reached the provider, when the answer left, and when the client got the scene event,
   all from the outline event. The phase beyond the 200 ms ideal splits into the dispatch
   spread (the last request's arrival: requests leave one after another from the script's one
   event loop) and the tail (last answer to last scene event: replies are parsed, checked,
   converted and cached one after another on that loop).
2. A cProfile of the same work with the services in this process (so one profile sees them
   all): which functions take the CPU. In-process the services share one event loop, which
   exaggerates serialisation; read it for where the CPU goes, not for the figure itself.
"""

from __future__ import annotations

import asyncio
import cProfile
import io
import pstats
import sys
import time
from pathlib import Path

import grpc

from bench.stacks import running
from bench.suites import llm as llm_suite
from doppelganger.v1 import script_pb2, script_pb2_grpc
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from testkit.llm_server import LLMServer, Received

SCENES = 8


async def _scene_phase(stub: script_pb2_grpc.ScriptServiceStub, seed: int) -> float:
    outline_at = last_scene_at = 0.0
    request = script_pb2.GenerateEpisodeRequest(
        show="Frasier", setting="Victorian London", scene_count=SCENES, seed=seed,
        writer="anthropic",
    )  # fmt: skip
    async for event in stub.GenerateEpisode(request):
        if event.stage == script_pb2.STAGE_OUTLINE:
            outline_at = time.perf_counter()
        elif event.stage == script_pb2.STAGE_SCENES:
            last_scene_at = time.perf_counter()
    return last_scene_at - outline_at


async def profile() -> str:
    with RedisServer() as redis, LLMServer(latency=0.2) as provider:
        base = Settings(
            script_port=0, scene_port=0, cache_port=0, telemetry_disabled=True,
            redis_url=redis.url, anthropic_base_url=provider.anthropic_url,
            anthropic_api_key="bench", llm_requests_per_minute=100_000,
            llm_tokens_per_minute=10**10, llm_episode_max_tokens=10**10,
            llm_episode_max_cost_usd=10**6, max_parallel_scenes=SCENES,
        )  # fmt: skip
        cache = await create_cache_server(base, Telemetry("cache", base))
        scene = await create_scene_server(base, Telemetry("scene", base))
        config = base.with_changes(
            cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
        )
        script = await create_script_server(config, Telemetry("script", config))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{script.port}") as channel:
                stub = script_pb2_grpc.ScriptServiceStub(channel)
                await _scene_phase(stub, 1)  # Warm-up: connections, caches, imports.
                profiler = cProfile.Profile()
                profiler.enable()
                phases = [await _scene_phase(stub, seed) for seed in (2, 3, 4)]
                profiler.disable()
        finally:
            for server in (script, scene, cache):
                await server.stop(0)
    text = io.StringIO()
    text.write(f"scene phases (s), ideal 0.200: {[round(p, 3) for p in phases]}\n\n")
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(25)
    return text.getvalue()


async def _timed_episode(address: str, seed: int) -> tuple[float, dict[int, float]]:
    """The outline event's time and each scene event's time (time.monotonic, as the provider)."""
    outline_at, scene_at = 0.0, {}
    request = script_pb2.GenerateEpisodeRequest(
        show="Frasier", setting="Victorian London", scene_count=SCENES, seed=seed,
        writer="anthropic",
    )  # fmt: skip
    async with grpc.aio.insecure_channel(address) as channel:
        async for event in script_pb2_grpc.ScriptServiceStub(channel).GenerateEpisode(request):
            if event.stage == script_pb2.STAGE_OUTLINE:
                outline_at = time.monotonic()
            elif event.stage == script_pb2.STAGE_SCENES:
                scene_at[event.scene.index] = time.monotonic()
    return outline_at, scene_at


async def timeline(episodes: int = 6) -> str:
    """Per scene: request arrival, answer sent, scene event (ms from the outline event)."""
    lines = ["Timeline on the real stack (ms from the outline event; ideal phase 200):", ""]
    lines.append("episode  phase  dispatch  tail   per scene (arrived / answered / event)")
    with LLMServer(latency=0.2) as provider:
        env = llm_suite._llm_env(provider, SCENES)
        with running(env, services=("cache", "scene", "script")) as stack:
            await _timed_episode(stack.settings.script_address, 1)  # Warm-up.
            for number in range(episodes):
                before = len(provider.received)
                start, events = await _timed_episode(stack.settings.script_address, 100 + number)
                scenes = [r for r in provider.received[before:] if r.task == "scene"]
                lines.append(_timeline_row(number, start, events, scenes))
    return "\n".join(lines) + "\n"


def _timeline_row(
    number: int, start: float, events: dict[int, float], scenes: list[Received]
) -> str:
    def ms(moment: float) -> int:
        return round((moment - start) * 1000)

    rows = sorted(
        (ms(r.at), ms(r.answered_at), ms(events[r.scene_index]))
        for r in scenes
        if r.scene_index in events
    )
    last_answer = max(answered for _, answered, _ in rows)
    phase = max(event for _, _, event in rows)
    dispatch = max(arrived for arrived, _, _ in rows)
    cells = " ".join(f"{a}/{b}/{c}" for a, b, c in rows)
    return f"{number:7}  {phase:5}  {dispatch:8}  {phase - last_answer:4}   {cells}"


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/profile-parallel.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    text = asyncio.run(timeline()) + "\n" + asyncio.run(profile())
    out.write_text(text)
    print(text[:2000])
    print(out)


if __name__ == "__main__":
    main()
