"""`doppel show import | export | analyze`, as a user runs them, against the real script, cache and
scene services (the library on SQLite and on PostgreSQL): a YAML show with an unknown archetype is
refused naming the field; export then import gives the same show; `analyze` on the Fountain of
three generated episodes of a bundled show recovers its speaking cast exactly and its voices."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections import defaultdict
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from google.protobuf import json_format

from doppel.show import read_show
from doppelganger.v1 import episode_pb2
from services.cache.server import create_cache_server
from services.scene.server import create_scene_server
from services.script.library import Library
from services.script.server import create_script_server
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.telemetry import Telemetry
from tests.integration.show_samples import SHOW_JSON

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def script_target(
    settings: Settings, redis_server: RedisServer, library: Library
) -> AsyncIterator[str]:
    base = settings.with_changes(redis_url=redis_server.url)
    cache = await create_cache_server(base, Telemetry("cache", base))
    scene = await create_scene_server(base, Telemetry("scene", base))
    config = base.with_changes(
        cache_target=f"127.0.0.1:{cache.port}", scene_target=f"127.0.0.1:{scene.port}"
    )
    script = await create_script_server(config, Telemetry("script", config), library)
    yield f"127.0.0.1:{script.port}"
    for server in (script, scene, cache):
        await server.stop(0)


async def doppel(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOPPEL_SCRIPT_TARGET": target, "OTEL_SDK_DISABLED": "true"}
    command = [sys.executable, "-m", "doppel.cli", *args]
    return await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def printed(label: str, stdout: str) -> list[str]:
    return re.findall(rf"^\s*{label}\s+(\S+)", stdout, re.M)


async def test_a_yaml_show_with_an_unknown_archetype_is_refused(
    script_target: str, tmp_path: Path
) -> None:
    data = json.loads(SHOW_JSON)
    data["characters"][1]["archetype"] = "grumpy baker"
    path = tmp_path / "quibbles.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    result = await doppel(script_target, "show", "import", str(path))
    assert result.returncode == 1, result.stdout
    assert "INVALID_ARGUMENT" in result.stderr
    assert "show.characters[1].archetype 'grumpy baker'" in " ".join(result.stderr.split())
    listed = await doppel(script_target, "shows", "--json")
    assert listed.returncode == 0 and "quibbles" not in listed.stdout


async def test_export_then_import_gives_the_same_show(script_target: str, tmp_path: Path) -> None:
    source = tmp_path / "quibbles.json"
    source.write_text(SHOW_JSON)  # proto3 JSON, lowerCamelCase names
    result = await doppel(script_target, "show", "import", str(source))
    assert result.returncode == 0, result.stderr
    assert printed("show", result.stdout) == ["the-quibbles-of-quarry-lane"]
    exported = tmp_path / "out" / "quibbles.yaml"
    result = await doppel(
        script_target, "show", "export", "The Quibbles of Quarry Lane", "--out", str(exported)
    )
    assert result.returncode == 0, result.stderr
    first = read_show(exported)
    assert first.id == "the-quibbles-of-quarry-lane" and len(first.characters) == 4
    assert yaml.safe_load(exported.read_text())["humor_patterns"][0] == "scheme-backfire"
    result = await doppel(script_target, "show", "import", str(exported), "--replace")
    assert result.returncode == 0, result.stderr
    again = tmp_path / "again.json"
    result = await doppel(script_target, "show", "export", first.id, "--out", str(again))
    assert result.returncode == 0, result.stderr
    assert read_show(again) == first
    stored = json_format.Parse(SHOW_JSON, episode_pb2.Show())
    stored.id, stored.source = first.id, "user"
    assert first == stored  # what was imported, as it was written
    duplicate = await doppel(script_target, "show", "import", str(exported))
    assert duplicate.returncode == 1 and "ALREADY_EXISTS" in duplicate.stderr
    missing = await doppel(script_target, "show", "import", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr


def speakers_by_scene(episodes: list[dict]) -> dict[str, dict[str, set[tuple[int, int]]]]:
    """name -> line key -> the (episode, scene) pairs where the name says it."""
    said: dict[str, dict[str, set[tuple[int, int]]]] = defaultdict(lambda: defaultdict(set))
    for number, episode in enumerate(episodes):
        for scene in episode["scenes"]:
            for element in scene["elements"]:
                if "dialogue" in element:
                    line = element["dialogue"]
                    key = " ".join(re.findall(r"[a-z0-9']+", line.get("text", "").lower()))
                    said[line["character"]][key].add((number, scene.get("index", 0)))
    return said


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the store is not its point
async def test_analyze_three_generated_episodes_recovers_the_cast(
    script_target: str, tmp_path: Path
) -> None:
    fountains, episodes = [], []
    for seed in (11, 12, 13):
        result = await doppel(
            script_target, "generate", "--show", "I Love Lucy", "--setting", "mars-colony-2157",
            "--seed", str(seed), "--out", str(tmp_path / "episodes"), "--quiet",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        fountains += printed("fountain", result.stdout)
        episodes.append(json.loads(Path(printed("json", result.stdout)[0]).read_text()))
    out = tmp_path / "lucy.yaml"
    result = await doppel(
        script_target, "show", "analyze", *fountains, "--title", "Lucy on Mars", "--out", str(out)
    )
    assert result.returncode == 0, result.stderr
    show = read_show(out)
    assert show.id == "lucy-on-mars" and show.source == "analysed"
    said = speakers_by_scene(episodes)
    cast = {c["name"]: c for c in episodes[0]["cast"]}
    assert {c.name for c in show.characters} == set(said) == set(cast)  # exactly
    for character in show.characters:
        # Its voice: at least one of its catalog tics, and lines it keeps coming back to.
        tics = {t.rstrip(",.!") for t in cast[character.name]["verbalTics"]}
        assert tics & {t.rstrip(",.!") for t in character.verbal_tics}, character.name
        assert character.catchphrases, character.name
        # Every catchphrase of the cast data the episodes voice in two scenes or more is found.
        found = " | ".join(character.catchphrases).lower()
        for phrase in cast[character.name].get("catchphrases", []):
            key = " ".join(re.findall(r"[a-z0-9']+", phrase.lower()))
            if len(said[character.name].get(key, ())) >= 2:
                assert phrase.lower() in found, (character.name, phrase)
    # The main characters (the two who speak most) each get back a catchphrase of their own.
    lines = {
        name: sum(len(scenes) for scenes in by_line.values()) for name, by_line in said.items()
    }
    for name in sorted(lines, key=lambda n: -lines[n])[:2]:
        found = " | ".join(next(c for c in show.characters if c.name == name).catchphrases)
        assert any(p.lower() in found.lower() for p in cast[name]["catchphrases"]), name
    assert (show.structure.acts, show.structure.tag) == (2, True)
    assert "read      3 scripts" in result.stdout
    imported = await doppel(script_target, "show", "import", str(out))
    assert imported.returncode == 0, imported.stderr
    assert printed("show", imported.stdout) == ["lucy-on-mars"]
