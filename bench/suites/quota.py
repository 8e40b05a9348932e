"""One provider quota shared by five script replicas (issue 18's acceptance, as a figure).

Redis, the cache and scene services, and five `python -m services.script` replicas, all real
processes, on one provider key against the loopback provider, which allows L requests per window
and answers 429 above it. Clients keep every replica busy (a closed loop: each starts a new
episode when one ends) for a fixed time. Figures, over repetitions:

- quota.use: the share of the quota the replicas used together while busy, the requests the
  provider accepted in the steady part of the run over L per window (goal: at least 0.9). The
  shared limiter holds each request's slot until one window after it finished, so a provider
  latency of d costs about d / (window + d).
- quota.refused_429: the provider's 429 answers (goal: none).
- quota.max_in_window: the most requests in any window, over L (never above 1).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

import grpc

from bench.measure import Figure
from bench.stacks import Replica, running, script_replicas, stack_env
from bench.suites.common import Scale
from doppel.stack import Stack
from doppelganger.v1 import script_pb2, script_pb2_grpc
from testkit.llm_server import LLMServer, Received, max_in_window

KEY = "sk-bench-shared-quota"
REPLICAS = 5
REQUESTS_PER_WINDOW = 4
WINDOW_SECONDS = 1.0
LATENCY_SECONDS = 0.02
CLIENTS_PER_REPLICA = 2
_seed = iter(range(20_000_000, 30_000_000))


def replica_env(
    stack: Stack,
    requests: int,
    window: float,
    replicas_hint: int = 1,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The script replicas' environment: the stack's cache and scene services, the anthropic
    writer on one key, L requests per window (as the provider), no budget in the way."""
    env = stack_env(
        telemetry=False,
        extra={
            "DOPPEL_CACHE_TARGET": stack.settings.cache_address,
            "DOPPEL_SCENE_TARGET": stack.settings.scene_address,
            "ANTHROPIC_API_KEY": KEY,
            "DOPPEL_ANTHROPIC_MODEL": "claude-loopback",
            "DOPPEL_LLM_REQUESTS_PER_MINUTE": str(round(requests * 60 / window)),
            "DOPPEL_LLM_RATE_WINDOW_SECONDS": str(window),
            "DOPPEL_LLM_TOKENS_PER_MINUTE": "1000000000",
            "DOPPEL_LLM_REPLICAS_HINT": str(replicas_hint),
            "DOPPEL_LLM_EPISODE_MAX_TOKENS": "0",
            "DOPPEL_LLM_EPISODE_MAX_COST_USD": "0",
            "DOPPEL_LLM_MAX_QUEUE_SECONDS": "300",
            "DOPPEL_LLM_BACKOFF_SECONDS": "0.05",
            "DOPPEL_LLM_PRICES": "*=3/15",
            "DOPPEL_REFINEMENT_ROUNDS": "0",
            "DOPPEL_MAX_PARALLEL_SCENES": "4",
        },
    )
    env.update(extra or {})
    return env


def each_replica(server: LLMServer) -> Callable[[int], dict[str, str]]:
    """Replica i reaches the provider as client `replica-i` (same key, same limit)."""
    return lambda index: {"ANTHROPIC_BASE_URL": server.anthropic_url_for(f"replica-{index}")}


@contextmanager
def shared_quota_stack(
    server: LLMServer,
    redis_url: str,
    replicas: int,
    requests: int,
    window: float,
    replicas_hint: int = 1,
) -> Iterator[tuple[Stack, list[Replica]]]:
    """The cache and scene services on `redis_url`, and `replicas` script replicas."""
    with running(stack_env(telemetry=False, extra={"REDIS_URL": redis_url}),
                 services=("cache", "scene")) as stack:  # fmt: skip
        env = replica_env(stack, requests, window, replicas_hint)
        with script_replicas(replicas, env, each_replica(server)) as started:
            yield stack, started


def episode_request(scene_count: int = 2) -> script_pb2.GenerateEpisodeRequest:
    return script_pb2.GenerateEpisodeRequest(
        show="Cheers", setting="a lunar mining station", scene_count=scene_count,
        seed=next(_seed), writer="anthropic",
    )  # fmt: skip


async def closed_loop(
    addresses: list[str], clients_per_replica: int, until: Callable[[], bool]
) -> list[str]:
    """Clients that each write one new episode after another on their replica until `until()`;
    returns how each episode ended (OK or a status code name)."""
    outcomes: list[str] = []

    async def client(address: str) -> None:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            while not until():
                try:
                    async for _ in stub.GenerateEpisode(episode_request(), timeout=300):
                        pass
                    outcomes.append("OK")
                except grpc.aio.AioRpcError as exc:
                    outcomes.append(exc.code().name)

    await asyncio.gather(
        *(client(address) for address in addresses for _ in range(clients_per_replica))
    )
    return outcomes


def quota_use(
    received: list[Received], requests: int, window: float, start: float, end: float
) -> float:
    """Requests the provider accepted in [start, end) over what L per window allows there."""
    accepted = [r for r in received if r.status == 200 and start <= r.at < end]
    return len(accepted) / (requests * (end - start) / window)


async def measure_once(server: LLMServer, addresses: list[str], seconds: float) -> float:
    """One busy run; the quota's use between two windows in and the end of the load."""
    before = len(server.received)
    started = time.monotonic()
    stop_at = started + seconds
    outcomes = await closed_loop(
        addresses, CLIENTS_PER_REPLICA, lambda: time.monotonic() >= stop_at
    )
    if any(outcome != "OK" for outcome in outcomes):
        raise RuntimeError(f"episodes failed under a shared quota: {sorted(set(outcomes))}")
    run = server.received[before:]
    return quota_use(run, REQUESTS_PER_WINDOW, WINDOW_SECONDS, started + 2 * WINDOW_SECONDS,
                     stop_at)  # fmt: skip


async def run(scale: Scale) -> list[Figure]:
    from shared.redis_server import RedisServer

    seconds = 10.0 if scale.repetitions <= 3 else 20.0
    use = Figure(
        "quota.use", "ratio", is_ratio=True, target=0.9,
        note=f"{REPLICAS} script replicas on one key, provider limit {REQUESTS_PER_WINDOW} "
        f"per {WINDOW_SECONDS:g} s, {LATENCY_SECONDS * 1000:.0f} ms a call, {seconds:.0f} s busy",
    )  # fmt: skip
    refused = Figure("quota.refused_429", "requests", higher_is_better=False, target=0.0)
    most = Figure(
        "quota.max_in_window", "ratio", higher_is_better=False, target=1.0,
        note="most requests the provider saw in any window, over its limit",
    )  # fmt: skip
    with (
        RedisServer() as redis,
        LLMServer(
            requests_per_window=REQUESTS_PER_WINDOW, window=WINDOW_SECONDS, latency=LATENCY_SECONDS
        ) as server,  # fmt: skip
        shared_quota_stack(server, redis.url, REPLICAS, REQUESTS_PER_WINDOW, WINDOW_SECONDS) as (
            _,
            replicas,
        ),  # fmt: skip
    ):
        addresses = [replica.address for replica in replicas]
        for _ in range(scale.repetitions):
            before = len(server.received)
            use.values.append(await measure_once(server, addresses, seconds))
            run_calls = server.received[before:]
            refused.values.append(float(sum(1 for r in run_calls if r.status == 429)))
            peak = max_in_window((r.at for r in run_calls if r.status == 200), WINDOW_SECONDS)
            most.values.append(peak / REQUESTS_PER_WINDOW)
    return [use, refused, most]
