"""The writers' room through the real services: comedy pass, validation, refinement, RegenerateScene
and `doppel regenerate`, with the script service's telemetry going to the real monitor."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from doppel.cli import write_episode
from doppelganger.v1 import (
    episode_pb2,
    monitor_pb2,
    monitor_pb2_grpc,
    script_pb2,
    script_pb2_grpc,
)
from services.monitor.server import create_monitor_server
from services.scene.fountain import parse_fountain
from services.script.pipeline import regenerated_id
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry
from testkit import eventually, in_process_stack

ROOT = Path(__file__).resolve().parents[2]
Stage = script_pb2.Stage


@dataclass
class Room:
    settings: Settings
    script: ServiceServer
    monitor: ServiceServer
    stub: script_pb2_grpc.ScriptServiceStub
    telemetry: Telemetry
    metrics: InMemoryMetricReader


@pytest.fixture
async def room(settings: Settings, redis_server: RedisServer) -> AsyncIterator[Room]:
    base = settings.with_changes(redis_url=redis_server.url)
    monitor = await create_monitor_server(base, Telemetry("monitor", base))
    config = base.with_changes(monitor_target=f"127.0.0.1:{monitor.port}")
    exporting = config.with_changes(
        telemetry_disabled=False,
        otlp_endpoint=f"http://127.0.0.1:{monitor.port}",
        bsp_schedule_delay_ms=100,
    )
    metrics = InMemoryMetricReader()
    telemetry = Telemetry("script", exporting, metric_readers=[metrics])
    with_readers = {"script": telemetry}

    def telemetry_of(name: str, settings: Settings) -> Telemetry:
        return with_readers.get(name) or Telemetry(name, settings)

    async with in_process_stack(config, telemetry=telemetry_of) as stack:
        yield Room(stack.settings, stack.script, monitor, stack.script_stub, telemetry, metrics)
    await monitor.stop(0)
    await asyncio.to_thread(telemetry.shutdown)


def _request(**fields: object) -> script_pb2.GenerateEpisodeRequest:
    values: dict[str, object] = {"show": "I Love Lucy", "setting": "a Mars colony in 2157"}
    values.update(fields)
    return script_pb2.GenerateEpisodeRequest(**values)


async def _generate(
    room: Room, **fields: object
) -> tuple[list[script_pb2.GenerateEpisodeEvent], episode_pb2.Episode]:
    events = [event async for event in room.stub.GenerateEpisode(_request(**fields))]
    return events, events[-1].episode


def _spoken(fountain: str) -> list[str]:
    """The dialogue lines of a screenplay, as a reader of the Fountain file sees them."""
    return [line.text for scene in parse_fountain(fountain).scenes for line in scene.dialogue]


async def _trace(room: Room, trace_id: str, names: set[str]) -> list[monitor_pb2.SpanSummary]:
    """The spans of a trace once every wanted span name has reached the monitor."""
    await asyncio.to_thread(room.telemetry.force_flush)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{room.monitor.port}") as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)

        async def every_name() -> list[monitor_pb2.SpanSummary]:
            try:
                response = await stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id))
            except grpc.aio.AioRpcError:
                return []
            spans = list(response.spans)
            return spans if names <= {span.name for span in spans} else []

        return await eventually(every_name, timeout=30, interval=0.1, what=f"spans {names}")


async def test_the_final_script_carries_the_rewritten_lines(room: Room) -> None:
    events, episode = await _generate(room, seed=21, scene_count=3)
    comedy = [event for event in events if event.stage == Stage.STAGE_COMEDY]
    assert len(comedy) == 1 and "rewritten" in comedy[0].message
    report = episode.comedy
    assert report.rewritten >= 1 and report.mean_after > report.mean_before
    spoken = _spoken(episode.fountain)
    rewritten = [(s, j) for s in episode.scenes for j in s.jokes if j.rewritten]
    assert len(rewritten) == report.rewritten
    for scene, joke in rewritten:
        line = scene.elements[joke.element_index].dialogue.text
        assert line != joke.original_text
        assert line in spoken and joke.original_text not in spoken
    assert len(set(spoken)) == len(spoken)


async def test_events_come_stage_by_stage(room: Room) -> None:
    events, episode = await _generate(room, seed=22, scene_count=4)
    stages = [event.stage for event in events]
    expected = [Stage.STAGE_ACCEPTED, Stage.STAGE_CAST, Stage.STAGE_OUTLINE]
    expected += [Stage.STAGE_SCENES] * 4
    expected += [Stage.STAGE_CONTINUITY] * len(episode.continuity_notes)
    expected += [Stage.STAGE_COMEDY, Stage.STAGE_VALIDATION]
    expected += [Stage.STAGE_REFINEMENT] * len(episode.refinement_rounds)
    assert stages == [*expected, Stage.STAGE_RENDER, Stage.STAGE_DONE]
    fractions = [event.fraction_done for event in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    validation = next(e for e in events if e.stage == Stage.STAGE_VALIDATION)
    assert f"{episode.validation.overall:.2f}" in validation.message
    assert episode.validation.passed and episode.validation.threshold == 0.75


async def test_one_trace_holds_every_stage_and_the_scores_are_metrics(room: Room) -> None:
    events, episode = await _generate(room, seed=23, scene_count=3)
    wanted = {"cast", "outline", "scene 1", "scene 2", "scene 3", "continuity", "comedy pass"}
    wanted |= {"validation", "render", "doppelganger.v1.ScriptService/GenerateEpisode"}
    wanted |= {"library save"}
    spans = await _trace(room, events[-1].trace_id, wanted)
    by_name = {span.name: span for span in spans if span.service == "script"}
    assert wanted <= set(by_name)
    comedy = by_name["comedy pass"].attributes
    assert float(comedy["doppel.comedy.mean_after"]) == pytest.approx(episode.comedy.mean_after)
    assert int(comedy["doppel.comedy.rewritten"]) == episode.comedy.rewritten
    assert by_name["validation"].attributes["doppel.validation.passed"] == "true"
    assert int(by_name["scene 2"].attributes["doppel.scene.jokes"]) == len(episode.scenes[1].jokes)
    root = by_name["doppelganger.v1.ScriptService/GenerateEpisode"].span_id
    assert by_name["comedy pass"].parent_span_id == root
    saved = by_name["library save"]
    assert saved.parent_span_id == root
    assert saved.attributes["doppel.library.kind"] == "generated"
    assert saved.attributes["doppel.library.draft"] == episode.id
    recorded = _metric_points(room.metrics)
    phases = {point["doppel.comedy.phase"] for point in recorded["doppel.comedy.joke_score"]}
    assert phases == {"draft", "final"}
    validation = {p["doppel.validation.phase"] for p in recorded["doppel.validation.score"]}
    assert validation == {"draft", "final"}
    assert recorded["doppel.comedy.rewrites"]


def _metric_points(reader: InMemoryMetricReader) -> dict[str, list[dict[str, object]]]:
    data = reader.get_metrics_data()
    points: dict[str, list[dict[str, object]]] = {}
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points.setdefault(metric.name, []).append(dict(point.attributes or {}))
    return points


# ---------------------------------------------------------------------------------------------
# RegenerateScene


async def test_regenerate_rewrites_one_scene_and_keeps_the_rest(room: Room) -> None:
    _, original = await _generate(room, seed=31, scene_count=4)
    silent = next(c for c in original.cast if c.name not in original.scenes[2].characters)
    notes = f"Let {silent.name} in on it, and make the scene shorter."
    message = script_pb2.RegenerateSceneRequest(episode_id=original.id, scene_index=2, notes=notes)
    episode = await room.stub.RegenerateScene(message)
    assert episode.id == regenerated_id(original.id, 2, notes) != original.id
    assert re.fullmatch(r"ep-[0-9a-f]{20}", episode.id)
    assert episode.parent_episode_id == original.id
    assert [(r.scene_index, r.notes, r.parent_episode_id) for r in episode.revisions] == [
        (2, notes, original.id)
    ]
    for index in (0, 1, 3):
        assert episode.scenes[index] == original.scenes[index]
    scene = episode.scenes[2]
    assert scene != original.scenes[2] and scene.index == 2 and scene.number == 3
    assert silent.name in scene.characters
    assert scene.duration_seconds < original.scenes[2].duration_seconds
    assert all(joke.dimensions for joke in scene.jokes)
    assert episode.validation.passed and episode.fountain and not episode.render_error
    assert episode.fountain != original.fountain
    spoken = _spoken(episode.fountain)
    assert len(set(spoken)) == len(spoken)
    fetched = await room.stub.GetEpisode(script_pb2.GetEpisodeRequest(episode_id=original.id))
    assert fetched == original
    again = await room.stub.RegenerateScene(message)
    assert again == episode


async def test_regenerating_twice_keeps_the_whole_history(room: Room) -> None:
    _, original = await _generate(room, seed=32, scene_count=3)
    first = await room.stub.RegenerateScene(
        script_pb2.RegenerateSceneRequest(episode_id=original.id, scene_index=0, notes="funnier")
    )
    second = await room.stub.RegenerateScene(
        script_pb2.RegenerateSceneRequest(episode_id=first.id, scene_index=1)
    )
    assert [(r.scene_index, r.parent_episode_id) for r in second.revisions] == [
        (0, original.id),
        (1, first.id),
    ]
    assert second.scenes[0] == first.scenes[0] and second.scenes[1] != first.scenes[1]


@pytest.mark.parametrize(
    ("fields", "code", "named"),
    [
        ({"scene_index": 3}, grpc.StatusCode.INVALID_ARGUMENT, "scene_index"),
        ({"scene_index": -1}, grpc.StatusCode.INVALID_ARGUMENT, "scene_index"),
        ({"notes": "x" * 2001}, grpc.StatusCode.INVALID_ARGUMENT, "notes"),
        ({"notes": "bad\x00note"}, grpc.StatusCode.INVALID_ARGUMENT, "notes"),
        ({"episode_id": "episode-7"}, grpc.StatusCode.INVALID_ARGUMENT, "episode_id"),
        ({"episode_id": "ep-" + "f" * 20}, grpc.StatusCode.NOT_FOUND, "episode_id"),
    ],
)
async def test_bad_regenerate_requests_are_refused(
    room: Room, fields: dict[str, object], code: grpc.StatusCode, named: str
) -> None:
    _, original = await _generate(room, seed=33, scene_count=3)
    values: dict[str, object] = {"episode_id": original.id, "scene_index": 0, "notes": "ok"}
    values.update(fields)
    message = script_pb2.RegenerateSceneRequest(**values)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await room.stub.RegenerateScene(message)
    assert raised.value.code() is code
    assert named in (raised.value.details() or "")
    if fields.get("scene_index") == 3:
        assert "between 0 and 2" in (raised.value.details() or "")
    if "notes" in fields and len(str(fields["notes"])) > 2000:
        assert "2000" in (raised.value.details() or "")


async def test_doppel_regenerate_writes_the_files_and_one_trace(room: Room, tmp_path: Path) -> None:
    _, original = await _generate(room, seed=34, scene_count=3)
    _, json_path = write_episode(original, tmp_path / "first")
    env = {
        **os.environ,
        "DOPPEL_SCRIPT_TARGET": f"127.0.0.1:{room.script.port}",
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{room.monitor.port}",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
    }
    env.pop("OTEL_SDK_DISABLED", None)
    command = [sys.executable, "-m", "doppel.cli", "regenerate", str(json_path), "--scene", "2"]
    command += ["--notes", "Tighter, please.", "--out", str(tmp_path / "second")]
    result = await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    fountain = Path(re.search(r"^fountain\s+(\S+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    episode_json = Path(re.search(r"^json\s+(\S+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    trace_id = re.search(r"^trace id\s+([0-9a-f]{32})$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    written = json.loads(episode_json.read_text())
    assert written["parentEpisodeId"] == original.id
    assert written["id"] == regenerated_id(original.id, 1, "Tighter, please.")
    assert fountain.read_text() == written["fountain"]
    spans = await _trace(room, trace_id, {"doppel regenerate", "revise scene 2"})
    services = {span.service for span in spans}
    assert {"doppel-cli", "script"} <= services
    assert {"doppel regenerate", "revise scene 2", "comedy pass", "validation", "render"} <= {
        span.name for span in spans
    }
