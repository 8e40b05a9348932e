"""`doppel episodes [--show S] [--series ID] [--text T] [--archived] [--limit N] [--json]`: the
library's episodes, newest first (ListEpisodes, page after page up to --limit).

One line an episode: its id, drafts, latest draft, show, writer and title (ids stay whole, so
scripts can cut them out); --json prints {"episodes": [EpisodeSummary...]} in proto3 JSON.
"""

from __future__ import annotations

import argparse
import json

from google.protobuf import json_format
from rich.console import Console

from doppelganger.v1 import library_pb2, script_pb2, script_pb2_grpc
from shared import security
from shared.config import Settings

CALL_TIMEOUT = 30.0
PAGE_SIZE = 100


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--show", default="", help="show id or title")
    parser.add_argument("--series", default="", help="series id")
    parser.add_argument("--text", default="", help="words in the title or logline")
    parser.add_argument("--archived", action="store_true", help="archived episodes too")
    parser.add_argument("--limit", type=int, default=200, help="at most this many (default 200)")
    parser.add_argument("--json", action="store_true", help="proto3 JSON, for scripts")


def fetch(args: argparse.Namespace, settings: Settings) -> list[library_pb2.EpisodeSummary]:
    found: list[library_pb2.EpisodeSummary] = []
    token = ""
    with security.blocking_channel(settings.script_address, settings) as channel:
        stub = script_pb2_grpc.ScriptServiceStub(channel)
        while len(found) < args.limit:
            request = script_pb2.ListEpisodesRequest(
                page_size=min(PAGE_SIZE, max(1, args.limit - len(found))),
                page_token=token,
                show=args.show,
                series_id=args.series,
                text=args.text,
                include_archived=args.archived,
            )
            page = stub.ListEpisodes(request, timeout=CALL_TIMEOUT)
            found.extend(page.episodes)
            token = page.next_page_token
            if not token:
                break
    return found[: args.limit]


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    if args.limit < 1:
        err.print(f"[red]--limit must be at least 1, got {args.limit}[/]")
        return 2
    episodes = fetch(args, settings)
    if args.json:
        listed = [json_format.MessageToDict(e) for e in episodes]
        print(json.dumps({"episodes": listed}, indent=2, sort_keys=True))
        return 0
    if not episodes:
        out.print("no episodes in the library yet (doppel generate writes one)")
        return 0
    for episode in episodes:
        updated = episode.updated_at.ToDatetime().strftime("%Y-%m-%d %H:%M")
        archived = "  (archived)" if episode.archived else ""
        out.print(
            f"{episode.episode_id}  {episode.draft_count:>2} drafts  latest "
            f"{episode.latest_draft_id}  {updated}  {episode.show_id}  "
            f"{episode.writer or '-'}  {episode.title}{archived}",
            markup=False,
        )
    return 0
