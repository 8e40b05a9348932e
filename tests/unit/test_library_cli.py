"""The library commands' own logic: the diff report and page, the parent a written Fountain
names through its JSON, and the size check made before a file is read or sent."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from google.protobuf import json_format

from doppel import diff, history
from doppel.cli import build_parser
from doppel.library_client import LocalRefusal, import_request, sibling_draft_id
from doppel.output import write_episode
from doppelganger.v1 import episode_pb2, script_pb2
from shared.config import Settings
from shared.screenplay_diff import compare_drafts


def _episode(episode_id: str, lines: list[str], heading: str = "KITCHEN") -> episode_pb2.Episode:
    episode = episode_pb2.Episode(id=episode_id, show=episode_pb2.Show(id="i-love-lucy"))
    episode.outline.title = "The Airlock"
    for index, line in enumerate(lines):
        scene = episode.scenes.add(index=index, number=index + 1)
        scene.slugline.placement = episode_pb2.PLACEMENT_INT
        scene.slugline.location = heading if index == 0 else f"ROOM {index}"
        scene.elements.add().dialogue.CopyFrom(episode_pb2.DialogueLine(character="Lux", text=line))
    return episode


BASE = _episode("ep-" + "a" * 20, ["Hello.", "Goodbye.", "Same."])
NEW = _episode("ep-" + "b" * 20, ["Hello.", "Farewell <friend> & all.", "Same."])


def test_the_terminal_diff_shows_changed_lines_scene_by_scene() -> None:
    lines = [line for _, line in diff.text_lines(compare_drafts(BASE, NEW))]
    assert lines[0].startswith(f"{BASE.id} -> {NEW.id}: 1 of 3 scenes differ")
    assert lines[1] == "scene 1    INT. KITCHEN  [unchanged]"
    assert lines[2] == "scene 2    INT. ROOM 1  [changed]"
    assert lines[3:5] == ["  - LUX: Goodbye.", "  + LUX: Farewell <friend> & all."]
    assert lines[5] == "scene 3    INT. ROOM 2  [unchanged]"


def test_the_html_diff_puts_the_drafts_side_by_side_escaped() -> None:
    page = diff.html_page(BASE, NEW, compare_drafts(BASE, NEW))
    assert page.startswith("<!DOCTYPE html>")
    assert "Farewell &lt;friend&gt; &amp; all." in page and "<friend>" not in page
    assert '<td class="dialogue old">Goodbye.</td><td class="dialogue new">Farewell' in page
    assert '<td class="dialogue ">Same.</td><td class="dialogue ">Same.</td>' in page


def test_a_written_fountain_names_its_draft_through_the_json_beside_it(tmp_path: Path) -> None:
    episode = _episode("ep-0123456789abcdef0123", ["Hi."])
    episode.fountain = "INT. KITCHEN\n\nLUX\nHi.\n"
    fountain_path, json_path = write_episode(episode, tmp_path)
    assert sibling_draft_id(fountain_path) == episode.id
    assert sibling_draft_id(json_path) == ""  # A JSON names itself (the server reads its id).
    renamed = fountain_path.with_name("other-ffffffff.fountain")
    renamed.write_text(episode.fountain)
    renamed.with_suffix(".json").write_text(json_format.MessageToJson(episode))
    assert sibling_draft_id(renamed) == ""  # The JSON beside it is another draft's.
    request = import_request(Settings(), fountain_path, notes="tightened")
    assert request.parent_draft_id == episode.id and request.format == "fountain"
    assert request.file_name == fountain_path.name and request.notes == "tightened"


def test_a_file_over_the_limit_is_refused_before_it_is_read(tmp_path: Path) -> None:
    huge = tmp_path / "huge.fountain"
    with huge.open("wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    with pytest.raises(LocalRefusal, match=r"at most 2097152 bytes \(DOPPEL_IMPORT_MAX_BYTES\)"):
        import_request(Settings(), huge)
    with pytest.raises(LocalRefusal, match="cannot read"):
        import_request(Settings(), tmp_path / "missing.fdx")


def test_history_lines_name_parent_notes_and_usage() -> None:
    response = script_pb2.GetHistoryResponse(episode_id=BASE.id)
    response.drafts.add(
        draft_id=BASE.id, kind=episode_pb2.DRAFT_KIND_GENERATED, writer="procedural"
    )
    draft = response.drafts.add(
        draft_id=NEW.id, parent_draft_id=BASE.id, kind=episode_pb2.DRAFT_KIND_IMPORTED,
        notes="imported from lucy.fountain", validation_score=0.81, scene_count=3,
    )  # fmt: skip
    draft.usage.input_tokens, draft.usage.cost_usd = 1200, 0.0123
    printed = history.lines(response)
    assert printed[0] == f"episode {BASE.id} (2 drafts, oldest first)"
    assert f"  2. {NEW.id}  imported" in "\n".join(printed)
    assert f"     parent   {BASE.id}" in printed
    assert "     notes    imported from lucy.fountain" in printed
    assert "     tokens   1200 in, 0 out, cost $0.0123" in printed
    assert "     score    0.81, 3 scenes" in printed


@pytest.mark.parametrize(
    "argv",
    [
        ["episodes", "--show", "Seinfeld", "--series", "s1", "--text", "airlock", "--json"],
        ["history", "ep-" + "a" * 20],
        ["import", "x.fountain", "--parent", "ep-" + "a" * 20, "--notes", "n"],
        ["diff", "a.json", "b.json", "--format", "html", "--out", "d.html"],
        ["export", "ep-" + "a" * 20, "--format", "fdx", "--out", "x.fdx"],
    ],
)
def test_the_library_commands_are_registered(argv: list[str]) -> None:
    args = build_parser().parse_args(argv)
    assert isinstance(args, argparse.Namespace) and callable(args.run)


def test_doppel_diff_compares_two_json_files_without_a_server(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from doppel.cli import main

    paths = []
    for episode in (BASE, NEW):
        path = tmp_path / f"{episode.id}.json"
        path.write_text(json_format.MessageToJson(episode))
        paths.append(str(path))
    # No script service listens there: the files are compared here.
    settings_env = {"DOPPEL_SCRIPT_TARGET": "127.0.0.1:1"}
    with pytest.MonkeyPatch.context() as patch:
        for name, value in settings_env.items():
            patch.setenv(name, value)
        assert main(["diff", *paths]) == 0
        page = tmp_path / "page.html"
        assert main(["diff", *paths, "--format", "html", "--out", str(page)]) == 0
    printed = capsys.readouterr().out
    assert "scene 2    INT. ROOM 1  [changed]" in printed
    assert "  + LUX: Farewell <friend> & all." in printed
    assert f"html      {page}" in printed and page.read_text().startswith("<!DOCTYPE html>")
    assert main(["diff", paths[0], str(tmp_path / "missing.json")]) == 2
