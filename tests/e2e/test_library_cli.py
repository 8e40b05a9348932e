"""The library as a new user meets it, through `doppel up` and the CLI as real processes: two
generate runs are both listed; after the stack is stopped and started again (its Redis has no
disk, so only the library remembers), `doppel regenerate out/<ep>.json` works and `doppel
history` shows the parent and the notes; a dialogue line edited in the written .fountain and
brought in with `doppel import` survives a regeneration byte for byte, as does one edited in the
JSON given to `doppel regenerate`; `doppel diff` and `doppel export` work on stored drafts; an
empty, binary, 50 MB or wrong-speaker file gets a clear error and stores nothing."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from testkit import free_port
from tests.e2e.processes import read_until_ready, stop_up

pytestmark = pytest.mark.e2e

SHOW, SETTING = "I Love Lucy", "a Mars colony in 2157"
EDITED_LINE = "Hand-edited: “Ethel, the airlock is NOT a closet” — twice,  with two spaces."


@dataclass
class Studio:
    """`doppel up` that can be stopped and started again on the same data directory."""

    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "doppel.cli", "up", "--log-dir", str(self.log_dir)],
            env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            read_until_ready(self.process, timeout=90)
        except AssertionError:
            self.shut_down()
            raise

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        output, _ = self.process.communicate(timeout=60)
        assert self.process.returncode == 0, output
        self.process = None

    def shut_down(self) -> None:
        """Whatever is still running stopped as a user stops it (a SIGKILLed `doppel up` left
        its children running after every CI run that ended this test so)."""
        process, self.process = self.process, None
        if process is not None:
            stop_up(process)

    def doppel(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "doppel.cli", *args],
            env=self.env, capture_output=True, text=True, timeout=timeout,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def ok(self, *args: str) -> str:
        result = self.doppel(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def episodes(self) -> list[dict[str, object]]:
        listed: list[dict[str, object]] = json.loads(self.ok("episodes", "--json"))["episodes"]
        return listed


@pytest.fixture
def studio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Studio]:
    ports = {name: free_port() for name in ("script", "scene", "cache", "monitor", "http")}
    env = {
        **os.environ,
        "DOPPEL_SCRIPT_PORT": str(ports["script"]),
        "DOPPEL_SCENE_PORT": str(ports["scene"]),
        "DOPPEL_CACHE_PORT": str(ports["cache"]),
        "DOPPEL_MONITOR_PORT": str(ports["monitor"]),
        "DOPPEL_MONITOR_HTTP_PORT": str(ports["http"]),
        "DOPPEL_GRACE_SECONDS": "5",
        "PYTHONUNBUFFERED": "1",
        "XDG_DATA_HOME": str(tmp_path_factory.mktemp("data")),
    }
    for name in ("REDIS_URL", "OTEL_EXPORTER_OTLP_ENDPOINT", "DOPPEL_DATA_DIR"):
        env.pop(name, None)
    for name in ("DOPPEL_DATABASE_URL", "DOPPEL_AUTH_TOKENS", "DOPPEL_AUTH_TOKENS_FILE"):
        env.pop(name, None)
    env.pop("DOPPEL_AUTH_TOKEN", None)
    running = Studio(env, tmp_path_factory.mktemp("logs"))
    running.start()
    try:
        yield running
    finally:
        running.shut_down()


def _field(output: str, name: str) -> str:
    match = re.search(rf"^{name}\s+(\S+)", output, re.M)
    assert match, (name, output)
    return match.group(1)


def _dialogue(json_path: Path) -> list[str]:
    episode = json.loads(json_path.read_text())
    return [
        element["dialogue"]["text"]
        for scene in episode["scenes"]
        for element in scene.get("elements", [])
        if "dialogue" in element
    ]


def _first_line(json_path: Path, scene_index: int) -> str:
    scene = json.loads(json_path.read_text())["scenes"][scene_index]
    text: str = next(e["dialogue"]["text"] for e in scene["elements"] if "dialogue" in e)
    return text.split("\n")[0]


@pytest.mark.timeout(600)  # Two stack starts, two episodes, three regenerations, renders.
def test_the_library_through_the_cli(studio: Studio, tmp_path: Path) -> None:
    out = tmp_path / "out"
    runs = []
    for seed in ("21", "22"):
        output = studio.ok(
            "generate", "--show", SHOW, "--setting", SETTING, "--scenes", "4", "--seed", seed,
            "--out", str(out), "--quiet",
        )  # fmt: skip
        runs.append((Path(_field(output, "fountain")), Path(_field(output, "json"))))
    ids = [json.loads(path.read_text())["id"] for _, path in runs]
    assert [e["episodeId"] for e in studio.episodes()] == ids[::-1]
    plain = studio.ok("episodes", "--show", SHOW)
    assert all(episode_id in plain for episode_id in ids)

    # Stop everything and start again: Redis kept nothing, the library kept the drafts.
    studio.stop()
    studio.start()
    (fountain_1, json_1), (_fountain_2, json_2) = runs
    output = studio.ok("regenerate", str(json_1), "--scene", "2", "--notes", "Tighter, please",
                       "--out", str(out))  # fmt: skip
    assert "imported" not in output  # The library holds that exact draft.
    regenerated = json.loads(Path(_field(output, "json")).read_text())["id"]
    assert _field(output, "from") == ids[0]
    history = studio.ok("history", regenerated)
    assert f"parent   {ids[0]}" in history and "notes    Tighter, please" in history
    assert "regenerated" in history and "generated" in history

    # A hand edit of the written Fountain, imported, survives a regeneration of scene 3.
    old_line = _first_line(json_1, 0)
    text = fountain_1.read_text()
    assert old_line in text
    fountain_1.write_text(text.replace(old_line, EDITED_LINE, 1))
    output = studio.ok("import", str(fountain_1), "--out", str(out))
    assert _field(output, "from") == ids[0]  # The parent, from the JSON written beside it.
    imported = json.loads(Path(_field(output, "json")).read_text())["id"]
    output = studio.ok("regenerate", imported, "--scene", "3", "--notes", "Bigger finish",
                       "--out", str(out))  # fmt: skip
    after = Path(_field(output, "json"))
    assert EDITED_LINE in _dialogue(after)
    assert _field(output, "from") == imported

    # A hand edit of the JSON itself: `regenerate FILE` imports it first, never drops it.
    episode = json.loads(json_2.read_text())
    element = next(e for e in episode["scenes"][0]["elements"] if "dialogue" in e)
    element["dialogue"]["text"] = EDITED_LINE
    json_2.write_text(json.dumps(episode, indent=2))
    output = studio.ok("regenerate", str(json_2), "--scene", "3", "--notes", "Shorter",
                       "--out", str(out))  # fmt: skip
    assert "imported" in output
    assert EDITED_LINE in _dialogue(Path(_field(output, "json")))
    assert [e["draftCount"] for e in studio.episodes()] == [3, 4]

    # diff and export on stored drafts.
    diff = studio.ok("diff", ids[0], regenerated)
    assert re.search(r"^scene 2\s.*\[changed\]$", diff, re.M), diff
    assert re.search(r"^scene 1\s.*\[unchanged\]$", diff, re.M), diff
    assert re.search(r"^  \+ ", diff, re.M) and re.search(r"^  - ", diff, re.M)
    page = tmp_path / "diff.html"
    studio.ok("diff", ids[0], imported, "--format", "html", "--out", str(page))
    assert ids[0] in page.read_text() and imported in page.read_text()
    assert "Hand-edited" in page.read_text() and 'class="dialogue new"' in page.read_text()
    for name, start in (("fdx", b"<?xml"), ("pdf", b"%PDF"), ("json", b"{"), ("html", b"<!")):
        target = tmp_path / f"export.{name}"
        studio.ok("export", imported, "--format", name, "--out", str(target))
        assert target.read_bytes().startswith(start), name
    exported = json.loads((tmp_path / "export.json").read_text())
    assert exported["id"] == imported

    # Bad input: clear errors, nothing stored.
    before = studio.episodes()
    empty = tmp_path / "empty.fountain"
    empty.write_bytes(b"")
    binary = tmp_path / "photo.fountain"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)))
    huge = tmp_path / "huge.fountain"
    with huge.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    stranger = tmp_path / "stranger.fountain"
    lines = fountain_1.read_text().split("\n")
    cast = {character["name"].upper() for character in json.loads(json_1.read_text())["cast"]}
    cue = next(i for i, line in enumerate(lines) if line.strip() in cast)
    lines[cue] = "MR. MOONEY"
    stranger.write_text("\n".join(lines))
    for path, expected in (
        (empty, "content is empty"),
        (binary, "binary"),
        (huge, "DOPPEL_IMPORT_MAX_BYTES"),
        (stranger, f"line {cue + 1} "),
    ):
        result = studio.doppel("import", str(path), "--out", str(tmp_path / "bad"))
        assert result.returncode != 0, (path, result.stdout)
        assert "INVALID_ARGUMENT" in result.stderr and expected in result.stderr, result.stderr
    assert "not in the cast" in result.stderr and "MR. MOONEY" in result.stderr
    assert studio.episodes() == before
    assert not (tmp_path / "bad").exists()
