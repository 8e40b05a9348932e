"""`doppel export ID --format pdf|fdx|html|fountain|json [--latest] [--out FILE]`: a stored
draft as a document. ID is a draft id or a draft's JSON file (whose id is read from the library,
so the export is what the library holds). JSON is the draft in proto3 JSON; the other formats
are rendered by the scene service, revision marks included. Default file: out/<name>.<ext>, the
name `generate` gives the draft's files.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from google.protobuf import json_format
from rich.console import Console

from doppel.library_client import LocalRefusal, read_draft
from doppel.output import DRAFT_ID_RE, episode_paths
from services.scene import client as scene_client
from shared.config import Settings

FORMATS = ("pdf", "fdx", "html", "fountain", "json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("draft", help="a draft id (ep-...) or a draft's JSON file")
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--latest", action="store_true", help="the newest draft of its episode")
    parser.add_argument("--out", help="file to write (default: out/<name>.<format>)")


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    try:
        reference = args.draft
        if not DRAFT_ID_RE.fullmatch(reference) or Path(reference).exists():
            reference = read_draft(settings, reference).id  # The file's draft, as stored.
        episode = read_draft(settings, reference, latest=args.latest)
    except LocalRefusal as exc:
        err.print(f"[red]{exc}[/]", markup=True, highlight=False)
        return 2
    _, json_path = episode_paths(episode, Path("out"))
    path = Path(args.out) if args.out else json_path.with_suffix("." + args.format)
    if args.format == "json":
        data = (json_format.MessageToJson(episode, indent=2, sort_keys=True) + "\n").encode()
        pages = ""
    else:
        try:
            document = asyncio.run(scene_client.render_episode(settings, episode, args.format))
        except scene_client.RenderError as exc:
            err.print(f"[red]render failed:[/] {exc}")
            return 1
        data, pages = document.data, f", {document.info.page_count} pages"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    out.print(f"{args.format:9} {path} ({episode.id}{pages})", markup=False)
    return 0
