"""`doppel outline` and `doppel generate --premise/--outline/--cast`, as a user runs them, against
the real script, cache and scene services."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from testkit import InProcessStack

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def script_target(stack: InProcessStack) -> str:
    return stack.script_target


async def _doppel(target: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOPPEL_SCRIPT_TARGET": target, "OTEL_SDK_DISABLED": "true"}
    command = [sys.executable, "-m", "doppel.cli", *args]
    return await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def _printed(label: str, stdout: str) -> list[str]:
    return re.findall(rf"^\s*{label}\s+(.+)$", stdout, re.M)


async def test_outline_alternatives_then_generate_from_an_edited_one(
    script_target: str, tmp_path: Path
) -> None:
    outlines = tmp_path / "outlines"
    result = await _doppel(
        script_target, "outline", "--show", "Taxi", "--setting", "a medieval castle",
        "--premise", "Louie auctions off the 'Iron Crown' to pay his debts.",
        "--alternatives", "3", "--scenes", "5", "--seed", "9", "--out", str(outlines),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    paths = [Path(p) for p in _printed("outline", result.stdout)]
    a_plots = _printed("A plot", result.stdout)
    assert len(paths) == 3 and len(set(a_plots)) == 3
    proposals = [json.loads(path.read_text()) for path in paths]
    assert [p["outline"]["aPlot"] for p in proposals] == a_plots
    assert all("Iron Crown" in p["outline"]["logline"] for p in proposals)
    assert all(p["show"] == "taxi" and p["setting"] == "a medieval castle" for p in proposals)

    chosen = proposals[1]
    beat = next(
        b for act in chosen["outline"]["acts"] for b in act["beats"] if b.get("sceneIndex") == 3
    )
    beat["description"] = f"{beat['characters'][0]} hides the Iron Crown in the moat."
    chosen["cast"][0]["name"] = "Sir Loudmouth"  # renamed in the cast file; the outline follows
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(chosen))
    episodes = tmp_path / "episodes"
    result = await _doppel(
        script_target, "generate", "--outline", str(edited), "--out", str(episodes), "--quiet"
    )
    assert result.returncode == 0, result.stderr
    episode = json.loads(Path(_printed("json", result.stdout)[0]).read_text())
    assert episode["show"]["id"] == "taxi" and episode["seed"] == "9"
    assert episode["premise"] == chosen["premise"]
    assert episode["cast"][0]["name"] == "Sir Loudmouth"
    assert episode["outline"]["aPlot"] != proposals[0]["outline"]["aPlot"]
    assert len(episode["scenes"]) == 5
    assert episode["scenes"][3]["summary"] == beat["description"].replace(
        proposals[1]["cast"][0]["name"], "Sir Loudmouth"
    )
    speakers = {
        e["dialogue"]["character"]
        for scene in episode["scenes"]
        for e in scene["elements"]
        if "dialogue" in e
    }
    assert "Sir Loudmouth" in speakers and speakers <= {c["name"] for c in episode["cast"]}

    cast_file = tmp_path / "cast.json"
    cast_file.write_text(json.dumps(chosen["cast"][:1]))
    result = await _doppel(
        script_target, "generate", "--outline", str(edited), "--cast", str(cast_file),
        "--out", str(episodes), "--quiet",
    )  # fmt: skip
    assert result.returncode == 1
    assert "INVALID_ARGUMENT" in result.stderr and "cast" in result.stderr


async def test_generate_with_a_premise(script_target: str, tmp_path: Path) -> None:
    result = await _doppel(
        script_target, "generate", "--show", "The Golden Girls", "--setting", "ancient-rome",
        "--premise", "Rose enters a chariot race.", "--scenes", "3", "--out", str(tmp_path),
        "--quiet",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    episode = json.loads(Path(_printed("json", result.stdout)[0]).read_text())
    assert episode["premise"] == "Rose enters a chariot race."
    assert "chariot race" in episode["outline"]["logline"]
    assert "Rose" not in episode["outline"]["premise"]
    missing = await _doppel(script_target, "generate", "--outline", str(tmp_path / "none.json"))
    assert missing.returncode == 2 and "cannot read" in missing.stderr
