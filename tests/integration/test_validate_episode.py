"""ValidateEpisode and `doppel validate` against real servers: the script service on the real
cache (on a real Redis) and the real scene service, the CLI finding them through the environment.

The issue's sample: a script that scored 1.00 while a character named herself in the third
person, an original surname reached the new world ("Fenn Mertz") and an exterior heading's action
happened "through the window". `doppel validate` flags each, with its scene.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import json_format

from bench.craft_faults import heading_action, original_name, self_naming
from doppel import cli
from doppelganger.v1 import episode_pb2, script_pb2, script_pb2_grpc
from services.scene.fdx import write_fdx
from services.scene.fountain import render_episode
from services.scene.screenplay import Screenplay
from services.script.validate_service import MAX_CONTENT_BYTES
from testkit import InProcessStack, draft_episode

Severity = episode_pb2.Severity


@dataclass
class Room:
    stub: script_pb2_grpc.ScriptServiceStub


@pytest.fixture
async def room(stack: InProcessStack, monkeypatch: pytest.MonkeyPatch) -> Room:
    monkeypatch.setenv("DOPPEL_SCRIPT_TARGET", stack.script_target)
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    return Room(stack.script_stub)


async def _generated(room: Room) -> episode_pb2.Episode:
    request = script_pb2.GenerateEpisodeRequest(
        show="I Love Lucy", setting="a Mars colony in 2157", scene_count=3, seed=11
    )
    events = [event async for event in room.stub.GenerateEpisode(request)]
    return events[-1].episode


async def _sample(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """The issue's sample as Fountain: the three faults in scenes 2, 3 and 4 (1-based)."""
    _, episode = await draft_episode("i-love-lucy", "mars-colony-2157", 5, 5)
    where = {}
    for injector, index in ((self_naming, 1), (original_name, 2), (heading_action, 3)):
        fault = injector(episode, index)
        assert fault is not None
        where[fault.check] = index
    path = tmp_path / "sample.fountain"
    path.write_text(render_episode(episode), encoding="utf-8")
    return path, where


async def doppel(*argv: str) -> int:
    return await asyncio.to_thread(cli.main, list(argv))


async def test_doppel_validate_flags_the_issues_three_faults_each_with_its_scene(
    room: Room, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, where = await _sample(tmp_path)
    assert await doppel("validate", str(path)) == 1  # an original name fails the script
    output = capsys.readouterr().out
    lines = output.splitlines()
    assert lines[0].startswith("score ") and "fails" in lines[0]
    for check, index in where.items():
        flagged = [line for line in lines if f" {check} " in f" {line} "]
        assert flagged, (check, output)
        assert all(f"scene {index + 1} " in line for line in flagged), (check, flagged)
    # The injected classic surname (the catalog's aliases: McGillicuddy, Mertz, Ricardo) is quoted.
    assert any(f"'{name}'" in output for name in ("McGillicuddy", "Mertz", "Ricardo")), output
    assert "through the window" in output.lower()

    assert await doppel("validate", str(path), "--json") == 1
    report = json_format.Parse(capsys.readouterr().out, episode_pb2.ValidationReport())
    found = {(issue.check, issue.scene_index) for issue in report.issues}
    assert set(where.items()) <= found
    assert not report.passed and report.overall < 1.0
    severities = {issue.check: issue.severity for issue in report.issues}
    assert severities["original_name"] == Severity.SEVERITY_ERROR
    assert severities["self_naming"] == Severity.SEVERITY_WARNING


async def test_a_stored_draft_gets_the_report_it_was_stored_with(room: Room) -> None:
    episode = await _generated(room)
    response = await room.stub.ValidateEpisode(
        script_pb2.ValidateEpisodeRequest(draft_id=episode.id)
    )
    assert response.report == episode.validation
    assert response.episode.id == episode.id


async def test_a_hand_edit_of_a_draft_maps_speakers_onto_its_cast(
    room: Room, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    episode = await _generated(room)
    scene = episode.scenes[1]
    position, line = next(
        (i, e.dialogue) for i, e in enumerate(scene.elements) if e.HasField("dialogue")
    )
    line.text = f"Nobody asked {line.character}, and {line.character} has had enough."
    edited = render_episode(episode)
    request = script_pb2.ValidateEpisodeRequest(
        content=edited.encode(), file_name="edit.fountain", parent_draft_id=episode.id
    )
    response = await room.stub.ValidateEpisode(request)
    [issue] = [i for i in response.report.issues if i.check == "self_naming"]
    assert (issue.scene_index, issue.element_index) == (1, position)
    speakers = {
        e.dialogue.character
        for s in response.episode.scenes
        for e in s.elements
        if e.HasField("dialogue")
    }
    assert speakers <= {c.name for c in episode.cast}
    assert response.episode.kind == episode_pb2.DRAFT_KIND_IMPORTED
    assert [s.slugline for s in response.episode.scenes] == [s.slugline for s in episode.scenes]
    # The same file through the CLI, with its parent.
    path = tmp_path / "edit.fountain"
    path.write_text(edited, encoding="utf-8")
    assert await doppel("validate", str(path), "--parent", episode.id) == 0
    assert any(" self_naming " in out for out in capsys.readouterr().out.splitlines())


async def test_an_fdx_hand_edit_gets_the_same_report_as_its_fountain(room: Room) -> None:
    """Final Draft's format is read too (fdx_reader): the same edit, as FDX and as Fountain,
    gets every issue of the Fountain in the same place. (FDX carries no joke notes, so the FDX
    also gets comedy issues the Fountain does not.)"""
    episode = await _generated(room)
    line = next(e.dialogue for e in episode.scenes[1].elements if e.HasField("dialogue"))
    line.text = f"Nobody asked {line.character}, and {line.character} has had enough."
    fountain = render_episode(episode)
    fdx = write_fdx(Screenplay.from_fountain(fountain))
    reports = []
    for content, name in ((fountain.encode(), "edit.fountain"), (fdx, "edit.fdx")):
        request = script_pb2.ValidateEpisodeRequest(
            content=content, file_name=name, parent_draft_id=episode.id
        )
        reports.append((await room.stub.ValidateEpisode(request)).report)
    as_fountain, as_fdx = (
        sorted((i.check, i.scene_index, i.element_index) for i in report.issues)
        for report in reports
    )
    assert ("self_naming", 1) in {(check, scene) for check, scene, _ in as_fdx}
    assert set(as_fountain) <= set(as_fdx)


async def test_episode_json_is_validated_as_sent(room: Room) -> None:
    episode = await _generated(room)
    episode.scenes[2].elements[1].dialogue.character = "Mysterious Stranger"
    content = json_format.MessageToJson(episode).encode()
    response = await room.stub.ValidateEpisode(
        script_pb2.ValidateEpisodeRequest(content=content, file_name="episode.json")
    )
    stranger = [i for i in response.report.issues if i.check == "stranger"]
    assert [(i.scene_index, i.element_index) for i in stranger] == [(2, 1)]
    assert not response.report.passed


@pytest.mark.parametrize(
    ("fields", "code", "words"),
    [
        ({}, grpc.StatusCode.INVALID_ARGUMENT, "draft_id or content is required"),
        (
            {"draft_id": "ep-" + "0" * 20, "content": b"x"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "draft_id and content",
        ),
        ({"draft_id": "nope"}, grpc.StatusCode.INVALID_ARGUMENT, "draft_id must look like"),
        ({"draft_id": "ep-" + "0" * 20}, grpc.StatusCode.NOT_FOUND, "not found"),
        ({"content": b"   \n"}, grpc.StatusCode.INVALID_ARGUMENT, "content is empty"),
        ({"content": b"\x00\x01PK"}, grpc.StatusCode.INVALID_ARGUMENT, "content is binary"),
        ({"content": b"\xff\xfe\xfa"}, grpc.StatusCode.INVALID_ARGUMENT, "not UTF-8"),
        (
            {"content": b"x" * (MAX_CONTENT_BYTES + 1)},
            grpc.StatusCode.INVALID_ARGUMENT,
            f"content must be at most {MAX_CONTENT_BYTES} bytes",
        ),
        (
            {"content": b"INT. ROOM - DAY\n\nHi.", "format": "docx"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "format must be one of",
        ),
        (
            {"content": b"<?xml version='1.0'?><FinalDraft/>", "file_name": "a.fdx"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "has no <Content>",
        ),
        (
            {"content": b"Just some words.\n\nMore words."},
            grpc.StatusCode.INVALID_ARGUMENT,
            "content has no scene heading",
        ),
        (
            {"content": b"LUNA\nHello.\n\nINT. ROOM - DAY"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "content: line 1 is dialogue before the first scene heading",
        ),
        (
            {"content": b"{not json", "format": "json"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "content is not an episode",
        ),
        (
            {"content": b"INT. ROOM - DAY\n\nHi.", "show": "Not A Real Show"},
            grpc.StatusCode.NOT_FOUND,
            "show 'Not A Real Show' is not in the catalog",
        ),
        (
            {"content": b"INT. ROOM - DAY\n\nHi.", "parent_draft_id": "ep-1"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "parent_draft_id must look like",
        ),
    ],
)
async def test_bad_requests_are_refused_naming_the_field(
    room: Room, fields: dict[str, object], code: grpc.StatusCode, words: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await room.stub.ValidateEpisode(script_pb2.ValidateEpisodeRequest(**fields))
    assert caught.value.code() == code
    assert words in (caught.value.details() or "")


async def test_doppel_validate_says_when_it_cannot_read_the_file(
    room: Room, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await doppel("validate", str(tmp_path / "missing.fountain")) == 2
    assert "cannot read" in capsys.readouterr().err
    empty = tmp_path / "empty.fountain"
    empty.write_text("", encoding="utf-8")
    assert await doppel("validate", str(empty)) == 2
    assert "the file is empty" in capsys.readouterr().err
    blank = tmp_path / "blank.fountain"
    blank.write_text("\n\n   \n", encoding="utf-8")
    assert await doppel("validate", str(blank)) == 1
    error = capsys.readouterr().err
    assert "INVALID_ARGUMENT" in error and "content is empty" in error
