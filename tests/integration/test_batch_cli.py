"""`doppel generate --batch [--wait]` and `doppel batch JOB_ID`, as a user runs them, against
the real services and the loopback provider's batch endpoints."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from shared.redis_server import RedisServer
from testkit.llm_server import LLMServer
from tests.integration.batch_support import backing, batch_settings, script
from tests.integration.cli_support import doppel, printed, read


@pytest.fixture
async def stack(redis_server: RedisServer) -> AsyncIterator[tuple[LLMServer, dict[str, str]]]:
    with LLMServer() as provider:
        async with (
            backing(batch_settings(provider), redis_server) as config,
            script(config) as (server, _),
        ):
            yield provider, {"DOPPEL_SCRIPT_TARGET": f"127.0.0.1:{server.port}"}


async def test_generate_batch_wait_prints_the_job_and_writes_the_files(
    stack: tuple[LLMServer, dict[str, str]], tmp_path: Path
) -> None:
    provider, targets = stack
    result = await doppel(
        targets, "generate", "--show", "I Love Lucy", "--setting", "a lighthouse",
        "--scenes", "2", "--seed", "180004", "--writer", "anthropic", "--batch", "--wait",
        "--poll-seconds", "0.1", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [job_id] = printed("batch job", result.stdout)
    assert re.fullmatch(r"bj-[0-9a-f]{20}", job_id)
    [promised] = re.findall(
        r"^episode\s+(ep-[0-9a-f]{20}) \(when assembled\)$", result.stdout, re.M
    )
    episode = read(printed("json", result.stdout)[0])
    assert episode.id == promised and len(episode.scenes) == 2
    assert Path(printed("fountain", result.stdout)[0]).read_text() == episode.fountain
    assert len(provider.batches.created("anthropic")) == 2

    later = await doppel(targets, "batch", job_id, "--out", str(tmp_path / "again"))
    assert later.returncode == 0, later.stderr
    assert printed("status", later.stdout) == ["assembled (stage done)"]
    assert read(printed("json", later.stdout)[0]).id == episode.id


async def test_generate_batch_without_wait_returns_the_job_id_at_once(
    stack: tuple[LLMServer, dict[str, str]], tmp_path: Path
) -> None:
    provider, targets = stack
    provider.batches.hold()  # Nothing finishes: the command must not wait for it.
    result = await doppel(
        targets, "generate", "--show", "I Love Lucy", "--setting", "a lighthouse",
        "--scenes", "2", "--writer", "openai", "--batch", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [job_id] = printed("batch job", result.stdout)
    assert f"doppel batch {job_id} --wait" in result.stdout
    assert not list(tmp_path.glob("*.json"))
    missing = await doppel(targets, "batch", "bj-0000")
    assert missing.returncode == 1 and "NOT_FOUND" in missing.stderr
    provider.batches.release()


async def test_season_batch_wait_writes_the_episodes_and_the_bible_into_the_series_folder(
    stack: tuple[LLMServer, dict[str, str]], tmp_path: Path
) -> None:
    provider, targets = stack
    result = await doppel(
        targets, "season", "--show", "I Love Lucy", "--setting", "a lighthouse",
        "--episodes", "2", "--scenes", "1", "--writer", "anthropic", "--batch", "--wait",
        "--poll-seconds", "0.1", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert re.search(r"outline 2: .+\(kernel ", result.stdout)
    [job_id] = printed("batch job", result.stdout)
    [series_id] = re.findall(r"^series\s+.+\((se-[0-9a-f]+)\)$", result.stdout, re.M)[:1]
    folder = tmp_path / series_id
    episodes = [read(path) for path in printed("json", result.stdout)]
    assert [e.episode_number for e in episodes] == [1, 2]
    assert all(Path(p).parent == folder for p in printed("fountain", result.stdout))
    assert all(e.series_id == series_id and len(e.scenes) == 1 for e in episodes)
    bible = json.loads((folder / "series.json").read_text())["bible"]
    assert [e["episodeId"] for e in bible["episodes"]] == [e.id for e in episodes]
    assert [len(b.results) for b in provider.batches.created("anthropic")] == [2]

    later = await doppel(targets, "batch", job_id, "--out", str(tmp_path / "again"))
    assert later.returncode == 0, later.stderr
    assert (tmp_path / "again" / series_id / "series.json").is_file()


async def test_season_batch_without_wait_prints_how_to_follow_it(
    stack: tuple[LLMServer, dict[str, str]], tmp_path: Path
) -> None:
    provider, targets = stack
    provider.batches.hold()
    result = await doppel(
        targets, "season", "--show", "I Love Lucy", "--setting", "a lighthouse",
        "--episodes", "1", "--scenes", "1", "--writer", "openai", "--batch", "--out", str(tmp_path),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    [job_id] = printed("batch job", result.stdout)
    assert f"doppel batch {job_id} --wait --out {tmp_path}" in result.stdout
    assert not list(tmp_path.rglob("*.json"))
    refused = await doppel(
        targets, "season", "--show", "I Love Lucy", "--setting", "a lighthouse",
        "--episodes", "1", "--batch", "--out", str(tmp_path),
    )  # fmt: skip
    assert refused.returncode == 1 and "INVALID_ARGUMENT" in refused.stderr
    assert "batch: writer 'procedural' has no batch API" in refused.stderr
    provider.batches.release()
