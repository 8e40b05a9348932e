"""Batch mode on the command line.

`doppel generate ... --batch` submits the episode through the provider's batch API (half
price; answered within 24 hours, usually much sooner) and prints the batch job's id at once;
with `--wait` it polls GetBatch every `--poll-seconds` and writes the files when the episode is
assembled. `doppel batch JOB_ID [--wait]` reports a job later (and writes the files when done;
a season's job writes them into DIR/<series id>/ with the series and its bible as series.json,
as `doppel season` does).
Exit status: 0 submitted or assembled, 1 failed (the job's error printed), 3 still running
after `--timeout`.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from doppel.output import write_episode, write_series
from doppelganger.v1 import library_pb2, script_pb2, script_pb2_grpc
from shared import security
from shared.config import Settings

CALL_TIMEOUT = 60.0
FINISHED = ("assembled", "failed")
STILL_RUNNING = 3


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    """--batch, --wait, --poll-seconds, --timeout on `doppel generate`."""
    parser.add_argument(
        "--batch", action="store_true",
        help="through the provider's batch API (half price, slower): prints the job id",
    )  # fmt: skip
    add_wait_arguments(parser)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`doppel batch JOB_ID`."""
    parser.add_argument("job", help="batch job id (bj-...), as `generate --batch` printed")
    parser.add_argument("--out", default="out", help="directory for the files")
    add_wait_arguments(parser)


def add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--wait", action="store_true", help="with --batch: poll until done, then write the files"
    )
    parser.add_argument(
        "--poll-seconds", type=float, default=10.0, help="with --wait: seconds between polls"
    )
    parser.add_argument(
        "--timeout", type=float, default=24 * 3600.0, help="with --wait: give up after this"
    )


def job_lines(job: library_pb2.BatchJob) -> list[str]:
    lines = [
        f"batch job {job.id}",
        f"status    {job.status} (stage {job.stage})",
        f"provider  {job.provider} {job.provider_batch_id}",
        f"requests  {job.requests} ({job.succeeded} succeeded, {job.failed} failed)",
    ]
    lines += [f"episode   {episode_id}" for episode_id in job.episode_ids]
    if job.error:
        lines.append(f"error     {job.error}")
    return lines


def submit(
    args: argparse.Namespace,
    settings: Settings,
    request: script_pb2.GenerateEpisodeRequest,
    out: Console,
    err: Console,
) -> int:
    """`doppel generate --batch`: the job id at once; with --wait, the files when done."""
    request.batch = True
    with security.blocking_channel(settings.script_address, settings) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        events = list(stub.GenerateEpisode(request, timeout=CALL_TIMEOUT))
        submitted = events[-1]
        out.print(f"batch job {submitted.batch.id}")
        out.print(f"episode   {submitted.episode_id} (when assembled)")
        if not args.wait:
            out.print(f"follow it with: doppel batch {submitted.batch.id} --wait")
            return 0
        return wait(stub, submitted.batch.id, args, Path(args.out), out, err)


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    """`doppel batch JOB_ID [--wait]`."""
    with security.blocking_channel(settings.script_address, settings) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        if args.wait:
            return wait(stub, args.job, args, Path(args.out), out, err)
        job = stub.GetBatch(script_pb2.GetBatchRequest(batch_id=args.job), timeout=CALL_TIMEOUT)
        for line in job_lines(job):
            out.print(line, markup=False)
        if job.status == "assembled":
            return _write(stub, job, Path(args.out), out)
        return 1 if job.status == "failed" else 0


def wait(
    stub: script_pb2_grpc.ScriptServiceStub,
    job_id: str,
    args: argparse.Namespace,
    directory: Path,
    out: Console,
    err: Console,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Polls GetBatch until the job is done (the files written: 0), failed (1) or `--timeout`
    passes (3)."""
    deadline = time.monotonic() + args.timeout
    seen = ""
    while True:
        job = stub.GetBatch(script_pb2.GetBatchRequest(batch_id=job_id), timeout=CALL_TIMEOUT)
        if f"{job.status}/{job.stage}" != seen:
            seen = f"{job.status}/{job.stage}"
            err.print(f"{job.id}: {job.status} (stage {job.stage})", markup=False)
        if job.status == "failed":
            for line in job_lines(job):
                err.print(line, markup=False)
            return 1
        if job.status == "assembled":
            return _write(stub, job, directory, out)
        if time.monotonic() + args.poll_seconds > deadline:
            err.print(f"{job.id} is still {job.status}; `doppel batch {job.id} --wait` later")
            return STILL_RUNNING
        sleep(args.poll_seconds)


def _write(
    stub: script_pb2_grpc.ScriptServiceStub,
    job: library_pb2.BatchJob,
    directory: Path,
    out: Console,
) -> int:
    folder = directory / job.series_id if job.series_id else directory
    for episode_id in job.episode_ids:
        episode = stub.GetEpisode(
            script_pb2.GetEpisodeRequest(episode_id=episode_id), timeout=CALL_TIMEOUT
        )
        fountain_path, json_path = write_episode(episode, folder)
        number = f"{episode.episode_number} " if episode.episode_number else ""
        out.print(
            f"episode   {number}{episode.outline.title} ({len(episode.scenes)} scenes, "
            f"{episode.id})",
            markup=False,
        )
        out.print(f"fountain  {fountain_path}", markup=False)
        out.print(f"json      {json_path}", markup=False)
    if job.series_id:
        series = stub.GetSeries(
            script_pb2.GetSeriesRequest(series_id=job.series_id), timeout=CALL_TIMEOUT
        )
        out.print(f"series    {series.title} ({series.id}), version {series.version}", markup=False)
        out.print(f"bible     {write_series(series, folder)}", markup=False)
    return 0
