"""`doppel revise`: a production revision of a stored draft (ReviseEpisode).

doppel revise ID --lock 1,2,5 --scene 3 --notes "..." [--scene 4 --notes "..."]
              [--insert-after 3 --beat "..."] [--omit 6] [--set blue] [--out DIR] [--format F]
doppel revise ID --lock 1,2 --rewrite-unlocked --notes "..."

ID is a draft id (ep-...) or the draft's JSON file. Scenes are named by their printed numbers (3,
3A). Each --notes belongs to the --scene before it; with --rewrite-unlocked, one --notes that
follows no --scene is for every scene not locked. Each --beat belongs to the --insert-after before
it (0: before the first scene). --lock and --omit take comma lists and repeat. --set is the pass's
colour (blue, pink, ..., "double blue"); default: the next in the industry order. Shows progress
as `generate` does, writes the revised draft's Fountain and JSON (and the --format document), and
prints its id and each scene that changed, with the paragraphs marked in it (the draft compared
with the one it revises).
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from google.protobuf import json_format
from rich.console import Console

from doppel.output import episode_id_of, follow, write_episode
from doppelganger.v1 import episode_pb2, library_pb2, script_pb2, script_pb2_grpc
from services.scene import client as scene_client
from shared.config import Settings
from shared.screenplay_diff import compare_drafts
from shared.server import create_channel
from shared.telemetry import Telemetry, trace_id_hex

SCENE_CHANGES = {
    library_pb2.CHANGE_KIND_ADDED: "inserted",
    library_pb2.CHANGE_KIND_REMOVED: "omitted",
    library_pb2.CHANGE_KIND_CHANGED: "rewritten",
}
MARKED = (library_pb2.CHANGE_KIND_CHANGED, library_pb2.CHANGE_KIND_ADDED)
RenderToFile = Callable[[Settings, episode_pb2.Episode, str, Path], int]


class RevisionArgumentError(ValueError):
    """The command line does not describe a revision (the message says why)."""


class _Paired(argparse.Action):
    """Appends [value, None] to `dest`: the start of a pair (--scene, --insert-after)."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        entries = list(getattr(namespace, self.dest) or [])
        entries.append([values, None])
        setattr(namespace, self.dest, entries)


class _Second(argparse.Action):
    """Completes the last pair of `dest` (--notes, --beat); with none open, starts [None, value]."""

    def __call__(self, parser: Any, namespace: Any, values: Any, option: Any = None) -> None:
        entries = list(getattr(namespace, self.dest) or [])
        if entries and entries[-1][0] is not None and entries[-1][1] is None:
            entries[-1][1] = values
        else:
            entries.append([None, values])
        setattr(namespace, self.dest, entries)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("draft", help="draft id (ep-...) or the draft's JSON file")
    parser.add_argument(
        "--lock", action="append", default=[], metavar="N[,N]", help="scenes kept byte for byte"
    )
    parser.add_argument(
        "--scene", dest="rewrites", action=_Paired, metavar="N", help="a scene to rewrite"
    )
    parser.add_argument(
        "--notes",
        dest="rewrites",
        action=_Second,
        metavar="TEXT",
        help="notes for the --scene before it (with --rewrite-unlocked: for every unlocked scene)",
    )
    parser.add_argument(
        "--rewrite-unlocked", action="store_true", help="rewrite every scene not locked"
    )
    parser.add_argument(
        "--insert-after",
        dest="inserts",
        action=_Paired,
        metavar="N",
        help="insert a scene after scene N (0: before the first)",
    )
    parser.add_argument(
        "--beat", dest="inserts", action=_Second, metavar="TEXT", help="what happens in it"
    )
    parser.add_argument(
        "--omit", action="append", default=[], metavar="N[,N]", help="scenes to cut (OMITTED)"
    )
    parser.add_argument(
        "--set", default="", metavar="COLOUR", help="the pass's colour (default: the next one)"
    )
    parser.add_argument("--request-id", default="", help="idempotency key")
    parser.add_argument("--out", default="out", help="directory for the files")
    parser.add_argument("--format", choices=scene_client.FORMATS, help="also render it as")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(rewrites=None, inserts=None)


def request_from(args: argparse.Namespace) -> script_pb2.ReviseEpisodeRequest:
    """The ReviseEpisode request the command line describes; RevisionArgumentError when it
    describes none, OSError (or a JSON error) when the draft's file cannot be read."""
    request = script_pb2.ReviseEpisodeRequest(
        draft_id=episode_id_of(args.draft),
        lock=_numbers(args.lock),
        omit=_numbers(args.omit),
        rewrite_unlocked=args.rewrite_unlocked,
        request_id=args.request_id,
    )
    for scene, notes in args.rewrites or []:
        if scene is None:
            if not args.rewrite_unlocked:
                raise RevisionArgumentError("--notes must follow a --scene (or --rewrite-unlocked)")
            if request.unlocked_notes:
                raise RevisionArgumentError("--rewrite-unlocked takes one --notes")
            request.unlocked_notes = notes
        elif notes is None:
            raise RevisionArgumentError(f"--scene {scene} needs its --notes after it")
        else:
            request.notes.add(scene=scene.strip(), notes=notes)
    for after, beat in args.inserts or []:
        if after is None:
            raise RevisionArgumentError("--beat must follow an --insert-after")
        if beat is None:
            raise RevisionArgumentError(f"--insert-after {after} needs its --beat after it")
        request.inserts.add(after=after.strip(), beat=beat)
    if args.set:
        request.revision_set.color = args.set
    return request


def _numbers(values: Sequence[str]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


async def _revise(
    settings: Settings, request: script_pb2.ReviseEpisodeRequest, quiet: bool, err: Console
) -> tuple[episode_pb2.Episode, episode_pb2.Episode, str]:
    """Streams ReviseEpisode with a progress bar; returns the revised draft, the draft it
    revises and the trace id."""
    telemetry = Telemetry("doppel-cli", settings)
    try:
        async with create_channel(settings.script_address, telemetry, settings) as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            with telemetry.tracer.start_as_current_span("doppel revise"):
                trace_id = trace_id_hex()
                revised = await follow(stub.ReviseEpisode(request), quiet, err)
                parent = await stub.GetEpisode(
                    script_pb2.GetEpisodeRequest(episode_id=request.draft_id),
                    timeout=settings.rpc_timeout_seconds,
                )
                return revised, parent, trace_id or revised.id
    finally:
        await asyncio.to_thread(telemetry.shutdown)


def changed_scenes(parent: episode_pb2.Episode, revised: episode_pb2.Episode) -> list[str]:
    """Each scene that changed: its printed number, how, and the paragraphs marked in it."""
    lines = []
    for diff in compare_drafts(parent, revised).scenes:
        how = SCENE_CHANGES.get(diff.change)
        if how is None:
            continue
        marked = sum(1 for p in diff.paragraphs if p.change in MARKED)
        lines.append(f"{diff.number or diff.base_number} ({how}, {marked} paragraph(s) marked)")
    return lines


def run(
    args: argparse.Namespace,
    settings: Settings,
    out: Console,
    err: Console,
    render_to_file: RenderToFile,
) -> int:
    try:
        request = request_from(args)
    except RevisionArgumentError as exc:
        err.print(f"[red]{exc}[/]")
        return 2
    except (OSError, UnicodeDecodeError, json_format.ParseError) as exc:
        err.print(f"[red]cannot read {args.draft}:[/] {exc}")
        return 2
    revised, parent, trace_id = asyncio.run(_revise(settings, request, args.quiet, err))
    fountain_path, json_path = write_episode(revised, Path(args.out))
    if revised.render_error:
        err.print(f"[yellow]render failed:[/] {revised.render_error}")
    active = next((s for s in revised.revision.sets if s.id == revised.revision.active_set), None)
    out.print(f"episode   {revised.outline.title} ({revised.id})")
    out.print(f"from      {parent.id}")
    if active is not None:
        out.print(f"revision  {active.name} ({active.date})", markup=False)
    for line in changed_scenes(parent, revised) or ["none"]:
        out.print(f"changed   {line}", markup=False)
    out.print(f"fountain  {fountain_path}")
    out.print(f"json      {json_path}")
    out.print(f"trace id  {trace_id}")
    if args.format:
        path = scene_client.document_path(json_path, args.format)
        return render_to_file(settings, revised, args.format, path)
    return 0
