"""What the CLI shows and writes of a draft: the progress of the RPC writing it (a bar on a
terminal, a line an event in logs), its files (the Fountain screenplay and the proto3 JSON), and
the draft a command line names (an id, or the JSON file `generate` wrote)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterable
from pathlib import Path

from google.protobuf import json_format
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

from doppelganger.v1 import episode_pb2, script_pb2, series_pb2

DRAFT_ID_RE = re.compile(r"ep-[0-9a-f]{20}")


def slugify(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60].rstrip("-") or "episode"


def episode_paths(episode: episode_pb2.Episode, directory: Path) -> tuple[Path, Path]:
    stem = f"{slugify(episode.show.id + ' ' + episode.outline.title)}-{episode.id[3:11]}"
    return directory / f"{stem}.fountain", directory / f"{stem}.json"


def write_episode(episode: episode_pb2.Episode, directory: Path) -> tuple[Path, Path]:
    """Writes the Fountain screenplay and the proto3 JSON; returns both paths."""
    directory.mkdir(parents=True, exist_ok=True)
    fountain_path, json_path = episode_paths(episode, directory)
    fountain_path.write_text(episode.fountain, encoding="utf-8")
    # sort_keys: map fields (joke dimensions) would otherwise come out in arbitrary order.
    text = json_format.MessageToJson(episode, indent=2, sort_keys=True)
    json_path.write_text(text + "\n", encoding="utf-8")
    return fountain_path, json_path


def write_series(series: series_pb2.Series, directory: Path) -> Path:
    """Writes the series and its bible as proto3 JSON (series.json); returns the path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "series.json"
    text = json_format.MessageToJson(series, indent=2, sort_keys=True)
    path.write_text(text + "\n", encoding="utf-8")
    return path


def episode_id_of(reference: str) -> str:
    """An episode id as given, or the id inside an episode JSON file (what `generate` writes)."""
    if DRAFT_ID_RE.fullmatch(reference):
        return reference
    text = Path(reference).read_text(encoding="utf-8")
    episode = json_format.Parse(text, episode_pb2.Episode(), ignore_unknown_fields=True)
    return episode.id


async def follow(
    events: AsyncIterable[script_pb2.GenerateEpisodeEvent], quiet: bool, console: Console
) -> episode_pb2.Episode:
    """The episode the stream's last event carries, with its progress on `console`."""
    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn())
    # A bar on a terminal; one line per event in logs (CI), where a bar would only print at exit.
    bar = not quiet and console.is_terminal
    with Progress(*columns, console=console, disable=not bar) as progress:
        task = progress.add_task("starting", total=1.0)
        episode: episode_pb2.Episode | None = None
        # Read to the end of the stream (not just to the episode), so the call completes and
        # its client span ends before telemetry is flushed.
        async for event in events:
            progress.update(task, completed=event.fraction_done, description=event.message)
            if not quiet and not bar:
                console.print(f"[{event.fraction_done:4.0%}] {event.message}", markup=False)
            if event.HasField("episode"):
                episode = event.episode
    if episode is None:
        raise RuntimeError("the stream ended without an episode")
    return episode
