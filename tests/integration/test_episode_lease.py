"""One generation per episode, spending caps and resumed usage through the real script service
(in-process, with the real cache service on Redis, the scene service and the loopback provider).

`doppel generate` runs in a worker thread (it calls `asyncio.run` itself) and finds the script
service through the environment, as it would from a shell.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from doppel import cli
from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from shared.config import Settings
from shared.redis_server import RedisServer
from testkit import in_process_stack
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
from tests.fakes.llm_support import generate_retrying, llm_settings

Stage = script_pb2.Stage


@asynccontextmanager
async def studio(config: Settings, redis: RedisServer) -> AsyncIterator[str]:
    """Cache, scene and script services; yields the script service's address."""
    base = config.with_changes(redis_url=redis.url, script_port=0, scene_port=0, cache_port=0)
    async with in_process_stack(base) as stack:
        yield stack.script_target


def request(seed: int, scene_count: int = 2) -> script_pb2.GenerateEpisodeRequest:
    return script_pb2.GenerateEpisodeRequest(
        show="Cheers", setting="a lunar mining station", scene_count=scene_count, seed=seed,
        writer="anthropic",
    )  # fmt: skip


async def test_doppel_generate_waits_for_an_identical_request_and_gets_its_episode(
    settings: Settings,
    redis_server: RedisServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seed = random.randrange(10**9)
    with LLMServer(latency=0.3) as provider:
        config = llm_settings(provider, refinement_rounds=0, grace_seconds=settings.grace_seconds)
        async with studio(config, redis_server) as address:
            monkeypatch.setenv("DOPPEL_SCRIPT_TARGET", address)
            monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
            async with grpc.aio.insecure_channel(address) as channel:
                first = script_pb2_grpc.ScriptServiceStub(channel).GenerateEpisode(
                    request(seed), timeout=120
                )
                assert (await first.read()).stage == Stage.STAGE_ACCEPTED  # It holds the lease.
                argv = ["generate", "--show", "Cheers", "--setting", "a lunar mining station",
                        "--scenes", "2", "--seed", str(seed), "--writer", "anthropic",
                        "--out", str(tmp_path)]  # fmt: skip
                code = asyncio.create_task(asyncio.to_thread(cli.main, argv))
                events = []
                while (event := await first.read()) is not grpc.aio.EOF:
                    events.append(event)
                assert await code == 0
    output = capsys.readouterr()
    assert "being written for an identical request" in output.err  # Told, then it retried.
    json_path = Path(cli_printed(output.out)["json"])
    written = json_format.Parse(json_path.read_text(), episode_pb2.Episode())
    assert written.id == events[-1].episode.id
    assert written.fountain == events[-1].episode.fountain
    assert [r.task for r in provider.calls(ANTHROPIC_PATH)].count("outline") == 1


def cli_printed(output: str) -> dict[str, str]:
    return dict(line.split(maxsplit=1) for line in output.splitlines() if " " in line.strip())


async def test_a_caller_over_its_cap_gets_resource_exhausted_with_a_retry_hint(
    settings: Settings, redis_server: RedisServer
) -> None:
    with LLMServer() as provider:
        config = llm_settings(provider, llm_caller_tokens_per_hour=30_000,
                              grace_seconds=settings.grace_seconds)  # fmt: skip
        async with (
            studio(config, redis_server) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            token = f"caller-{random.randrange(10**9)}"
            metadata = (("authorization", f"Bearer {token}"),)
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                for _ in range(5):  # Each call reserves max_tokens (4096) and more.
                    seed = random.randrange(10**9)
                    call = stub.GenerateEpisode(request(seed, 3), timeout=60, metadata=metadata)
                    [event async for event in call]
            other = (("authorization", f"Bearer {token}-other"),)
            call = stub.GenerateEpisode(request(random.randrange(10**9), 1), metadata=other)
            events = [event async for event in call]  # Another caller has its own cap.
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "DOPPEL_LLM_CALLER_TOKENS_PER_HOUR" in (refused.value.details() or "")
    assert token not in (refused.value.details() or "")  # Only a fingerprint, never the token.
    hints = [v for k, v in refused.value.trailing_metadata() or () if k == "retry-after-ms"]
    assert hints and 0 < int(hints[0]) <= 3_600_000
    assert events[-1].stage == Stage.STAGE_DONE


async def test_a_resumed_episode_counts_the_parts_an_interrupted_run_wrote(
    settings: Settings, redis_server: RedisServer
) -> None:
    message = request(random.randrange(10**9), scene_count=4)
    message.request_id = f"resume-{message.seed}"
    with LLMServer(latency=0.1) as provider:
        config = llm_settings(provider, refinement_rounds=0, max_parallel_scenes=1,
                              grace_seconds=settings.grace_seconds)  # fmt: skip
        async with (
            studio(config, redis_server) as address,
            grpc.aio.insecure_channel(address) as channel,
        ):
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            call = stub.GenerateEpisode(message, timeout=60)
            async for event in call:
                if event.HasField("scene"):
                    break  # The outline and a scene are written and stored.
            call.cancel()
            interrupted = len(provider.calls(ANTHROPIC_PATH, status=200))
            events, _ = await generate_retrying(stub, message, timeout=60)
    episode = events[-1].episode
    resumed = provider.calls(ANTHROPIC_PATH, status=200)[interrupted:]
    assert "outline" not in [r.task for r in resumed]  # The outline came from the cache...
    written = {(a.stage, a.scene_index) for a in episode.attempts if a.outcome == "ok"}
    assert ("outline", -1) in written  # ...and its record with it...
    assert episode.usage.calls > len(resumed)  # ...and what it cost.
