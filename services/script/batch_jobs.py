"""Batch mode: episodes written through a provider batch (half price), kept in the library as a
batch job, polled, resumed after a restart and assembled exactly once.

A job holds one or more GenerateEpisode requests (one for `doppel generate --batch`, a season's
for `submit_episodes`) and goes through stages:

  outline     one provider batch with every episode's outline request (skipped for episodes
              whose request carries its outline);
  scenes      the outlines written from those answers (checked, repaired interactively if
              invalid), then one batch with every scene of every episode;
  assembling  the pipeline runs as usual on the batch's answers: the continuity, comedy and
              refinement passes call the provider interactively; each draft is stored;
  done        status `completed`, the drafts' ids in the job.

Requests are built by the LLM writer itself (batch_caller.py), so each batch item is the body
the interactive path would send; answers are checked as interactive replies are. The job, its
provider batch id and its answers are in the library; a poller (`BatchPoller`, started with the
script service) claims each unfinished job (batch_store.claim), so after a restart, or on
another replica, a job resumes where it was and no stage is submitted twice, no draft stored
twice. A batch that ends without answers (expired) or an item whose interactive fallback fails
too ends the job `failed` with the reason.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from doppelganger.v1 import episode_pb2, library_pb2, script_pb2
from services.script import season_store, store
from services.script.cards import feeding_summaries, scene_view
from services.script.library import Conflict, Library, LibraryError, NotFound
from services.script.library import batch_store as jobs_store
from services.script.library.records import BatchRecord
from services.script.llm.batch import (
    AnthropicBatches,
    BatchGone,
    BatchItem,
    BatchRunner,
    ItemResult,
    OpenAIBatches,
)
from services.script.llm.batch_caller import BatchCaller, Deferred, batch_writer, prices_of
from services.script.llm.budget import spending_caller
from services.script.llm.caller import client_deadline
from services.script.llm.provenance import OUTLINE, SCENE, collect_provenance
from services.script.pipeline import EpisodePipeline, PipelineDeps, scene_key, stored_episode
from services.script.requests import EpisodeOrder
from services.script.stored_orders import order_from_json, order_to_json
from services.script.writing import WriterError
from shared.config import Settings

log = logging.getLogger(__name__)

OUTLINE_STAGE, SCENES_STAGE, ASSEMBLING, DONE = "outline", "scenes", "assembling", "done"
# The library's status words as GetBatch reports them (BatchJob.status).
_STATUS_WORDS = {"completed": "assembled", "expired": "failed", "cancelled": "failed"}

OrderMaker = Callable[[script_pb2.GenerateEpisodeRequest], EpisodeOrder]


class BatchUnavailable(Exception):
    """The writer asked for has no batch API here (INVALID_ARGUMENT)."""


def build_batch_runners(settings: Settings) -> dict[str, BatchRunner]:
    """A batch runner per configured provider, by the LLM writer's name."""
    runners: dict[str, BatchRunner] = {}
    timeout = settings.llm_timeout_seconds
    if settings.anthropic_api_key or settings.anthropic_base_url:
        runners["anthropic"] = AnthropicBatches(
            settings.anthropic_api_key, settings.anthropic_base_url, timeout
        )
    if settings.openai_api_key or settings.openai_base_url:
        runners["openai"] = OpenAIBatches(
            settings.openai_api_key, settings.openai_base_url, timeout
        )
    return runners


def check_batch_writer(writer: str, batch_writers: Collection[str]) -> None:
    """BatchUnavailable (its message names the field) unless `writer` has a batch API here."""
    if writer not in batch_writers:
        have = ", ".join(sorted(batch_writers)) or "none configured"
        raise BatchUnavailable(f"batch: writer {writer!r} has no batch API (batch writers: {have})")


def _encode(request: script_pb2.GenerateEpisodeRequest) -> str:
    return base64.b64encode(request.SerializeToString(deterministic=True)).decode()


def _decode(text: str) -> script_pb2.GenerateEpisodeRequest:
    return script_pb2.GenerateEpisodeRequest.FromString(base64.b64decode(text))


@dataclass
class BatchJobs:
    """Submits, advances and reports batch jobs for one script replica."""

    deps: PipelineDeps
    library: Library
    runners: Mapping[str, BatchRunner]
    make_order: OrderMaker
    claim_seconds: float = 120.0
    episode_timeout: float = 900.0
    owner: str = dataclasses.field(default_factory=lambda: "poller-" + secrets.token_hex(6))

    def __post_init__(self) -> None:
        meter = self.deps.telemetry.meter
        self._jobs = meter.create_counter(
            "doppel.batch.jobs", unit="{job}",
            description="Batch jobs by outcome (submitted, assembled, failed) and provider.",
        )  # fmt: skip
        self._items = meter.create_counter(
            "doppel.batch.items", unit="{request}",
            description="Outline and scene calls of batch jobs by how they were answered: "
            "batch (half price) or interactive (a repair, a failed item).",
        )  # fmt: skip

    def _count_items(self, provider: str, caller: BatchCaller) -> None:
        labels = {"gen_ai.provider.name": provider}
        self._items.add(caller.tally.answered, {**labels, "doppel.batch.outcome": "batch"})
        self._items.add(caller.tally.interactive, {**labels, "doppel.batch.outcome": "interactive"})

    # --- submission ------------------------------------------------------------------------

    def check(self, order: EpisodeOrder) -> None:
        """BatchUnavailable unless the order's writer is an LLM writer with a batch API."""
        check_batch_writer(order.writer, self.runners)

    async def submit_episodes(
        self,
        requests: Sequence[script_pb2.GenerateEpisodeRequest],
        *,
        caller: str = "",
        series_id: str | None = None,
    ) -> BatchRecord:
        """One job (one provider batch per stage) for these episodes, all by one writer: the
        first batch is submitted, then the job is stored in one transaction. An unfinished job
        for the same episodes is returned instead of a new one."""
        if not requests:
            raise ValueError("a batch job needs at least one episode")
        orders = [self.make_order(request) for request in requests]
        kept = {"episodes": [_encode(r) for r in requests]}
        return await self._submit(orders, kept, caller, series_id)

    async def submit_season(
        self,
        series_id: str,
        planned: Sequence[tuple[int, EpisodeOrder]],
        *,
        caller: str = "",
    ) -> BatchRecord:
        """One job for a season's episodes, outlined already (WriteSeason with batch=true):
        their scenes go in one batch; when they are assembled each draft is stored with its
        number and the bible grows, in episode order (season_store.py)."""
        if not planned:
            raise ValueError("a batch job needs at least one episode")
        orders = [order for _, order in planned]
        kept = {
            "orders": [order_to_json(order) for order in orders],
            "season": {"numbers": [number for number, _ in planned]},
        }
        return await self._submit(orders, kept, caller, series_id)

    async def _submit(
        self,
        orders: Sequence[EpisodeOrder],
        kept: dict[str, Any],
        caller: str,
        series_id: str | None,
    ) -> BatchRecord:
        writers = {order.writer for order in orders}
        if len(writers) != 1:
            raise BatchUnavailable("batch: every episode of a batch job needs the same writer")
        self.check(orders[0])
        state: dict[str, Any] = {"results": {}, "batches": [], "episode_ids": [],
                                 "interactive": 0}  # fmt: skip
        job_id = jobs_store.new_job_id()
        request = {
            "writer": orders[0].writer,
            "caller": caller,
            **kept,
            "episode_ids": [EpisodePipeline(self._deps_for(o), o).episode_id for o in orders],
        }
        for pending in await self.library.pending_batches():
            if pending.request.get("episode_ids") == request["episode_ids"]:
                return pending  # The same episodes are on their way: one job, paid once.
        stage, items = await self._next_batch(OUTLINE_STAGE, orders, state)
        if not items:  # Every outline came with its request: straight to the scenes.
            stage, items = await self._next_batch(SCENES_STAGE, orders, state)
        runner = self.runners[orders[0].writer]
        provider_batch_id = None
        if items:
            provider_batch_id = await runner.submit(items, {"doppel_job": job_id, "stage": stage})
            state["batches"].append(provider_batch_id)
        else:  # Every outline and scene is written already: nothing to send, only to assemble.
            stage = ASSEMBLING
        state["requests"] = len(items)
        submitted = await jobs_store.submit_job(
            self.library, job_id=job_id, provider=runner.name,
            provider_batch_id=provider_batch_id, request=request, result=state, stage=stage,
            series_id=series_id,
        )  # fmt: skip
        self._jobs.add(1, {"gen_ai.provider.name": runner.name,
                           "doppel.batch.outcome": "submitted"})  # fmt: skip
        return submitted

    def orders_of(self, record: BatchRecord) -> list[EpisodeOrder]:
        """The job's episodes as they were accepted (a season's kept whole, others as their
        GenerateEpisode requests)."""
        if "orders" in record.request:
            return [order_from_json(data) for data in record.request["orders"]]
        return [self.make_order(_decode(text)) for text in record.request["episodes"]]

    def _deps_for(self, order: EpisodeOrder, writer: Any = None) -> PipelineDeps:
        writers = dict(self.deps.writers)
        if writer is not None:
            writers[order.writer] = writer
        return dataclasses.replace(self.deps, writers=writers)

    def _writer(
        self, order: EpisodeOrder, results: Mapping[str, Any], collect: frozenset[str]
    ) -> tuple[Any, BatchCaller]:
        base = self.deps.writers[order.writer]
        answers = {key: ItemResult.from_json(value) for key, value in results.items()}
        return batch_writer(base, prices_of(base), answers, collect)

    async def _next_batch(
        self, stage: str, orders: Sequence[EpisodeOrder], state: dict[str, Any]
    ) -> tuple[str, list[BatchItem]]:
        """The items of `stage`'s batch, built by the writer from the answers so far."""
        items: dict[str, BatchItem] = {}
        for order in orders:
            collect = frozenset({OUTLINE if stage == OUTLINE_STAGE else SCENE})
            writer, caller = self._writer(order, state["results"], collect)
            pipeline = EpisodePipeline(self._deps_for(order, writer), order)
            if await stored_episode(self.deps, pipeline.episode_id) is not None:
                continue  # Written already (interactively, or by an earlier job).
            context = pipeline._cast()
            try:
                # The outline's record (writer, usage at the batch price) is stored beside it,
                # so the assembled episode counts it, as a resumed episode does.
                with collect_provenance() as provenance:
                    pipeline._provenance = provenance
                    outline = await pipeline._outline(context)
            except Deferred as deferred:
                items[deferred.item.custom_id] = deferred.item
                continue
            state["interactive"] += caller.tally.interactive
            self._count_items(caller.provider.name, caller)
            if stage == OUTLINE_STAGE:
                continue
            context = dataclasses.replace(context, kernel=outline.kernel, premise=outline.premise)
            views = [scene_view(outline, index) for index in range(order.scene_count)]
            keys = [scene_key(writer, pipeline._story, view) for view in views]
            cached = await self.deps.cache.get_many(store.SCENES, keys)
            for index, view in enumerate(views):
                if cached[index] is not None:
                    continue  # An earlier run wrote it: the pipeline finds it in the cache.
                try:
                    await writer.write_scene(context, view, index, feeding_summaries(view, index))
                except Deferred as deferred:
                    items[deferred.item.custom_id] = deferred.item
        return stage, list(items.values())

    # --- polling ---------------------------------------------------------------------------

    async def poll_once(self) -> int:
        """Advances every unfinished job this replica can claim; how many it advanced."""
        advanced = 0
        for record in await self.library.pending_batches():
            if record.stage == DONE:
                continue
            try:
                if await self.advance(record.id):
                    advanced += 1
            except (LibraryError, Conflict) as exc:
                log.warning("batch job %s: %s", record.id, exc)
        return advanced

    async def advance(self, job_id: str) -> bool:
        """One step of a job, under its claim; False when another poller holds it."""
        if not await jobs_store.claim(self.library, job_id, self.owner, self.claim_seconds):
            return False
        tracer = self.deps.telemetry.tracer
        async with self._keep_claim(job_id):
            record = await jobs_store.get_job(self.library, job_id)
            with tracer.start_as_current_span("batch job step") as span:
                span.set_attributes(
                    {"doppel.batch.job": job_id, "doppel.batch.stage": record.stage,
                     "doppel.batch.provider": record.provider}
                )  # fmt: skip
                try:
                    await self._step(record)
                except WriterError as exc:
                    await self._fail(record, f"{record.stage}: {exc}")
                except _JobFailed as exc:
                    await self._fail(record, str(exc))
        return True

    @contextlib.asynccontextmanager
    async def _keep_claim(self, job_id: str) -> AsyncIterator[None]:
        """Renews the claim every third of its length while the step runs (assembly can take
        minutes); released by the step's last write."""

        async def renew() -> None:
            while True:
                await asyncio.sleep(self.claim_seconds / 3)
                await jobs_store.claim(self.library, job_id, self.owner, self.claim_seconds)

        task = asyncio.create_task(renew())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            # Whatever the step left, the claim goes (a no-op after its releasing write).
            with contextlib.suppress(Conflict, LibraryError):
                record = await jobs_store.get_job(self.library, job_id)
                if record.status in ("submitted", "in_progress"):
                    await jobs_store.advance(self.library, job_id, self.owner)

    async def _step(self, record: BatchRecord) -> None:
        orders = self.orders_of(record)
        state = dict(record.result or {})
        runner = self.runners.get(record.request["writer"])
        if runner is None:
            raise _JobFailed(f"writer {record.request['writer']!r} is not configured here")
        if record.stage in (OUTLINE_STAGE, SCENES_STAGE):
            assert record.provider_batch_id is not None
            try:
                status = await runner.status(record.provider_batch_id)
            except BatchGone as exc:
                raise _JobFailed(
                    f"{exc} (stage {record.stage}); submit the episode again"
                ) from None
            state.update(succeeded=status.succeeded, failed=status.failed, requests=status.total)
            if not status.ended:
                await jobs_store.advance(
                    self.library, record.id, self.owner, status="in_progress", result=state
                )
                return
            if not status.usable:
                raise _JobFailed(
                    f"provider batch {status.provider_batch_id} ended without answers "
                    f"({status.state}; stage {record.stage})"
                )
            answers = await runner.results(record.provider_batch_id)
            state["results"] = {**state.get("results", {}),
                                **{k: v.to_json() for k, v in answers.items()}}  # fmt: skip
            if record.stage == OUTLINE_STAGE:
                stage, items = await self._next_batch(SCENES_STAGE, orders, state)
                if items:  # Else every scene is in the cache already: on to the assembly.
                    batch_id = await runner.submit(items, {"doppel_job": record.id, "stage": stage})
                    state["batches"] = [*state.get("batches", []), batch_id]
                    state.update(requests=len(items), succeeded=0, failed=0)
                    await jobs_store.advance(
                        self.library, record.id, self.owner, status="submitted", stage=stage,
                        provider_batch_id=batch_id, result=state,
                    )  # fmt: skip
                    return
            record = await jobs_store.advance(
                self.library, record.id, self.owner, claim_seconds=self.claim_seconds,
                status="in_progress", stage=ASSEMBLING, result=state,
            )  # fmt: skip
        if record.stage == ASSEMBLING:
            await self._assemble(record, orders, state)

    async def _assemble(
        self, record: BatchRecord, orders: Sequence[EpisodeOrder], state: dict[str, Any]
    ) -> None:
        """Each episode through the pipeline on the batch's answers, stored as a draft (a
        draft already stored is found, not written again); a season's then join its bible."""
        numbers: list[int] = record.request.get("season", {}).get("numbers", [])
        episode_ids: list[str] = []
        assembled: list[tuple[int, episode_pb2.Episode]] = []
        for index, order in enumerate(orders):
            writer, caller = self._writer(order, state.get("results", {}), frozenset())
            pipeline = EpisodePipeline(self._deps_for(order, writer), order)
            episode: episode_pb2.Episode | None = None
            with (
                client_deadline(self.episode_timeout),
                spending_caller(record.request.get("caller", "")),
            ):
                async with asyncio.timeout(self.episode_timeout):
                    async for event in pipeline.run():
                        if event.HasField("episode"):
                            episode = event.episode
            if episode is None:
                raise _JobFailed(f"episode {pipeline.episode_id} was not assembled")
            if numbers and record.series_id:
                episode = await season_store.store_episode(
                    self.library, record.series_id, numbers[index], episode
                )
                assembled.append((numbers[index], episode))
            else:
                await self._store(episode, record.series_id)
            episode_ids.append(episode.id)
            state["interactive"] = state.get("interactive", 0) + caller.tally.interactive
            self._count_items(caller.provider.name, caller)
        if assembled:  # A season's: every episode above was stored in record.series_id.
            assert record.series_id is not None
            await self._grow_bible(record.series_id, assembled)
        state["episode_ids"] = episode_ids
        await jobs_store.advance(
            self.library, record.id, self.owner, status="completed", stage=DONE, result=state
        )
        self._jobs.add(1, {"gen_ai.provider.name": record.provider,
                           "doppel.batch.outcome": "assembled"})  # fmt: skip
        log.info("batch job %s: %d episode(s) assembled", record.id, len(episode_ids))

    async def _grow_bible(
        self, series_id: str, assembled: Sequence[tuple[int, episode_pb2.Episode]]
    ) -> None:
        """The season's episodes into the series bible (skipping any an interrupted pass
        added); the job fails, its drafts kept, if another season took their numbers."""
        series = await self.library.get_series_record(series_id)
        try:
            async for number, grown, added in season_store.grow_bible(
                self.library, series, assembled
            ):
                log.info("series %s bible v%d: episode %d added %d facts",
                         series_id, grown.version, number, added)  # fmt: skip
        except Conflict as exc:
            raise _JobFailed(str(exc)) from None

    async def _store(self, episode: episode_pb2.Episode, series_id: str | None) -> None:
        # Stored already (other bytes, by an earlier run of this job): that draft stands.
        with contextlib.suppress(Conflict):
            await self.library.save_draft(episode, kind="generated", series_id=series_id)

    async def _fail(self, record: BatchRecord, reason: str) -> None:
        self._jobs.add(1, {"gen_ai.provider.name": record.provider,
                           "doppel.batch.outcome": "failed"})  # fmt: skip
        log.warning("batch job %s failed: %s", record.id, reason)
        await jobs_store.advance(
            self.library, record.id, self.owner, status="failed", error=reason[:1000]
        )

    # --- reporting -------------------------------------------------------------------------

    async def get(self, job_id: str) -> library_pb2.BatchJob:
        """The job as GetBatch reports it; NotFound when there is none."""
        return job_proto(await jobs_store.get_job(self.library, job_id))


class _JobFailed(Exception):
    """The job cannot finish; the message says why (stored as its error)."""


def job_proto(record: BatchRecord) -> library_pb2.BatchJob:
    state = record.result or {}
    status = _STATUS_WORDS.get(record.status, record.status)
    if record.stage == ASSEMBLING and status in ("submitted", "in_progress"):
        status = "ended"
    job = library_pb2.BatchJob(
        id=record.id,
        provider=record.provider,
        provider_batch_id=record.provider_batch_id or "",
        status=status,
        requests=int(state.get("requests", 0)),
        succeeded=int(state.get("succeeded", 0)),
        failed=int(state.get("failed", 0)),
        series_id=record.series_id or "",
        episode_ids=list(state.get("episode_ids", [])),
        error=record.error or "",
        stage=record.stage,
    )
    job.created_at.CopyFrom(_timestamp(record.created_at))
    job.updated_at.CopyFrom(_timestamp(record.updated_at))
    return job


def _timestamp(moment: Any) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


class BatchPoller:
    """Every `interval` seconds, starts a step for each unfinished job not already being
    stepped here (an assembly that takes minutes does not hold up the other jobs' polls), at
    most `max_steps` at once (DOPPEL_MAX_CONCURRENT_EPISODES)."""

    def __init__(self, jobs: BatchJobs, interval: float, max_steps: int = 16) -> None:
        self.jobs = jobs
        self.interval = interval
        self.max_steps = max_steps  # Jobs stepped at once (assemblies are whole episodes).
        self._task: asyncio.Task[None] | None = None
        self._steps: dict[str, asyncio.Task[bool]] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="batch-poller")

    async def _run(self) -> None:
        while True:
            try:
                for record in await self.jobs.library.pending_batches():
                    if len(self._steps) >= self.max_steps:
                        break  # The rest wait for the next interval.
                    if record.stage != DONE and record.id not in self._steps:
                        step = asyncio.create_task(self._step(record.id))
                        self._steps[record.id] = step
            except Exception:  # The library was unreachable: try again at the next interval.
                log.exception("batch poller: listing the jobs failed")
            await asyncio.sleep(self.interval)

    async def _step(self, job_id: str) -> bool:
        try:
            return await self.jobs.advance(job_id)
        except asyncio.CancelledError:
            raise
        except Exception:  # A step that fails (provider or library down) is tried again.
            log.exception("batch job %s: step failed", job_id)
            return False
        finally:
            self._steps.pop(job_id, None)

    async def stop(self) -> None:
        tasks = [task for task in (self._task, *self._steps.values()) if task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:  # No step runs now: the jobs this replica held go to the next poller at once.
            await jobs_store.release_claims(self.jobs.library, self.jobs.owner)
        except LibraryError as exc:
            log.warning("batch poller: claims not released (%s); they run out by themselves", exc)
        for runner in self.jobs.runners.values():
            await runner.aclose()


__all__ = [
    "BatchJobs",
    "BatchPoller",
    "BatchUnavailable",
    "NotFound",
    "build_batch_runners",
    "job_proto",
]
