"""The batch-mode RPC handlers: GenerateEpisode with `batch` set, and GetBatch.

GenerateEpisode(batch=true) checks the request as usual, submits the job (batch_jobs.py) and
answers at once with one STAGE_BATCH event carrying the job (its id is what GetBatch takes)
and the id the episode will have. The poller does the rest.
"""

from __future__ import annotations

import grpc

from doppelganger.v1 import library_pb2, script_pb2
from services.script.batch_jobs import BatchJobs, BatchUnavailable, job_proto
from services.script.library import LibraryError, NotFound
from services.script.library.models import ID
from services.script.requests import EpisodeOrder
from services.script.writing import WriterError
from shared.access import current_caller
from shared.telemetry import trace_id_hex

BATCH_FRACTION = 0.01


async def generate_batch(
    jobs: BatchJobs | None,
    request: script_pb2.GenerateEpisodeRequest,
    order: EpisodeOrder,
    context: grpc.aio.ServicerContext,
) -> script_pb2.GenerateEpisodeEvent:
    """The job submitted for one episode, as the one event GenerateEpisode sends."""
    if jobs is None:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "batch mode is not available")
        raise AssertionError("unreachable")
    try:
        jobs.check(order)
        record = await jobs.submit_episodes([request], caller=current_caller().name)
    except BatchUnavailable as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        raise AssertionError("unreachable") from None
    except (WriterError, LibraryError) as exc:
        await context.abort(exc.grpc_code, str(exc))
        raise AssertionError("unreachable") from None
    job = job_proto(record)
    return script_pb2.GenerateEpisodeEvent(
        stage=script_pb2.STAGE_BATCH,
        fraction_done=BATCH_FRACTION,
        message=f"batch job {job.id} submitted ({record.stage} batch {job.provider_batch_id}); "
        "GetBatch reports its progress",
        episode_id=record.request["episode_ids"][0],
        trace_id=trace_id_hex(),
        batch=job,
    )


async def get_batch(
    jobs: BatchJobs | None, request: script_pb2.GetBatchRequest, context: grpc.aio.ServicerContext
) -> library_pb2.BatchJob:
    batch_id = request.batch_id.strip()
    if not batch_id or len(batch_id) > ID:
        await context.abort(
            grpc.StatusCode.INVALID_ARGUMENT, f"batch_id must be 1 to {ID} characters"
        )
    if jobs is None:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"batch_id {batch_id} not found")
        raise AssertionError("unreachable")
    try:
        return await jobs.get(batch_id)
    except NotFound as exc:
        await context.abort(grpc.StatusCode.NOT_FOUND, str(exc))
    except LibraryError as exc:
        await context.abort(exc.grpc_code, str(exc))
    raise AssertionError("unreachable")
