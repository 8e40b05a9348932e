"""`doppel season`, as a user runs it, against the real script, cache and scene services:
progress, where each episode went, the series' bible file, continuing a series, refusals."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from google.protobuf import json_format

from doppelganger.v1 import episode_pb2
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def targets(settings: Settings, redis_server: RedisServer) -> AsyncIterator[dict[str, str]]:
    base = settings.with_changes(redis_url=redis_server.url)
    cache = await create_cache_server(base, Telemetry("cache", base))
    scene = await create_scene_server(base, Telemetry("scene", base))
    config = base.with_changes(
        cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
    )
    script = await create_script_server(config, Telemetry("script", config))
    yield {"DOPPEL_SCRIPT_TARGET": f"127.0.0.1:{script.port}"}
    for server in (script, scene, cache):
        await server.stop(0)


async def doppel(targets: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **targets, "OTEL_SDK_DISABLED": "true"}
    command = [sys.executable, "-m", "doppel.cli", *args]
    return await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )


def episode_paths(stdout: str) -> dict[int, Path]:
    found = re.findall(r"^episode (\d+)\s+.+?  (\S+\.fountain)$", stdout, re.M)
    return {int(number): Path(path) for number, path in found}


async def test_season_prints_progress_and_where_the_episodes_went(
    targets: dict[str, str], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = await doppel(
        targets, "season", "--show", "I Love Lucy", "--setting", "a Mars colony in 2157",
        "--episodes", "3", "--scenes", "1", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"outline 1: .+\(kernel ", result.stdout)
    assert re.search(r"episode 2 written \(ep-[0-9a-f]{20}\)", result.stdout)
    assert re.search(r"bible v\d+: episode 3 added 2 facts, calls back to e2-f\d", result.stdout)
    [series_id] = re.findall(r"^series\s+.+\((se-[0-9a-f]+)\)", result.stdout, re.M)
    paths = episode_paths(result.stdout)
    assert sorted(paths) == [1, 2, 3]
    for path in paths.values():
        assert path.parent == out / series_id and path.read_text().strip()
        episode = json_format.Parse(path.with_suffix(".json").read_text(), episode_pb2.Episode())
        assert episode.series_id == series_id
    series = json.loads((out / series_id / "series.json").read_text())
    assert [e["episodeNumber"] for e in series["bible"]["episodes"]] == [1, 2, 3]
    assert len(series["bible"]["kernelsUsed"]) == 3

    more = await doppel(
        targets, "season", "--series", series_id, "--episodes", "1", "--scenes", "1",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert "outline" not in more.stdout
    assert sorted(episode_paths(more.stdout)) == [4]


async def test_season_refusals(targets: dict[str, str], tmp_path: Path) -> None:
    both = await doppel(
        targets, "season", "--series", "se-1", "--show", "I Love Lucy", "--episodes", "1"
    )
    assert both.returncode == 2 and "--series" in both.stderr
    neither = await doppel(targets, "season", "--episodes", "1")
    assert neither.returncode == 2 and "--show and --setting are required" in neither.stderr
    too_many = await doppel(
        targets, "season", "--show", "I Love Lucy", "--setting", "Mars", "--episodes", "30",
        "--out", str(tmp_path),
    )  # fmt: skip
    assert too_many.returncode == 1
    assert "INVALID_ARGUMENT" in too_many.stderr
    assert "episodes must be between 1 and 26 (got 30)" in too_many.stderr
    assert not list(tmp_path.iterdir())
