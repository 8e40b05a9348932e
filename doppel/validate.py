"""`doppel validate FILE [--json] [--show S] [--parent ID]`: the validator's report on a script.

FILE is a Fountain or FDX screenplay or an episode JSON (what `generate` writes), or a stored
draft's id (ep-...). The report prints the overall score and the four sub-scores, then one line
per issue: severity, scene (as printed, or "episode"), check id and message. `--json` prints the
ValidationReport in proto3 JSON instead. Exit status: 0 when the script passes, 1 when it does
not, 2 when the file cannot be read.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from google.protobuf import json_format
from rich.console import Console

from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from shared import security
from shared.config import Settings

CALL_TIMEOUT = 60.0
_DRAFT_ID = re.compile(r"ep-[0-9a-f]{20}")
_SEVERITIES = {
    episode_pb2.SEVERITY_INFO: "info",
    episode_pb2.SEVERITY_WARNING: "warning",
    episode_pb2.SEVERITY_ERROR: "error",
    episode_pb2.SEVERITY_CRITICAL: "critical",
}
_STYLES = {"warning": "yellow", "error": "red", "critical": "bold red"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="Fountain or episode JSON file, or a draft id (ep-...)")
    parser.add_argument("--json", action="store_true", help="the report as proto3 JSON")
    parser.add_argument("--show", default="", help="show id or title (a script with no parent)")
    parser.add_argument("--parent", default="", help="the draft the script was edited from")
    parser.add_argument("--format", default="", choices=("", "fountain", "json", "fdx"))


def request_for(args: argparse.Namespace) -> script_pb2.ValidateEpisodeRequest:
    """The request: a draft id as given, else the file's bytes (OSError when unreadable)."""
    path = Path(args.file)
    if _DRAFT_ID.fullmatch(args.file) and not path.exists():
        return script_pb2.ValidateEpisodeRequest(draft_id=args.file)
    return script_pb2.ValidateEpisodeRequest(
        content=path.read_bytes(),
        format=args.format,
        file_name=path.name,
        show=args.show,
        parent_draft_id=args.parent,
    )


def _scene(issue: episode_pb2.ValidationIssue, episode: episode_pb2.Episode) -> str:
    if issue.scene_index < 0:
        return "episode"
    scene = next((s for s in episode.scenes if s.index == issue.scene_index), None)
    printed = (scene.number_label or str(scene.number)) if scene else ""
    return f"scene {printed or issue.scene_index + 1}"


def report_lines(response: script_pb2.ValidateEpisodeResponse) -> list[tuple[str, str]]:
    """(style, line) of the plain report."""
    report = response.report
    verdict = "passes" if report.passed else "fails"
    lines = [
        ("bold", f"score {report.overall:.2f} ({verdict}, threshold {report.threshold:.2f})"),
        (
            "",
            f"character {report.character_consistency:.2f}  comedy "
            f"{report.comedy_distribution:.2f}  plot {report.plot_coherence:.2f}  production "
            f"{report.production:.2f}",
        ),
    ]
    for issue in report.issues:
        severity = _SEVERITIES.get(issue.severity, "unknown")
        where = _scene(issue, response.episode)
        line = f"{severity:8} {where:10} {issue.check or '-':24} {issue.message}"
        lines.append((_STYLES.get(severity, ""), line))
    return lines


def run(args: argparse.Namespace, settings: Settings, out: Console, err: Console) -> int:
    try:
        request = request_for(args)
    except OSError as exc:
        err.print(f"[red]cannot read {args.file}:[/] {exc}")
        return 2
    if not request.draft_id and not request.content:
        err.print(f"[red]cannot read {args.file}:[/] the file is empty")
        return 2
    with security.blocking_channel(settings.script_address, settings) as channel:
        response = script_pb2_grpc.ScriptServiceStub(channel).ValidateEpisode(
            request, timeout=CALL_TIMEOUT
        )
    if args.json:
        print(json_format.MessageToJson(response.report, indent=2, sort_keys=True))
    else:
        for style, line in report_lines(response):
            out.print(line, style=style or None, markup=False)
    return 0 if response.report.passed else 1
