"""`doppel revise`, as a user runs it, against the real script, cache and scene services: the
revised draft's files, its id, the scenes that changed, progress, and refusals."""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from doppelganger.v1 import episode_pb2
from shared.screenplay_diff import compare_drafts
from testkit import InProcessStack
from tests.integration.cli_support import doppel, printed, read
from tests.unit.render_checks import check_fdx_marks

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def targets(stack: InProcessStack) -> dict[str, str]:
    return {
        "DOPPEL_SCRIPT_TARGET": stack.script_target,
        "DOPPEL_SCENE_TARGET": stack.scene_target,
    }


async def first_draft(targets: dict[str, str], out: Path) -> episode_pb2.Episode:
    result = await doppel(targets, "generate", "--scenes", "8", "--seed", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return read(printed("json", result.stdout)[0])


async def test_revise_writes_the_revised_draft_and_says_what_changed(
    targets: dict[str, str], tmp_path: Path
) -> None:
    base_json = tmp_path / "first"
    base = await first_draft(targets, base_json)
    [base_file] = base_json.glob("*.json")
    out = tmp_path / "revised"
    result = await doppel(
        targets, "revise", str(base_file), "--lock", "1,2", "--lock", "5",
        "--scene", "3", "--notes", "Shorter.", "--scene", "4", "--notes", "Funnier.",
        "--insert-after", "3", "--beat", f"{base.cast[0].name} hides the evidence.",
        "--omit", "6", "--set", "pink", "--out", str(out), "--format", "fdx",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "scene 3A inserted" in result.stderr  # Progress, a line an event off a terminal.
    [revised_id] = re.findall(r"\((ep-[0-9a-f]{20})\)$", printed("episode", result.stdout)[0])
    assert printed("from", result.stdout) == [base.id]
    [revision] = printed("revision", result.stdout)
    assert revision.startswith("Pink Revision (")
    changed = printed("changed", result.stdout)
    assert [line.split(" (")[0] for line in changed] == ["3", "3A", "4", "6"]
    assert "3A (inserted," in changed[1] and changed[3] == "6 (omitted, 1 paragraph(s) marked)"
    revised = read(printed("json", result.stdout)[0])
    assert revised.id == revised_id and revised.parent_episode_id == base.id
    assert revised.revision.sets[0].color == "Pink"
    fountain = Path(printed("fountain", result.stdout)[0]).read_text()
    assert "#3A#" in fountain and ".OMITTED #6#" in fountain and fountain == revised.fountain
    fdx = Path(printed("fdx", result.stdout)[0]).read_bytes()
    comparison = compare_drafts(base, revised)
    check_fdx_marks(fdx, comparison)
    assert ET.fromstring(fdx).find("Revisions/Revision").get("Name") == "Pink Revision"  # type: ignore[union-attr]
    marked = [c for c in changed if "paragraph(s) marked" in c]
    counts = [int(re.findall(r", (\d+) paragraph", line)[0]) for line in marked]
    assert sum(counts) == comparison.changed_paragraphs

    # Every unlocked scene rewritten from one set of notes, from the revised draft's id.
    again = await doppel(
        targets, "revise", revised_id, "--lock", "1,2,3,5", "--rewrite-unlocked",
        "--notes", "Tighter.", "--out", str(tmp_path / "third"), "--quiet",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert not again.stderr  # --quiet: no progress.
    assert printed("from", again.stdout) == [revised_id]
    assert [line.split(" (")[0] for line in printed("changed", again.stdout)] == [
        "3A",
        "4",
        "7",
        "8",
    ]
    assert printed("revision", again.stdout)[0].startswith("Yellow Revision (")  # After Pink.
    third = read(printed("json", again.stdout)[0])
    assert [s.number_label or str(s.number) for s in third.scenes] == [
        "1", "2", "3", "3A", "4", "5", "6", "7", "8"
    ]  # fmt: skip
    rewritten = next(s for s in third.scenes if s.number_label == "3A")
    assert rewritten.index == 8 and {j.scene_index for j in rewritten.jokes} <= {8}
    last = [e.transition.text for s in third.scenes for e in s.elements if e.HasField("transition")]
    assert last.count(base.scenes[-1].elements[-1].transition.text) == 1  # The end stays the end.


async def test_revise_reports_a_refused_revision(targets: dict[str, str], tmp_path: Path) -> None:
    """What the service refuses is printed with its status, and nothing is written (the command
    line's own mistakes: tests/unit/test_revise_command.py)."""
    base = await first_draft(targets, tmp_path / "first")
    cases = [
        (["--lock", "1", "--omit", "1"], "INVALID_ARGUMENT: omit[0] '1' is locked (lock[0])"),
        (["--scene", "9", "--notes", "x"], "INVALID_ARGUMENT: notes[0].scene '9' is not a scene"),
    ]
    results = await asyncio.gather(
        *(
            doppel(targets, "revise", base.id, *args, "--out", str(tmp_path / "out"))
            for args, _ in cases
        )
    )
    for (args, message), result in zip(cases, results, strict=True):
        assert result.returncode == 1, (args, result.stdout)
        assert message in " ".join(result.stderr.split()), args
    assert not (tmp_path / "out").exists()
