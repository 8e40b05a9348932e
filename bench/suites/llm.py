"""LLM-backed generation against the loopback provider (testkit/llm_server.py).

- Parallel against sequential: two script services, `DOPPEL_MAX_PARALLEL_SCENES` 8 and 1, the
  `anthropic` writer on a loopback server answering after a fixed latency. The scene phase is
  timed from the client's events (outline received -> last scene received); speedup is
  sequential over parallel, efficiency is speedup over the ideal min(N, parallelism). One
  unmeasured parallel episode at each N first warms the connection pool.
- Platform overhead per LLM call: the same scene request through our whole writer (limiter,
  budget, span, JSON validation, proto conversion, joke scoring) and straight through the same
  SDK (the same body, `AnthropicChat.body`, streamed the same way), alternately, with the server
  answering at once; the difference is what we add.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence

import anthropic
import grpc
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from bench.measure import Figure, percentile
from bench.stacks import running, stack_env
from bench.suites.common import Scale
from doppelganger.v1 import script_pb2, script_pb2_grpc
from services.script import catalog, procedural
from services.script.llm import prompts
from services.script.llm.providers import AnthropicChat, ChatRequest
from services.script.llm.writer import context_block, scene_schema
from services.script.writers import build_writers
from services.script.writing import StoryContext
from shared.config import Settings
from shared.telemetry import Telemetry
from testkit.llm_server import LLMServer, Received

SCENE_COUNTS = (3, 8, 16)
PARALLELISM = 8
KEY = "sk-bench-loopback"
_seed = iter(range(9_000_000, 10_000_000))


def _llm_env(server: LLMServer, parallel: int) -> dict[str, str]:
    return stack_env(
        telemetry=False,
        extra={
            "ANTHROPIC_BASE_URL": server.anthropic_url,
            "ANTHROPIC_API_KEY": KEY,
            "DOPPEL_MAX_PARALLEL_SCENES": str(parallel),
            "DOPPEL_LLM_REQUESTS_PER_MINUTE": "100000",
            "DOPPEL_LLM_TOKENS_PER_MINUTE": "1000000000",
            "DOPPEL_LLM_EPISODE_MAX_TOKENS": "1000000000",
            "DOPPEL_LLM_EPISODE_MAX_COST_USD": "1000000",
        },
    )


async def _scene_phase(address: str, scenes: int) -> tuple[float, float]:
    """Seconds from the outline event to the last scene event of one fresh episode, and the
    seconds the whole episode took."""
    request = script_pb2.GenerateEpisodeRequest(
        show="Frasier", setting="Victorian London", scene_count=scenes, seed=next(_seed),
        writer="anthropic",
    )  # fmt: skip
    outline_at = last_scene_at = 0.0
    started = time.perf_counter()
    async with grpc.aio.insecure_channel(address) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        async for event in stub.GenerateEpisode(request, timeout=300):
            if event.stage == script_pb2.STAGE_OUTLINE:
                outline_at = time.perf_counter()
            elif event.stage == script_pb2.STAGE_SCENES:
                last_scene_at = time.perf_counter()
    return last_scene_at - outline_at, time.perf_counter() - started


async def parallel_figures(scale: Scale) -> list[Figure]:
    latency = scale.llm_latency_ms / 1000
    figures: list[Figure] = []
    services = ("cache", "scene", "script")
    with (
        LLMServer(latency=latency) as server,
        running(_llm_env(server, PARALLELISM), services=services) as par,
        running(_llm_env(server, 1), services=services) as seq,
    ):
        for scenes in SCENE_COUNTS:
            ideal = min(scenes, PARALLELISM)
            speedup = Figure(f"llm.speedup_n{scenes}", "x", is_ratio=True)
            efficiency = Figure(
                f"llm.parallel_efficiency_n{scenes}", "ratio", is_ratio=True,
                target={8: 0.9, 16: 0.85}.get(scenes),
                note=f"speedup / {ideal}; {scale.llm_latency_ms:.0f} ms a call, "
                f"max_parallel_scenes={PARALLELISM}",
            )  # fmt: skip
            critical = Figure(
                f"llm.episode_over_critical_path_n{scenes}", "ratio", is_ratio=True,
                higher_is_better=False, target=1.2 if scenes == 8 else None,
                note="whole parallel episode over its LLM critical path: one call a stage "
                "wave (outline, scenes, joke rewrites, revisions) at the provider's latency",
            )  # fmt: skip
            # Unmeasured: opens the connections a wave of N calls needs (kept 30 s), so the
            # figures are the steady state a busy replica runs in.
            await _scene_phase(par.settings.script_address, scenes)
            for _ in range(scale.repetitions):
                sequential, _ = await _scene_phase(seq.settings.script_address, scenes)
                before = len(server.received)
                parallel, par_total = await _scene_phase(par.settings.script_address, scenes)
                path = _critical_path(server.received[before:], latency)
                speedup.values.append(sequential / parallel)
                efficiency.values.append(sequential / parallel / ideal)
                critical.values.append(par_total / path)
            figures += [speedup, efficiency, critical]
    return figures


def _critical_path(calls: Sequence[Received], latency: float) -> float:
    """Seconds of provider latency an episode cannot avoid: each stage's calls in waves of
    PARALLELISM (the outline is one call; scenes, rewrites and revisions run in parallel)."""
    per_task = Counter(call.task for call in calls if call.status == 200)
    waves = sum(-(-count // PARALLELISM) for count in per_task.values())
    return max(1, waves) * latency


def _overhead_settings(server: LLMServer) -> Settings:
    return Settings(
        anthropic_base_url=server.anthropic_url,
        anthropic_api_key=KEY,
        llm_requests_per_minute=1_000_000,
        llm_tokens_per_minute=10**12,
        llm_episode_max_tokens=10**12,
        llm_episode_max_cost_usd=10**9,
    )


def _story(seed: int) -> StoryContext:
    show = catalog.find_show("Taxi")
    assert show is not None
    setting = catalog.resolve_setting("an underwater city")
    cast, relationships = procedural.transform_cast(show, setting, seed)
    return StoryContext(show, setting, cast, relationships, seed, scene_count=3)


async def overhead_figures(scale: Scale) -> list[Figure]:
    """Our writer against the bare SDK, alternating, on an instant server."""
    samples: list[float] = []
    with LLMServer(latency=0.0) as server:
        settings = _overhead_settings(server)
        telemetry = Telemetry(
            "bench", settings, span_exporter=InMemorySpanExporter(),
            metric_readers=[InMemoryMetricReader()],
        )  # fmt: skip
        writer = build_writers(settings, telemetry)["anthropic"]
        provider = AnthropicChat(KEY, server.anthropic_url, settings.llm_timeout_seconds)
        client = anthropic.AsyncAnthropic(base_url=server.anthropic_url, api_key=KEY, max_retries=0)
        for call in range(scale.overhead_calls + 5):
            context = _story(next(_seed))
            outline = procedural.write_outline(
                context.show, context.setting, list(context.cast), list(context.relationships),
                3, context.seed,
            )  # fmt: skip
            names = [c.name for c in context.cast]
            prompt = prompts.scene_request(names, outline, 0, [], context.seed, ())
            body = provider.body(
                ChatRequest(
                    model=settings.anthropic_model, instructions=prompts.universal(),
                    context=context_block(context), episode=prompt.episode,
                    messages=(("user", prompt.task),), max_tokens=settings.llm_max_output_tokens,
                    temperature=None, reply_schema=scene_schema(names),
                )
            )  # fmt: skip
            started = time.perf_counter()
            stream = await client.messages.create(**body, stream=True)
            async for _ in stream:
                pass
            direct = time.perf_counter() - started
            started = time.perf_counter()
            await writer.write_scene(context, outline, 0, [])
            ours = time.perf_counter() - started
            if call >= 5:  # The first calls warm connections and caches.
                samples.append((ours - direct) * 1000)
        await client.close()
        await provider.aclose()
        telemetry.shutdown()
    return _overhead(samples)


def _overhead(samples: Sequence[float]) -> list[Figure]:
    p50 = Figure(
        "llm.overhead_p50_ms",
        "ms",
        [percentile(samples, 50)],
        higher_is_better=False,
        target=2.0,
        note="our writer minus the bare SDK, same request, same server",
    )
    p99 = Figure("llm.overhead_p99_ms", "ms", [percentile(samples, 99)], higher_is_better=False,
                 target=10.0)  # fmt: skip
    spread = Figure("llm.overhead_samples_ms", "ms", list(samples), higher_is_better=False)
    return [p50, p99, spread]


async def run(scale: Scale) -> list[Figure]:
    return [*await parallel_figures(scale), *await overhead_figures(scale)]
