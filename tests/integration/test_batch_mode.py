"""Batch mode on real servers: the script service (real cache on Redis, real scene service, a
SQLite library) submits through the real anthropic and openai SDKs to the loopback provider's
batch endpoints, polls, and assembles the episode; a restart in the middle resumes the job and
it completes exactly once; failed items fall back to interactive calls, an expired batch fails
the job with its reason."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import grpc
import pytest

from doppelganger.v1 import (
    cache_pb2_grpc,
    scene_pb2_grpc,
    script_pb2,
)
from services.script import store
from services.script.batch_jobs import BatchJobs, BatchPoller, build_batch_runners
from services.script.library import batch_store, open_library
from services.script.pipeline import PipelineDeps, PipelineMetrics
from services.script.refinement import RefinementPolicy
from services.script.requests import RuntimeDefaults, validate_generate
from services.script.writers import build_writers
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import create_channel
from testkit.llm_server import ANTHROPIC_PATH, OPENAI_PATH, LLMServer
from tests.fakes.llm_support import CapturedTelemetry, captured_telemetry
from tests.integration.batch_support import (
    backing,
    batch_settings,
    claim_as_crashed_replica,
    script,
    submit,
    wait_for,
)
from tests.integration.llm_episode_support import request

Stage = script_pb2.Stage
PROVIDERS = [("anthropic", ANTHROPIC_PATH), ("openai", OPENAI_PATH)]
DEADLINE_SECONDS = 60.0


@asynccontextmanager
async def studio(provider: LLMServer, redis: RedisServer) -> AsyncIterator[Any]:
    """Cache, scene and script services on the loopback provider; the script stub."""
    async with backing(batch_settings(provider), redis) as config, script(config) as (_, stub):
        yield stub


def batch_settings_for_metrics() -> Settings:
    """Settings for a captured telemetry (only its meter and tracer are used)."""
    return Settings(telemetry_disabled=True)


def interactive(provider: LLMServer, path: str, task: str) -> int:
    return sum(1 for r in provider.calls(path) if r.task == task)


@pytest.mark.parametrize(("writer", "path"), PROVIDERS)
async def test_an_episode_is_written_through_the_provider_batch_api(
    redis_server: RedisServer, writer: str, path: str
) -> None:
    with LLMServer() as provider:
        async with studio(provider, redis_server) as stub:
            submitted = await submit(stub, writer=writer, scene_count=3, seed=180011)
            job = submitted.batch
            # The same request again while it runs: the same job, nothing sent twice.
            again = await submit(stub, writer=writer, scene_count=3, seed=180011)
            assert again.batch.id == job.id and again.episode_id == submitted.episode_id
            assert job.id.startswith("bj-") and job.provider == writer
            assert job.status == "submitted" and job.stage == "outline"
            assert job.requests == 1 and job.provider_batch_id
            done = await wait_for(stub, job.id, {"assembled", "failed"})
            assert done.status == "assembled", done.error
            assert done.stage == "done" and list(done.episode_ids) == [submitted.episode_id]
            episode = await stub.GetEpisode(
                script_pb2.GetEpisodeRequest(episode_id=submitted.episode_id), timeout=10
            )
    batches = provider.batches.created(writer)
    # One outline batch, then one batch with the three scenes; each answered once.
    assert [len(b.results) for b in batches] == [1, 3]
    assert done.provider_batch_id == batches[1].id
    # The outline and scenes came from the batches; only the finishing passes were interactive.
    assert interactive(provider, path, "outline") == 0
    assert interactive(provider, path, "scene") == 0
    assert [s.index for s in episode.scenes] == [0, 1, 2] and episode.writer == writer
    assert not episode.render_error and episode.page_count >= 1
    assert episode.usage.cost_usd > 0 and provider.violations == []
    # Who wrote each part: the outline and every scene by the writer (their usage counted).
    written = [(a.stage, a.scene_index) for a in episode.attempts if a.outcome == "ok"]
    assert ("outline", -1) in written and {("scene", i) for i in range(3)} <= set(written)
    assert all(a.writer == writer for a in episode.attempts)


async def test_a_restart_in_the_middle_resumes_the_job_and_it_completes_once(
    redis_server: RedisServer,
) -> None:
    """The outline batch is held at the provider while the first server polls it; that server
    stops, and the job is left claimed as a replica that crashed would leave it; a new server
    on the same library resumes the job once the claim runs out."""
    with LLMServer() as provider:
        provider.batches.hold()
        async with backing(batch_settings(provider), redis_server) as config:
            async with script(config) as (_, stub):
                submitted = await submit(stub, scene_count=2, seed=18005)
                job = await wait_for(stub, submitted.batch.id, {"in_progress"})
                assert job.stage == "outline"
            polled_before = provider.batches.created()[0].retrieved
            assert polled_before >= 1
            await claim_as_crashed_replica(config, job.id)
            provider.batches.release()
            async with script(config) as (_, stub):
                done = await wait_for(stub, submitted.batch.id, {"assembled", "failed"})
                assert done.status == "assembled", done.error
    # The second server polled the same provider batch (no second outline batch), and the
    # episode has exactly one draft.
    batches = provider.batches.created()
    assert [len(b.results) for b in batches] == [1, 2]
    assert batches[0].retrieved > polled_before
    library = await open_library(config)
    try:
        history = await library.history(submitted.episode_id)
        pending = await library.pending_batches()
    finally:
        await library.close()
    assert [draft.id for draft in history] == [submitted.episode_id]
    assert pending == []


async def test_failed_and_invalid_items_fall_back_to_interactive_calls(
    redis_server: RedisServer,
) -> None:
    """The outline item comes back invalid (repaired interactively), the first scene item
    errors (written interactively); the episode is still assembled."""
    with LLMServer() as provider:
        provider.batches.inject_items("invalid", "errored")
        async with studio(provider, redis_server) as stub:
            submitted = await submit(stub, scene_count=2, seed=18009)
            done = await wait_for(stub, submitted.batch.id, {"assembled", "failed"})
    assert done.status == "assembled", done.error
    assert done.failed == 1 and done.succeeded == 1  # the scene batch's counts
    # One interactive repair of the outline, one interactive scene (the errored item).
    assert interactive(provider, ANTHROPIC_PATH, "outline") == 1
    assert interactive(provider, ANTHROPIC_PATH, "scene") == 1


@pytest.mark.parametrize("writer", ["anthropic", "openai"])
async def test_an_expired_batch_fails_the_job_with_its_reason(
    redis_server: RedisServer, writer: str
) -> None:
    with LLMServer() as provider:
        provider.batches.fail_next_batch("expired")
        async with studio(provider, redis_server) as stub:
            submitted = await submit(stub, writer=writer, scene_count=2, seed=18003)
            done = await wait_for(stub, submitted.batch.id, {"assembled", "failed"})
            with pytest.raises(grpc.aio.AioRpcError) as missing:
                await stub.GetEpisode(
                    script_pb2.GetEpisodeRequest(episode_id=submitted.episode_id), timeout=10
                )
    assert done.status == "failed" and done.stage == "outline"
    assert "expired" in done.error and done.provider_batch_id in done.error
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


async def test_batch_refusals_name_the_field(redis_server: RedisServer) -> None:
    with LLMServer() as provider:
        async with studio(provider, redis_server) as stub:
            with pytest.raises(grpc.aio.AioRpcError) as procedural:
                await submit(stub, writer="procedural")
            with pytest.raises(grpc.aio.AioRpcError) as empty:
                await stub.GetBatch(script_pb2.GetBatchRequest(batch_id=""), timeout=10)
            with pytest.raises(grpc.aio.AioRpcError) as unknown:
                await stub.GetBatch(script_pb2.GetBatchRequest(batch_id="bj-nope"), timeout=10)
    assert procedural.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch" in procedural.value.details() and "procedural" in procedural.value.details()
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "batch_id" in empty.value.details()
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    assert provider.batches.created() == []


async def test_two_replicas_on_one_library_complete_a_job_once(redis_server: RedisServer) -> None:
    """Both replicas' pollers see the job; the claims let one advance it at a time."""
    with LLMServer() as provider:
        async with (
            backing(batch_settings(provider), redis_server) as config,
            script(config) as (_, first),
            script(config) as (_, second),
        ):
            submitted = await submit(first, scene_count=2, seed=180021)
            done = await wait_for(second, submitted.batch.id, {"assembled", "failed"})
            library = await open_library(config)
            try:
                history = await library.history(submitted.episode_id)
            finally:
                await library.close()
    assert done.status == "assembled", done.error
    assert [len(b.results) for b in provider.batches.created()] == [1, 2]
    assert [draft.id for draft in history] == [submitted.episode_id]


@asynccontextmanager
async def season_jobs(config: Settings, captured: CapturedTelemetry) -> AsyncIterator[BatchJobs]:
    """BatchJobs as the season command's replica builds them (no script server running)."""
    telemetry = captured.telemetry
    library = await open_library(config)
    writers = build_writers(config, telemetry)
    runtime = RuntimeDefaults(config.episode_minutes * 60.0, config.scene_seconds)
    async with (
        create_channel(config.cache_address, telemetry, config) as cache_channel,
        create_channel(config.scene_address, telemetry, config) as scene_channel,
    ):
        deps = PipelineDeps(
            cache=store.SoftCache(cache_pb2_grpc.CacheServiceStub(cache_channel), 2.0),
            scenes=scene_pb2_grpc.SceneServiceStub(scene_channel),
            writers=writers,
            telemetry=telemetry,
            max_parallel_scenes=config.max_parallel_scenes,
            rpc_timeout=config.rpc_timeout_seconds,
            policy=RefinementPolicy(
                rounds=config.refinement_rounds,
                threshold=config.validation_threshold,
                parallel=config.max_parallel_scenes,
            ),
            metrics=PipelineMetrics.create(telemetry.meter),
            library=library,
        )
        jobs = BatchJobs(
            deps, library, build_batch_runners(config),
            lambda r: validate_generate(r, runtime, config.default_writer, writers.keys()),
            claim_seconds=1.0,
        )  # fmt: skip
        try:
            yield jobs
        finally:
            for runner in jobs.runners.values():
                await runner.aclose()
            for writer in writers.values():
                close = getattr(writer, "aclose", None)
                if close is not None:
                    await close()
            await library.close()


async def test_the_season_seam_submits_several_episodes_as_one_job(
    redis_server: RedisServer,
) -> None:
    """`submit_episodes`: one outline batch with both outlines, one scene batch with every
    scene, both drafts stored; the batch metrics count them."""
    captured = captured_telemetry(batch_settings_for_metrics())
    with LLMServer() as provider:
        async with (
            backing(batch_settings(provider), redis_server) as config,
            season_jobs(config, captured) as jobs,
        ):
            requests = [
                request(writer="openai", scene_count=2, seed=seed) for seed in (180101, 180102)
            ]
            submitted = await jobs.submit_episodes(requests, caller="season-test")
            assert submitted.stage == "outline" and submitted.provider == "openai"
            deadline = time.monotonic() + DEADLINE_SECONDS
            while (job := await jobs.get(submitted.id)).status not in ("assembled", "failed"):
                assert time.monotonic() < deadline, job.status
                await jobs.poll_once()
            drafts = [await jobs.library.get_draft(i) for i in job.episode_ids]
    assert job.status == "assembled", job.error
    assert list(job.episode_ids) == submitted.request["episode_ids"]
    assert len(set(job.episode_ids)) == 2
    assert [len(b.results) for b in provider.batches.created("openai")] == [2, 4]
    assert all(len(d.episode.scenes) == 2 and d.info.kind == "generated" for d in drafts)
    items = {
        p.attributes["doppel.batch.outcome"]: p.value
        for p in captured.metric_points("doppel.batch.items")
    }
    assert items == {"batch": 6, "interactive": 0}  # 2 outlines and 4 scenes, all from batches
    job_counts = {
        p.attributes["doppel.batch.outcome"]: p.value
        for p in captured.metric_points("doppel.batch.jobs")
    }
    assert job_counts == {"submitted": 1, "assembled": 1}


async def test_parts_written_already_are_not_sent_again(redis_server: RedisServer) -> None:
    """An episode written interactively, then asked for in batch mode: nothing goes to the
    provider's batch API (the outline and scenes are cached, the draft stored), and the job
    reports the stored draft."""
    with LLMServer() as provider:
        async with studio(provider, redis_server) as stub:
            first = [e async for e in stub.GenerateEpisode(request(scene_count=2, seed=180041))]
            stored = first[-1].episode
            submitted = await submit(stub, scene_count=2, seed=180041)
            assert submitted.episode_id == stored.id and submitted.batch.stage == "assembling"
            done = await wait_for(stub, submitted.batch.id, {"assembled", "failed"})
    assert done.status == "assembled", done.error
    assert list(done.episode_ids) == [stored.id] and not done.provider_batch_id
    assert provider.batches.created() == []


async def test_a_batch_is_answered_only_after_its_delay(redis_server: RedisServer) -> None:
    """The loopback's `batch_delay`: polled meanwhile, the batch stays in progress; shortened,
    it ends and the job goes on."""
    with LLMServer(batch_delay=3600.0) as provider:
        async with studio(provider, redis_server) as stub:
            submitted = await submit(stub, writer="openai", scene_count=2, seed=18002)
            waiting = await wait_for(stub, submitted.batch.id, {"in_progress"})
            batch = provider.batches.created()[0]
            assert waiting.stage == "outline" and not provider.batches.ready(batch)
            provider.batches.delay = 0.0
            done = await wait_for(stub, submitted.batch.id, {"assembled", "failed"})
    assert done.status == "assembled", done.error
    assert [len(b.results) for b in provider.batches.created()] == [1, 2]


@pytest.mark.parametrize("writer", ["anthropic", "openai"])
async def test_a_batch_the_provider_no_longer_knows_fails_the_job(
    redis_server: RedisServer, writer: str
) -> None:
    with LLMServer() as provider:
        provider.batches.hold()
        async with studio(provider, redis_server) as stub:
            submitted = await submit(stub, writer=writer, scene_count=2, seed=18008)
            provider.batches.batches.clear()  # Deleted at the provider (404 from now on).
            done = await wait_for(stub, submitted.batch.id, {"assembled", "failed"})
    assert done.status == "failed" and done.stage == "outline"
    assert "does not know batch" in done.error and submitted.batch.provider_batch_id in done.error


async def test_a_stopping_poller_gives_up_its_claims_at_once(redis_server: RedisServer) -> None:
    """A poller stopped just after claiming a job (its step cancelled before it began) leaves no
    claim behind: another replica takes the job at once, not after DOPPEL_BATCH_CLAIM_SECONDS."""
    captured = captured_telemetry(batch_settings_for_metrics())
    with LLMServer() as provider:
        provider.batches.hold()
        async with (
            backing(batch_settings(provider), redis_server) as config,
            season_jobs(config, captured) as jobs,
        ):
            requests = [request(writer="openai", scene_count=2, seed=180301)]
            job = await jobs.submit_episodes(requests, caller="stop-test")
            assert await batch_store.claim(jobs.library, job.id, jobs.owner, 600.0)
            assert not await batch_store.claim(jobs.library, job.id, "another-replica", 1.0)
            await BatchPoller(jobs, interval=3600.0).stop()
            assert await batch_store.claim(jobs.library, job.id, "another-replica", 1.0)
