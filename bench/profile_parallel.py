"""Where the CPU of a parallel scene phase goes: `python -m bench.profile_parallel [OUT]`.

Runs cache, scene and script in this process (so one profile sees them all) against the loopback
provider at 200 ms a call, writes three 8-scene episodes with `max_parallel_scenes=8`, and writes
the scene-phase times and the functions with the most CPU time to OUT (default
bench/results/profile-parallel.txt). In-process, the services share one event loop, which
exaggerates serialisation; read it for where the time goes, not for the figure itself.
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

from bench.llm_server import LLMServer
from doppelganger.v1 import script_pb2, script_pb2_grpc
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry

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


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results/profile-parallel.txt")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(asyncio.run(profile()))
    print(out)


if __name__ == "__main__":
    main()
