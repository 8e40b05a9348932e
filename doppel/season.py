"""`doppel season`: a season of episodes that remember each other (WriteSeason).

doppel season --show S --setting T --episodes N [--scenes K] [--seed S] [--writer W]
              [--premise P ...] [--out DIR]
doppel season --series ID --episodes N [--out DIR]      continue a series
doppel season ... --batch [--wait]                       the scenes through a provider batch

Streams the season's progress (outlines, each episode as it is written, the bible growing one
episode at a time), then fetches every new episode and writes its Fountain and JSON into
DIR/<series id>/, with the series and its bible as series.json, and prints where each went.

With --batch (an LLM writer with a batch API: half price, slower) the outlines are written as
usual, then the season's scenes go to the provider as one batch job: its id is printed at once
and `doppel batch JOB_ID --wait` (or --wait here) writes the same files when it is assembled.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from rich.console import Console

from doppel import batch as batch_command
from doppel.output import write_episode, write_series
from doppelganger.v1 import script_pb2, script_pb2_grpc, series_pb2
from shared import security
from shared.config import Settings
from shared.server import create_channel
from shared.telemetry import Telemetry

DONE = script_pb2.Stage.STAGE_DONE


class SeasonArgumentError(ValueError):
    """The command line does not describe a season (the message says why)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show", default="", help="show id or title (a new series)")
    parser.add_argument("--setting", default="", help="setting id, name or free text")
    parser.add_argument("--series", default="", metavar="ID", help="continue this series")
    parser.add_argument("--episodes", type=int, required=True, help="episodes to write (1-26)")
    parser.add_argument("--scenes", type=int, default=None, help="scenes per episode (1-20)")
    parser.add_argument("--seed", type=int, default=0, help="the series' seed (a new series)")
    parser.add_argument("--writer", default="", help="procedural (default), anthropic, ...")
    parser.add_argument(
        "--premise", action="append", default=[], help="one per episode, in order (repeat)"
    )
    parser.add_argument("--out", default="out", help="directory for the files")
    parser.add_argument("--quiet", action="store_true", help="only where the episodes went")
    parser.add_argument(
        "--batch", action="store_true",
        help="the scenes through the provider's batch API (half price, slower): prints the job id",
    )  # fmt: skip
    batch_command.add_wait_arguments(parser)


def request_from(args: argparse.Namespace) -> script_pb2.WriteSeasonRequest:
    """The WriteSeason request of the command line; SeasonArgumentError when it has none (the
    service checks the limits and names the field)."""
    if args.series and (args.show or args.setting):
        raise SeasonArgumentError("give --series to continue one, or --show and --setting")
    if not args.series and not (args.show and args.setting):
        raise SeasonArgumentError("--show and --setting are required (or --series ID)")
    request = script_pb2.WriteSeasonRequest(
        series_id=args.series,
        show=args.show,
        setting=args.setting,
        episodes=args.episodes,
        seed=args.seed,
        writer=args.writer,
        premises=args.premise,
        batch=args.batch,
    )
    if args.scenes is not None:
        request.scene_count = args.scenes
    return request


def _progress_line(event: script_pb2.SeasonEvent) -> str | None:
    """What a season event prints: season-wide and bible events, outlines, finished episodes
    (an episode's own stages stay quiet)."""
    if not event.HasField("event"):
        prefix = f"episode {event.episode_number}: " if event.episode_number else ""
        return f"[{event.fraction_done:4.0%}] {prefix}{event.message}"
    if event.event.stage == DONE:
        return (
            f"[{event.fraction_done:4.0%}] episode {event.episode_number} written "
            f"({event.event.episode_id}): {event.message}"
        )
    return None


async def _season(
    settings: Settings,
    request: script_pb2.WriteSeasonRequest,
    out_dir: Path,
    quiet: bool,
    out: Console,
) -> tuple[series_pb2.Series, list[tuple[int, str, Path, Path]], str]:
    """Streams the season, then writes every episode it added; returns the series, per new
    episode (number, title, fountain path, json path), and the batch job's id (batch mode:
    the episodes come later)."""
    telemetry = Telemetry("doppel-cli", settings)
    try:
        async with create_channel(settings.script_address, telemetry, settings) as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            series: series_pb2.Series | None = None
            added: list[int] = []
            job_id = ""
            with telemetry.tracer.start_as_current_span("doppel season"):
                async for event in stub.WriteSeason(request):
                    line = _progress_line(event)
                    if line is not None and not quiet:
                        out.print(line, markup=False)
                    if event.HasField("event") and event.event.stage == DONE:
                        added.append(event.episode_number)
                    if event.HasField("series"):
                        series = event.series
                    if event.HasField("batch"):
                        job_id = event.batch.id
                if series is None:
                    raise RuntimeError("the season's stream ended without its series")
                if job_id:
                    return series, [], job_id
                folder = out_dir / series.id
                written = []
                by_number = {s.episode_number: s for s in series.bible.episodes}
                for number in sorted(added):
                    episode = await stub.GetEpisode(
                        script_pb2.GetEpisodeRequest(episode_id=by_number[number].episode_id),
                        timeout=settings.rpc_timeout_seconds,
                    )
                    fountain, data = write_episode(episode, folder)
                    written.append((number, episode.outline.title, fountain, data))
            write_series(series, folder)
            return series, written, ""
    finally:
        await asyncio.to_thread(telemetry.shutdown)


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    try:
        request = request_from(args)
    except SeasonArgumentError as exc:
        err.print(f"[red]{exc}[/]")
        return 2
    out_dir = Path(args.out)
    series, written, job_id = asyncio.run(_season(settings, request, out_dir, args.quiet, out))
    if job_id:
        return _batch_submitted(args, settings, series, job_id, out, err)
    bible = series.bible
    out.print(f"series    {series.title} ({series.id}), version {series.version}", markup=False)
    for number, title, fountain, _ in written:
        out.print(f"episode {number:<2} {title}  {fountain}", markup=False)
    out.print(
        f"bible     {len(bible.facts)} facts, {len(bible.kernels_used)} A plots, "
        f"{len(bible.running_gags)} running gag(s), {len(bible.relationships)} relationship(s)"
    )
    out.print(f"json      {out_dir / series.id / 'series.json'}")
    return 0


def _batch_submitted(
    args: argparse.Namespace,
    settings: Settings,
    series: series_pb2.Series,
    job_id: str,
    out: Console,
    err: Console,
) -> int:
    """Batch mode: the job's id; with --wait, the episodes and the bible when assembled."""
    out.print(f"series    {series.title} ({series.id})", markup=False)
    out.print(f"batch job {job_id}", markup=False)
    if not args.wait:
        out.print(f"follow it with: doppel batch {job_id} --wait --out {args.out}", markup=False)
        return 0
    with security.blocking_channel(settings.script_address, settings) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        return batch_command.wait(stub, job_id, args, Path(args.out), out, err)
