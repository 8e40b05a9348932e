"""A batch job survives SIGKILL of the script service: the job, its provider batch id and its
stage are in the library, so a new process resumes it and it completes once."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import grpc

from doppelganger.v1 import script_pb2_grpc
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.library import open_library
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from testkit import free_port
from testkit.llm_server import LLMServer
from tests.fakes.llm_support import TEST_KEY
from tests.integration.batch_support import submit, wait_for

STARTUP_SECONDS = 90.0


async def wait_serving(port: int) -> None:
    """Until the child answers (a cold start on a busy machine can take a while)."""
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        await asyncio.wait_for(channel.channel_ready(), STARTUP_SECONDS)


@contextmanager
def script_process(provider: LLMServer, cache_port: int, scene_port: int) -> Iterator[int]:
    """`python -m services.script` polling batches every 50 ms, claims of 1 s; SIGKILLed."""
    port = free_port()
    env = {
        **os.environ,
        "DOPPEL_SCRIPT_PORT": str(port),
        "DOPPEL_CACHE_TARGET": f"127.0.0.1:{cache_port}",
        "DOPPEL_SCENE_TARGET": f"127.0.0.1:{scene_port}",
        "ANTHROPIC_BASE_URL": provider.anthropic_url,
        "ANTHROPIC_API_KEY": TEST_KEY,
        "ANTHROPIC_MODEL": "claude-loopback",
        "DOPPEL_BATCH_POLL_SECONDS": "0.05",
        "DOPPEL_BATCH_CLAIM_SECONDS": "1",
        "DOPPEL_REFINEMENT_ROUNDS": "0",
        "OTEL_SDK_DISABLED": "true",
        "DOPPEL_LOG_LEVEL": "WARNING",
    }
    child = subprocess.Popen([sys.executable, "-m", "services.script"], env=env)
    try:
        yield port
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
        child.wait(10)
        assert child.returncode == -signal.SIGKILL


async def test_sigkill_while_the_batch_runs_then_a_new_process_completes_it_once(
    settings: Settings, redis_server: RedisServer
) -> None:
    base = settings.with_changes(redis_url=redis_server.url)
    cache = await create_cache_server(base, Telemetry("cache", base))
    scene = await create_scene_server(base, Telemetry("scene", base))
    try:
        with LLMServer() as provider:
            provider.batches.hold()
            with script_process(provider, cache.port, scene.port) as port:
                await wait_serving(port)
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = script_pb2_grpc.ScriptServiceStub(channel)
                    submitted = await submit(stub, scene_count=2, seed=180017)
                    await wait_for(stub, submitted.batch.id, {"in_progress"})
            # SIGKILLed, whatever it was doing; the provider finishes the batch meanwhile.
            polled = provider.batches.created()[0].retrieved
            provider.batches.release()
            with script_process(provider, cache.port, scene.port) as port:
                await wait_serving(port)
                async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                    stub = script_pb2_grpc.ScriptServiceStub(channel)
                    done = await wait_for(stub, submitted.batch.id, {"assembled", "failed"})
    finally:
        for server in (scene, cache):
            await server.stop(0)
    assert done.status == "assembled", done.error
    assert list(done.episode_ids) == [submitted.episode_id]
    batches = provider.batches.created()
    assert [len(b.results) for b in batches] == [1, 2] and batches[0].retrieved > polled
    library = await open_library(settings)
    try:
        history = await library.history(submitted.episode_id)
        assert await library.pending_batches() == []
    finally:
        await library.close()
    assert [draft.id for draft in history] == [submitted.episode_id]
