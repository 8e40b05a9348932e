"""`doppel show`: shows of your own (docs/shows.md).

doppel show import FILE [--replace]          a Show in proto3 JSON or YAML -> CreateShow
doppel show export SHOW --out FILE           GetShow -> FILE (.yaml/.yml: YAML, else JSON)
doppel show analyze FILE... [--title T] --out show.yaml
                                             AnalyzeShow on Fountain scripts or transcripts

The file format is the `Show` message's fields under their proto names (`humor_patterns`,
`verbal_tics`; proto3 JSON's lowerCamelCase names are read too), as JSON or YAML (read with
yaml.safe_load). Export then import gives the same show. Exit status: 0 done, 1 refused by the
service (the message names the field), 2 a file that cannot be read or written.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import json_format
from rich.console import Console

from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from shared import security
from shared.config import Settings

CALL_TIMEOUT = 60.0
YAML_SUFFIXES = (".yaml", ".yml")
FORMATS = ("", "fountain", "text", "fdx")


class ShowFileError(ValueError):
    """A show file that cannot be read or written (the message names the file)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="show_command", required=True, metavar="COMMAND")
    imported = commands.add_parser("import", help="add a show from a JSON or YAML file")
    imported.add_argument("file", help="a Show in proto3 JSON or YAML")
    imported.add_argument("--replace", action="store_true", help="replace your show of the same id")
    exported = commands.add_parser("export", help="write a show (yours or bundled) to a file")
    exported.add_argument("show", help="show id or title")
    exported.add_argument("--out", required=True, help="FILE.yaml, FILE.yml or FILE.json")
    analyzed = commands.add_parser("analyze", help="derive a show's DNA from its scripts")
    analyzed.add_argument("files", nargs="+", help="Fountain scripts or 'NAME: line' transcripts")
    analyzed.add_argument("--title", default="", help="the show's title (its id derives from it)")
    analyzed.add_argument("--format", default="", choices=FORMATS, help="default: detected")
    analyzed.add_argument("--out", required=True, help="the show to review: FILE.yaml or .json")


def show_to_text(show: episode_pb2.Show, path: Path) -> str:
    """The show as the file at `path` holds it: YAML for .yaml/.yml, else JSON."""
    data = json_format.MessageToDict(show, preserving_proto_field_name=True)
    if path.suffix.lower() in YAML_SUFFIXES:
        return str(yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=100))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def show_from_text(text: str, name: str) -> episode_pb2.Show:
    """A Show from proto3 JSON or YAML text; ShowFileError naming the file otherwise."""
    try:
        data: Any = yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise ShowFileError(f"{name} is neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ShowFileError(f"{name} must hold one show (a mapping of the Show fields)")
    try:
        return json_format.ParseDict(data, episode_pb2.Show())
    except json_format.ParseError as exc:
        raise ShowFileError(f"{name} is not a Show: {exc}") from None


def read_show(path: Path) -> episode_pb2.Show:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ShowFileError(f"cannot read {path}: {exc}") from None
    return show_from_text(text, str(path))


def write_show(show: episode_pb2.Show, path: Path) -> None:
    try:
        if path.parent != Path(""):
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(show_to_text(show, path), encoding="utf-8")
    except OSError as exc:
        raise ShowFileError(f"cannot write {path}: {exc}") from None


def analyze_request(args: argparse.Namespace) -> script_pb2.AnalyzeShowRequest:
    request = script_pb2.AnalyzeShowRequest(title=args.title)
    for name in args.files:
        path = Path(name)
        try:
            content = path.read_bytes()
        except OSError as exc:
            raise ShowFileError(f"cannot read {path}: {exc}") from None
        request.scripts.add(file_name=path.name, content=content, format=args.format)
    return request


def _print_show(out: Console, show: episode_pb2.Show) -> None:
    out.print(f"show      {show.id}  {show.title}  ({show.source})", markup=False)
    for character in show.characters:
        out.print(f"  {character.name:20} {character.archetype}", markup=False)


def _print_analysis(out: Console, err: Console, response: script_pb2.AnalyzeShowResponse) -> None:
    analysis = response.analysis
    out.print(f"read      {analysis.scripts} scripts, {analysis.scenes} scenes", markup=False)
    for character in analysis.characters:
        out.print(
            f"  {character.name:20} {character.lines:5} lines {character.scenes:4} scenes",
            markup=False,
        )
        for phrase in character.catchphrases[:3]:
            out.print(f"      catchphrase  {phrase}", markup=False)
        if character.verbal_tics:
            out.print(f"      tics         {' | '.join(character.verbal_tics)}", markup=False)
    out.print(f"locations {', '.join(analysis.locations[:8])}", markup=False)
    patterns = ", ".join(f"{p.pattern} {p.score:.2f}" for p in analysis.humor_patterns)
    out.print(f"humour    {patterns}", markup=False)
    for warning in analysis.warnings:
        err.print(f"warning   {warning}", markup=False, style="yellow")


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    try:
        return _run(args, settings, out, err)
    except ShowFileError as exc:
        err.print(f"[red]{exc}[/]")
        return 2


def _run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    if args.show_command == "import":
        show = read_show(Path(args.file))
        with security.blocking_channel(settings.script_address, settings) as channel:
            stored = script_pb2_grpc.ScriptServiceStub(channel).CreateShow(
                script_pb2.CreateShowRequest(show=show, replace=args.replace),
                timeout=CALL_TIMEOUT,
            )
        _print_show(out, stored)
        return 0
    if args.show_command == "export":
        with security.blocking_channel(settings.script_address, settings) as channel:
            show = script_pb2_grpc.ScriptServiceStub(channel).GetShow(
                script_pb2.GetShowRequest(show=args.show), timeout=CALL_TIMEOUT
            )
        write_show(show, Path(args.out))
        out.print(f"exported  {args.out}", markup=False)
        _print_show(out, show)
        return 0
    request = analyze_request(args)
    with security.blocking_channel(settings.script_address, settings) as channel:
        response = script_pb2_grpc.ScriptServiceStub(channel).AnalyzeShow(
            request, timeout=CALL_TIMEOUT
        )
    write_show(response.show, Path(args.out))
    _print_analysis(out, err, response)
    out.print(
        f"show      {args.out}  (review it, then: doppel show import {args.out})", markup=False
    )
    return 0
