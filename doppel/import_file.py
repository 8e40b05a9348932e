"""`doppel import FILE [--parent ID] [--show S] [--notes "..."] [--out DIR]`: a hand-edited
script (Fountain, FDX or episode JSON) stored as a new `imported` draft (ImportDraft).

The parent is --parent, else the draft the file came from: for a Fountain or FDX file `doppel`
wrote, the id in the episode JSON beside it; for a JSON, its own id. The server parses the file,
maps its speakers onto the cast, validates and stores it; a speaker outside the cast, an
unreadable line, an empty, binary or too large file are refused with the line or limit named, and
nothing is stored. Files over DOPPEL_IMPORT_MAX_BYTES are refused here, before they are read.
Writes the new draft's Fountain and JSON to --out and prints its id and parent.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from doppel.library_client import LocalRefusal, import_draft, import_request
from doppel.output import write_episode
from shared.config import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="a Fountain (.fountain), FDX (.fdx) or episode JSON file")
    parser.add_argument("--parent", default="", help="the draft the file was edited from")
    parser.add_argument("--show", default="", help="show id or title (a script with no parent)")
    parser.add_argument("--notes", default="", help="what you changed (at most 2,000 chars)")
    parser.add_argument("--out", default="out", help="directory for the draft's files")


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    try:
        request = import_request(settings, Path(args.file), args.parent, args.show, args.notes)
        episode = import_draft(settings, request)
    except LocalRefusal as exc:
        err.print(f"[red]INVALID_ARGUMENT:[/] {exc}", markup=True, highlight=False)
        return 2
    fountain_path, json_path = write_episode(episode, Path(args.out))
    out.print(f"episode   {episode.outline.title} ({len(episode.scenes)} scenes, {episode.id})")
    out.print(f"from      {episode.parent_episode_id or '-'}")
    out.print(f"score     {episode.validation.overall:.2f}")
    out.print(f"fountain  {fountain_path}")
    out.print(f"json      {json_path}")
    return 0
