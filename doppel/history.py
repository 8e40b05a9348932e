"""`doppel history ID [--json]`: the lineage of the episode a draft belongs to (GetHistory).

ID is any draft's id, the episode's id, or a draft's JSON file. Oldest first, one block a draft:
its id, kind, parent, writer and model, tokens and cost, validation score, and the notes or
request behind it. --json prints the GetHistoryResponse in proto3 JSON.
"""

from __future__ import annotations

import argparse

from google.protobuf import json_format
from rich.console import Console

from doppel.library_client import CALL_TIMEOUT, LocalRefusal
from doppel.output import episode_id_of
from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from shared import security
from shared.config import Settings

KIND_NAMES = {
    episode_pb2.DRAFT_KIND_GENERATED: "generated",
    episode_pb2.DRAFT_KIND_REGENERATED: "regenerated",
    episode_pb2.DRAFT_KIND_REVISED: "revised",
    episode_pb2.DRAFT_KIND_IMPORTED: "imported",
    episode_pb2.DRAFT_KIND_OUTLINE: "outline",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("draft", help="a draft or episode id (ep-...) or a draft's JSON file")
    parser.add_argument("--json", action="store_true", help="proto3 JSON, for scripts")


def lines(history: script_pb2.GetHistoryResponse) -> list[str]:
    printed = [f"episode {history.episode_id} ({len(history.drafts)} drafts, oldest first)"]
    for number, draft in enumerate(history.drafts, start=1):
        usage = draft.usage
        created = draft.created_at.ToDatetime().strftime("%Y-%m-%d %H:%M:%S")
        writer = draft.writer + (f" ({draft.model})" if draft.model else "")
        printed.append(
            f"{number:>3}. {draft.draft_id}  {KIND_NAMES.get(draft.kind, '?')}  {created}"
        )
        printed.append(f"     parent   {draft.parent_draft_id or '-'}")
        printed.append(f"     writer   {writer or '-'}")
        printed.append(
            f"     tokens   {usage.input_tokens} in, {usage.output_tokens} out, "
            f"cost ${usage.cost_usd:.4f}"
        )
        extra = f", revision {draft.revision_set}" if draft.revision_set else ""
        printed.append(
            f"     score    {draft.validation_score:.2f}, {draft.scene_count} scenes{extra}"
        )
        printed.append(f"     notes    {draft.notes or '-'}")
    return printed


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    try:
        draft_id = episode_id_of(args.draft)
    except (OSError, UnicodeDecodeError, json_format.ParseError) as exc:
        err.print(f"[red]cannot read {args.draft}:[/] {LocalRefusal(str(exc))}")
        return 2
    with security.blocking_channel(settings.script_address, settings) as channel:
        history = script_pb2_grpc.ScriptServiceStub(channel).GetHistory(
            script_pb2.GetHistoryRequest(episode_id=draft_id), timeout=CALL_TIMEOUT
        )
    if args.json:
        print(json_format.MessageToJson(history, indent=2, sort_keys=True))
        return 0
    for line in lines(history):
        out.print(line, markup=False)
    return 0
