"""`doppel`: the command line of Doppelganger Studio.

doppel up                      start Redis (if needed) and the four services
doppel generate --show ... --setting ... [--scenes N] [--seed S] [--out DIR] [--format F]
                [--premise P] [--outline PROPOSAL.json] [--cast CAST.json] [--batch [--wait]]
doppel batch JOB_ID [--wait]   a batch-mode job's status; its files when done (doppel/batch.py)
doppel outline --show ... --setting ... [--premise P] [--alternatives N] [--out DIR]
doppel render EPISODE.json --format pdf|fdx|html|fountain [-o FILE]
doppel regenerate EPISODE_ID_OR_FILE --scene N --notes "..." [--out DIR]
                               a file the library does not hold as it is is imported first
doppel episodes [--show S] [--series ID] [--text T] [--json]   the library (doppel/episodes.py)
doppel history ID              a draft's lineage with the notes behind each step
doppel import FILE             a hand-edited Fountain, FDX or JSON as a new draft
doppel diff A B [--format html --out FILE]   what changed, scene by scene
doppel export ID --format pdf|fdx|html|fountain|json [--out FILE]
doppel revise ID --lock 1,2 --scene 3 --notes "..." --insert-after 3 --beat "..." --omit 6
              [--set blue] [--out DIR] [--format F]   a production revision (doppel/revise.py)
doppel season --show S --setting T --episodes N [--out DIR] [--series ID] [--batch [--wait]]
                               a season whose episodes remember each other (doppel/season.py)
doppel shows                   list the bundled shows, yours, and the settings
doppel show import FILE | export SHOW --out FILE | analyze FILE... --out show.yaml
                               shows of your own (doppel/show.py, docs/shows.md)
doppel validate FILE [--json] [--show S]  the validator's report on a script (doppel/validate.py)
doppel health [--json|--watch] the monitor's health score, sub-scores, alerts, operations
doppel demo [--out DIR]        up, generate one episode, health, down
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import grpc
from google.protobuf import json_format
from rich.console import Console
from rich.table import Table

from doppel import batch as batch_command
from doppel import diff as diff_command
from doppel import episodes as episodes_command
from doppel import export as export_command
from doppel import health, local_tokens, steering
from doppel import history as history_command
from doppel import import_file as import_command
from doppel import revise as revise_command
from doppel import season as season_command
from doppel import show as show_command
from doppel import validate as validate_command
from doppel.library_client import LocalRefusal, import_draft, import_request
from doppel.output import DRAFT_ID_RE, episode_id_of, follow, slugify, write_episode
from doppel.stack import SERVICES, Stack, StackError, address_of
from doppelganger.v1 import episode_pb2, monitor_pb2, monitor_pb2_grpc, script_pb2, script_pb2_grpc
from services.scene import client as scene_client
from shared import security
from shared.config import DEFAULTS, ConfigError, Settings
from shared.server import create_channel
from shared.telemetry import Telemetry, trace_id_hex

# soft_wrap: paths and ids must stay on one line, whatever the terminal width (scripts parse them).
out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


async def _generate(
    settings: Settings, request: script_pb2.GenerateEpisodeRequest, quiet: bool
) -> tuple[episode_pb2.Episode, str]:
    """Streams GenerateEpisode with a progress bar; returns the episode and the trace id."""
    telemetry = Telemetry("doppel-cli", settings)
    try:
        async with create_channel(settings.script_address, telemetry, settings) as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            with telemetry.tracer.start_as_current_span("doppel generate"):
                trace_id = trace_id_hex()
                episode = await _follow(stub, request, quiet, settings.episode_timeout_seconds)
                return episode, trace_id or episode.id
    finally:
        await asyncio.to_thread(telemetry.shutdown)


def retry_hint_ms(error: grpc.aio.AioRpcError) -> int | None:
    """The `retry-after-ms` a refusal carries in its trailing metadata, if any."""
    for key, value in error.trailing_metadata() or ():
        if key == "retry-after-ms":
            try:
                return max(0, int(value))
            except (TypeError, ValueError):
                return None
    return None


async def _follow(
    stub: script_pb2_grpc.ScriptServiceStub,
    request: script_pb2.GenerateEpisodeRequest,
    quiet: bool,
    patience: float,
) -> episode_pb2.Episode:
    """The episode; while an identical request is being written (ABORTED with retry-after-ms),
    waits as told and asks again, for at most `patience` seconds."""
    deadline = time.monotonic() + patience
    while True:
        try:
            return await _follow_once(stub, request, quiet)
        except grpc.aio.AioRpcError as exc:
            hint = retry_hint_ms(exc)
            if exc.code() != grpc.StatusCode.ABORTED or hint is None:
                raise
            if time.monotonic() + hint / 1000 > deadline:
                raise
            if not quiet:
                err.print(f"[yellow]{exc.details()}[/]")
            await asyncio.sleep(hint / 1000)


async def _follow_once(
    stub: script_pb2_grpc.ScriptServiceStub,
    request: script_pb2.GenerateEpisodeRequest,
    quiet: bool,
) -> episode_pb2.Episode:
    return await follow(stub.GenerateEpisode(request), quiet, err)


def cmd_generate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        request = steering.generate_request(args)
    except steering.SteeringFileError as exc:
        err.print(f"[red]{exc}[/]")
        return 2
    if args.batch:
        return batch_command.submit(args, settings, request, out, err)
    episode, trace_id = asyncio.run(_generate(settings, request, args.quiet))
    fountain_path, json_path = write_episode(episode, Path(args.out))
    if episode.render_error:
        err.print(f"[yellow]render failed:[/] {episode.render_error}")
    out.print(f"episode   {episode.outline.title} ({len(episode.scenes)} scenes, {episode.id})")
    out.print(f"fountain  {fountain_path}")
    out.print(f"json      {json_path}")
    out.print(f"trace id  {trace_id}")
    if args.format:
        return _render_to_file(
            settings, episode, args.format, scene_client.document_path(json_path, args.format)
        )
    return 0


def _render_to_file(
    settings: Settings, episode: episode_pb2.Episode, format_name: str, path: Path
) -> int:
    """Renders through the scene service, writes the file, prints path, pages and runtime."""
    try:
        document = asyncio.run(scene_client.render_episode(settings, episode, format_name))
    except scene_client.RenderError as exc:
        err.print(f"[red]render failed:[/] {exc}")
        return 1
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(document.data)
    out.print(f"{format_name:9} {path}")
    out.print(f"pages     {document.info.page_count}")
    out.print(f"runtime   {document.info.runtime_seconds / 60:.0f} min")
    return 0


def cmd_render(args: argparse.Namespace, settings: Settings) -> int:
    source = Path(args.episode)
    try:
        episode = scene_client.read_episode(source)
    except (OSError, UnicodeDecodeError, json_format.ParseError) as exc:
        err.print(f"[red]cannot read {source}:[/] {exc}")
        return 2
    path = Path(args.output) if args.output else scene_client.document_path(source, args.format)
    return _render_to_file(settings, episode, args.format, path)


async def _regenerate(
    settings: Settings, request: script_pb2.RegenerateSceneRequest
) -> tuple[episode_pb2.Episode, str]:
    telemetry = Telemetry("doppel-cli", settings)
    try:
        async with create_channel(settings.script_address, telemetry, settings) as channel:
            stub = script_pb2_grpc.ScriptServiceStub(channel)
            with telemetry.tracer.start_as_current_span("doppel regenerate"):
                trace_id = trace_id_hex()
                episode = await stub.RegenerateScene(request)
                return episode, trace_id or episode.id
    finally:
        await asyncio.to_thread(telemetry.shutdown)


def _draft_to_regenerate(reference: str, settings: Settings) -> str:
    """The draft to rewrite: an id as given; a file is sent with ImportDraft, which answers with
    the stored draft when the file is exactly that draft, and otherwise stores the file's
    content as an imported draft (its parent the draft the file names), so hand edits, and
    drafts a lost library no longer holds, are never silently dropped."""
    path = Path(reference)
    if DRAFT_ID_RE.fullmatch(reference) and not path.exists():
        return reference
    # An unreadable JSON is refused here, before any call.
    file_id = episode_id_of(reference) if path.suffix.lower() == ".json" else ""
    draft = import_draft(settings, import_request(settings, path))
    if draft.id != file_id:
        out.print(f"imported  {path.name} as {draft.id} (the library did not hold it as it is)")
    return draft.id


def cmd_regenerate(args: argparse.Namespace, settings: Settings) -> int:
    if args.scene < 1:
        err.print(f"[red]--scene counts from 1 (the first scene), got {args.scene}[/]")
        return 2
    try:
        episode_id = _draft_to_regenerate(args.episode, settings)
    except (OSError, UnicodeDecodeError, json_format.ParseError) as exc:
        err.print(f"[red]cannot read {args.episode}:[/] {exc}")
        return 2
    except LocalRefusal as exc:
        err.print(f"[red]INVALID_ARGUMENT:[/] {exc}", highlight=False)
        return 2
    request = script_pb2.RegenerateSceneRequest(
        episode_id=episode_id, scene_index=args.scene - 1, notes=args.notes
    )
    episode, trace_id = asyncio.run(_regenerate(settings, request))
    fountain_path, json_path = write_episode(episode, Path(args.out))
    if episode.render_error:
        err.print(f"[yellow]render failed:[/] {episode.render_error}")
    out.print(f"episode   {episode.outline.title} (scene {args.scene} rewritten, {episode.id})")
    out.print(f"from      {episode.parent_episode_id}")
    out.print(f"fountain  {fountain_path}")
    out.print(f"json      {json_path}")
    out.print(f"trace id  {trace_id}")
    return 0


def cmd_outline(args: argparse.Namespace, settings: Settings) -> int:
    """ProposeOutlines: each proposal written as JSON, its path and A plot printed."""
    try:
        request = steering.propose_request(args)
    except steering.SteeringFileError as exc:
        err.print(f"[red]{exc}[/]")
        return 2
    with security.blocking_channel(settings.script_address, settings) as channel:
        response = script_pb2_grpc.ScriptServiceStub(channel).ProposeOutlines(
            request, timeout=settings.episode_timeout_seconds
        )
    paths = steering.write_proposals(response, Path(args.out), slugify(request.show))
    for path, proposal in zip(paths, response.proposals, strict=True):
        out.print(f"outline   {path}")
        out.print(f"  title   {proposal.outline.title}")
        out.print(f"  A plot  {proposal.outline.a_plot}")
    return 0


def cmd_shows(args: argparse.Namespace, settings: Settings) -> int:
    with security.blocking_channel(settings.script_address, settings) as channel:
        response = script_pb2_grpc.ScriptServiceStub(channel).ListShows(
            script_pb2.ListShowsRequest(), timeout=10
        )
    if args.json:
        out.print_json(json_format.MessageToJson(response))
        return 0
    shows = Table("show", "id", "source", "era", "cast", title="Shows")
    for show in response.shows:
        cast = ", ".join(c.name for c in show.characters)
        shows.add_row(show.title, show.id, show.source, show.era, cast)
    settings_table = Table("setting", "id", title="Settings (or any free text)")
    for setting in response.settings:
        settings_table.add_row(setting.name, setting.id)
    out.print(shows, settings_table)
    return 0


def fetch_health(
    settings: Settings,
) -> tuple[monitor_pb2.HealthReport, monitor_pb2.ListAlertsResponse]:
    with security.blocking_channel(settings.monitor_address, settings) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        report = stub.GetHealth(monitor_pb2.GetHealthRequest(), timeout=10)
        alerts = stub.ListAlerts(monitor_pb2.ListAlertsRequest(), timeout=10)
    return report, alerts


def cmd_health(args: argparse.Namespace, settings: Settings) -> int:
    if args.watch:
        return health.watch(settings, out)
    report, alerts, operations = health.fetch(settings)
    if args.json:
        print(json.dumps(health.as_json(report, alerts, operations), indent=2))
        return 0
    health.print_report(out, report, alerts, operations, top=args.top)
    return 0


def print_health(report: monitor_pb2.HealthReport, alerts: monitor_pb2.ListAlertsResponse) -> None:
    health.print_report(out, report, list(alerts.alerts))


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops `doppel up` the way Ctrl-C does."""
    raise KeyboardInterrupt


def local_stack(settings: Settings, log_dir: Path | None) -> tuple[Stack, Settings]:
    """The stack `up` and `demo` run, and the settings the CLI then calls it with: with no tokens
    and no mutual TLS configured, protected by the local tokens (doppel/local_tokens.py)."""
    if not local_tokens.wants_local_tokens(settings):
        return Stack(settings, log_dir=log_dir), settings
    tokens = local_tokens.ensure_local_tokens()
    env = local_tokens.local_stack_env(os.environ, tokens)
    stack = Stack(Settings.from_env(env), log_dir=log_dir, env=env)
    return stack, settings.with_changes(auth_token=settings.auth_token or tokens.cli)


def cmd_up(args: argparse.Namespace, settings: Settings) -> int:
    stack, _ = local_stack(settings, Path(args.log_dir) if args.log_dir else None)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        stack.start()
        if stack.redis:
            out.print(f"{'redis':8} {stack.redis.url}")
        for name in SERVICES:
            out.print(f"{name:8} {address_of(settings, name)}")
        if stack.settings.auth_tokens_file and not settings.auth_tokens_file:
            out.print(f"{'tokens':8} {stack.settings.auth_tokens_file} (the CLI reads it)")
        out.print("ready; Ctrl-C stops everything", style="green")
        while not stack.exited():
            time.sleep(0.2)
        err.print(f"[red]{stack.exited()[0].name} exited; stopping[/]")
        return 1
    except KeyboardInterrupt:
        return 0
    except StackError as exc:
        err.print(f"[red]{exc}[/]")
        return 1
    finally:
        codes = stack.stop()
        if codes:
            out.print("stopped: " + ", ".join(f"{n} ({c})" for n, c in codes.items()))


def wait_for_trace(
    settings: Settings, trace_id: str, services: set[str], timeout: float
) -> set[str]:
    """Services that reported spans of the trace to the monitor, waiting up to `timeout`."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with security.blocking_channel(settings.monitor_address, settings) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)
        while time.monotonic() < deadline and not services <= seen:
            try:
                spans = stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id), timeout=5)
                seen = {span.service for span in spans.spans}
            except grpc.RpcError:
                pass
            time.sleep(0.2)
    return seen


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    out_dir = Path(args.out)
    stack, settings = local_stack(settings, out_dir / "logs")
    with stack:
        out.print(f"stack up: {', '.join(SERVICES)} (logs in {out_dir / 'logs'})")
        request = script_pb2.GenerateEpisodeRequest(
            show=args.show, setting=args.setting, scene_count=args.scenes, seed=args.seed
        )
        episode, trace_id = asyncio.run(_generate(settings, request, quiet=False))
        fountain_path, json_path = write_episode(episode, out_dir)
        seen = wait_for_trace(settings, trace_id, {"script", "cache", "scene"}, 15)
        report, alerts = fetch_health(settings)
        out.print(f"episode   {episode.outline.title} ({len(episode.scenes)} scenes)")
        out.print(f"fountain  {fountain_path}")
        out.print(f"json      {json_path}")
        out.print(f"trace id  {trace_id} (spans from: {', '.join(sorted(seen))})")
        print_health(report, alerts)
        codes = stack.stop()
    failed = {name: code for name, code in codes.items() if code != 0}
    if failed:
        err.print(f"[red]services did not exit cleanly: {failed}[/]")
        return 1
    out.print("stack stopped cleanly")
    return 0


def build_parser(wanted: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI. `wanted` is the subcommand about to run: the benchmark commands' modules
    (which import every LLM SDK, seconds of start-up) are imported only when it is theirs."""
    parser = argparse.ArgumentParser(prog="doppel", description="Doppelganger Studio")
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start Redis (if needed) and the four services")
    up.add_argument("--log-dir", help="write each service's log here instead of the terminal")
    up.set_defaults(run=cmd_up)
    for name, run in (("generate", cmd_generate), ("demo", cmd_demo)):
        command = commands.add_parser(name, help=f"{name} an episode")
        # generate: an outline file brings its own show, setting, seed (flags still win).
        default = name == "demo"
        command.add_argument(
            "--show", default=steering.DEFAULT_SHOW if default else None,
            help=f"show id or title (default: {steering.DEFAULT_SHOW!r})",
        )  # fmt: skip
        command.add_argument(
            "--setting", default=steering.DEFAULT_SETTING if default else None,
            help=f"setting or text (default: {steering.DEFAULT_SETTING!r})",
        )  # fmt: skip
        command.add_argument(
            "--scenes",
            type=int,
            default=3 if name == "demo" else None,
            help="number of scenes (1-20); generate without it: the writer picks 8-12 scenes "
            f"for a DOPPEL_EPISODE_MINUTES ({DEFAULTS.episode_minutes:g}) minute episode",
        )
        command.add_argument(
            "--seed", type=int, default=steering.DEFAULT_SEED if default else None,
            help=f"same seed, same episode (default {steering.DEFAULT_SEED})",
        )  # fmt: skip
        command.add_argument("--out", default="out", help="directory for the files")
        command.set_defaults(run=run)
    generate = commands.choices["generate"]
    generate.add_argument("--request-id", help="idempotency key: retries reuse finished work")
    generate.add_argument("--writer", help="writer (default: DOPPEL_WRITER)")
    generate.add_argument("--quiet", action="store_true", help="no progress bar")
    generate.add_argument(
        "--format", choices=scene_client.FORMATS, help="also render it as pdf, fdx, html, fountain"
    )
    steering.add_generate_arguments(generate)
    batch_command.add_generate_arguments(generate)
    batch = commands.add_parser("batch", help="a batch-mode job's status (and files when done)")
    batch_command.add_arguments(batch)
    batch.set_defaults(run=lambda args, settings: batch_command.run(args, settings, out, err))
    steering.add_outline_command(commands).set_defaults(run=cmd_outline)
    regenerate = commands.add_parser(
        "regenerate", help="rewrite one scene of an episode following notes"
    )
    regenerate.add_argument(
        "episode", help="draft id (ep-...) or the draft's JSON (or an edited Fountain/FDX) file"
    )
    regenerate.add_argument(
        "--scene", type=int, required=True, help="scene number as printed (1 is the first scene)"
    )
    regenerate.add_argument("--notes", default="", help="what to change (at most 2,000 chars)")
    regenerate.add_argument("--out", default="out", help="directory for the files")
    regenerate.set_defaults(run=cmd_regenerate)
    render = commands.add_parser("render", help="render an episode's JSON as a screenplay")
    render.add_argument("episode", help="episode as proto3 JSON (what `generate` writes)")
    render.add_argument("--format", choices=scene_client.FORMATS, default="pdf")
    render.add_argument(
        "-o", "--output", help="file to write (default: EPISODE with the format's extension)"
    )
    render.set_defaults(run=cmd_render)
    revise = commands.add_parser(
        "revise", help="a production revision: lock scenes, rewrite, insert, omit, mark changes"
    )
    revise_command.add_arguments(revise)
    revise.set_defaults(
        run=lambda args, settings: revise_command.run(args, settings, out, err, _render_to_file)
    )
    for name, module, summary in (
        ("episodes", episodes_command, "list the library's episodes, newest first"),
        ("history", history_command, "a draft's lineage with the notes behind each step"),
        ("import", import_command, "store a hand-edited Fountain, FDX or JSON as a new draft"),
        ("diff", diff_command, "what changed between two drafts, scene by scene"),
        ("export", export_command, "a stored draft as pdf, fdx, html, fountain or json"),
    ):
        library_command = commands.add_parser(name, help=summary)
        module.add_arguments(library_command)
        library_command.set_defaults(
            run=lambda args, settings, module=module: module.run(args, settings, out, err)
        )
    validate = commands.add_parser(
        "validate", help="the validator's report on a Fountain or episode JSON file"
    )
    validate_command.add_arguments(validate)
    validate.set_defaults(run=lambda args, settings: validate_command.run(args, settings, out, err))
    season = commands.add_parser(
        "season", help="a season of episodes that read and add to the series bible"
    )
    season_command.add_arguments(season)
    season.set_defaults(run=lambda args, settings: season_command.run(args, settings, out, err))
    show = commands.add_parser("show", help="your own shows: import, export, analyze scripts")
    show_command.add_arguments(show)
    show.set_defaults(run=lambda args, settings: show_command.run(args, settings, out, err))
    shows = commands.add_parser("shows", help="list the bundled shows, yours, and the settings")
    shows.add_argument("--json", action="store_true")
    shows.set_defaults(run=cmd_shows)
    bench = commands.add_parser("bench", help="benchmarks on the real stack (make bench)")
    load = commands.add_parser("load", help="load scenarios against a real stack (make load)")
    if wanted in (None, "bench"):
        from bench import main as bench_main

        bench_main.add_arguments(bench)
        bench.set_defaults(run=lambda args, settings: bench_main.run(args))
    if wanted in (None, "load"):
        from bench import load as bench_load

        bench_load.add_arguments(load)
        load.set_defaults(run=lambda args, settings: bench_load.run(args))
    health = commands.add_parser("health", help="health score, sub-scores and alerts")
    health.add_argument("--json", action="store_true", help="one JSON document, for scripts")
    health.add_argument("--watch", action="store_true", help="follow alerts until Ctrl-C")
    health.add_argument("--top", type=int, default=10, help="operations to list")
    health.set_defaults(run=cmd_health)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    command = next((word for word in words if not word.startswith("-")), "")
    args = build_parser(command).parse_args(words)
    try:
        settings = local_tokens.client_settings(Settings.from_env())
        return int(args.run(args, settings))
    except ConfigError as exc:
        err.print(f"[red]configuration:[/] {exc}")
        return 2
    except grpc.RpcError as exc:
        code = exc.code().name if hasattr(exc, "code") else "ERROR"
        details = exc.details() if hasattr(exc, "details") else str(exc)
        err.print(f"[red]{code}:[/] {details}")
        return 1
    except StackError as exc:
        err.print(f"[red]{exc}[/]")
        return 1


if __name__ == "__main__":
    sys.exit(main())
