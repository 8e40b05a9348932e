"""What a 22-minute episode costs in tokens and USD, and how much of its input the prompt cache
serves (issue 18's acceptance, as figures).

The real stack (Redis, cache, scene and script services as processes) writes one 11-scene episode
(11 x 120 s = 22 minutes) with each LLM writer against the loopback provider, which tokenizes at
3.5 characters a token, keeps a prompt cache as each provider does (Anthropic at the request's
breakpoints, OpenAI on repeated 128-token prefixes, both from 1,024 tokens) and reports the
usage. Prices are the configured ones (DOPPEL_LLM_PRICES, the configured models
DOPPEL_ANTHROPIC_MODEL / DOPPEL_OPENAI_MODEL). Figures per writer, each over repetitions:

- cost.<writer>.input_tokens, .cached_tokens, .output_tokens: the episode's, every call (outline,
  scenes, continuity revisions, punch-ups) counted.
- cost.<writer>.usd: at the configured prices, cache writes and reads at their factors.
- cost.<writer>.cache_share: of the input tokens of every call after the first scene call, the
  share read from the prompt cache (goal: at least 0.8).

The loopback cache is written when a request arrives, so scenes written in parallel already
share it; a real provider writes it when the first response starts, so a first wave of parallel
scenes may each pay a cache write (a few percent more, once per episode).
"""

from __future__ import annotations

import os

import grpc

from bench.measure import Figure
from bench.stacks import running, stack_env
from bench.suites.common import Scale
from doppelganger.v1 import script_pb2, script_pb2_grpc
from services.script.llm.budget import Prices, Usage
from shared.config import Settings
from testkit.llm_server import LLMServer, Received

KEY = "sk-bench-cost"
SCENES = 11  # x 120 s a scene = 22 minutes
WRITERS = ("anthropic", "openai")
_seed = iter(range(40_000_000, 50_000_000))


def _env(server: LLMServer, settings: Settings) -> dict[str, str]:
    return stack_env(
        telemetry=False,
        extra={
            "ANTHROPIC_BASE_URL": server.anthropic_url,
            "ANTHROPIC_API_KEY": KEY,
            "OPENAI_BASE_URL": server.openai_url,
            "OPENAI_API_KEY": KEY,
            "DOPPEL_ANTHROPIC_MODEL": settings.anthropic_model,
            "DOPPEL_OPENAI_MODEL": settings.openai_model,
            "DOPPEL_LLM_REQUESTS_PER_MINUTE": "100000",
            "DOPPEL_LLM_TOKENS_PER_MINUTE": "1000000000",
            "DOPPEL_LLM_EPISODE_MAX_TOKENS": "1000000000",
            "DOPPEL_LLM_EPISODE_MAX_COST_USD": "1000000",
        },
    )


async def _episode(address: str, writer: str) -> script_pb2.GenerateEpisodeEvent:
    request = script_pb2.GenerateEpisodeRequest(
        show="Frasier", setting="Victorian London", scene_count=SCENES, seed=next(_seed),
        writer=writer,
    )  # fmt: skip
    async with grpc.aio.insecure_channel(address) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        events = [event async for event in stub.GenerateEpisode(request, timeout=600)]
    return events[-1]


def episode_figures(calls: list[Received]) -> tuple[int, int, int, int, float]:
    """(input, cached, cache writes, output) tokens of an episode's calls, and the cache share
    of the calls after the first scene call."""
    ordered = sorted((c for c in calls if c.status == 200), key=lambda c: c.at)
    first_scene = next((i for i, c in enumerate(ordered) if c.task == "scene"), len(ordered))
    later = ordered[first_scene + 1 :]
    later_input = sum(c.input_tokens for c in later)
    share = sum(c.cached_tokens for c in later) / later_input if later_input else 0.0
    return (
        sum(c.input_tokens for c in ordered),
        sum(c.cached_tokens for c in ordered),
        sum(c.cache_creation_tokens for c in ordered),
        sum(c.output_tokens for c in ordered),
        share,
    )


def usd(
    model: str, prices: Prices, input_tokens: int, cached: int, created: int, out: int
) -> float:
    usage = Usage(
        input_tokens=input_tokens - cached - created,
        output_tokens=out,
        cache_creation_tokens=created,
        cache_read_tokens=cached,
    )
    return prices.cost(model, usage)


async def run(scale: Scale) -> list[Figure]:
    settings = Settings.from_env(dict(os.environ))
    prices = Prices(settings.llm_prices)
    models = {"anthropic": settings.anthropic_model, "openai": settings.openai_model}
    values: dict[str, list[float]] = {}
    services = ("cache", "scene", "script")
    with LLMServer(latency=0.0) as server, running(_env(server, settings), services) as stack:
        for _ in range(max(1, scale.repetitions // 2)):
            for writer in WRITERS:
                seen = len(server.received)
                done = await _episode(stack.settings.script_address, writer)
                assert done.stage == script_pb2.STAGE_DONE, done.message
                calls = server.received[seen:]
                tokens_in, cached, created, out, share = episode_figures(calls)
                figures = {
                    "input_tokens": tokens_in,
                    "cached_tokens": cached,
                    "output_tokens": out,
                    "usd": usd(models[writer], prices, tokens_in, cached, created, out),
                    "cache_share": share,
                }
                for name, value in figures.items():
                    values.setdefault(f"cost.{writer}.{name}", []).append(float(value))
    result = []
    for name, measured in values.items():
        unit = {"usd": "USD", "cache_share": "ratio"}.get(name.rsplit(".", 1)[1], "tokens")
        share = name.endswith("cache_share")
        result.append(
            Figure(
                name, unit, measured, higher_is_better=share, is_ratio=share,
                target=0.8 if share else None,
                note=f"a 22-minute episode ({SCENES} scenes) at the configured prices"
                if not share else "input tokens read from the prompt cache after the first scene",
            )
        )  # fmt: skip
    return result
