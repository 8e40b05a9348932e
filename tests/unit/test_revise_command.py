"""`doppel revise`'s command line (doppel/revise.py): --scene/--notes and --insert-after/--beat
pair up in order, comma lists, the set's colour, and the mistakes it refuses before calling."""

from __future__ import annotations

import pytest

from doppel.cli import build_parser
from doppel.revise import RevisionArgumentError, request_from
from doppelganger.v1 import episode_pb2, script_pb2

DRAFT = "ep-0123456789abcdef0123"


def parsed(*args: str) -> script_pb2.ReviseEpisodeRequest:
    return request_from(build_parser().parse_args(["revise", DRAFT, *args]))


def test_pairs_lists_and_colour_make_the_request() -> None:
    request = parsed(
        "--lock", "1,2", "--lock", " 5 ", "--scene", "3", "--notes", "Meaner",
        "--insert-after", "3", "--beat", "A beat", "--scene", "4", "--notes", "",
        "--insert-after", "0", "--beat", "Cold open", "--omit", "6,7", "--set", "blue",
        "--request-id", "take-1",
    )  # fmt: skip
    assert request == script_pb2.ReviseEpisodeRequest(
        draft_id=DRAFT,
        lock=["1", "2", "5"],
        notes=[
            script_pb2.SceneNotes(scene="3", notes="Meaner"),
            script_pb2.SceneNotes(scene="4", notes=""),
        ],
        inserts=[
            script_pb2.SceneInsertion(after="3", beat="A beat"),
            script_pb2.SceneInsertion(after="0", beat="Cold open"),
        ],
        omit=["6", "7"],
        revision_set=episode_pb2.RevisionSet(color="blue"),
        request_id="take-1",
    )


def test_rewrite_unlocked_takes_the_notes_that_follow_no_scene() -> None:
    request = parsed("--lock", "1", "--rewrite-unlocked", "--notes", "Tighter", "--scene", "2",
                     "--notes", "Own")  # fmt: skip
    assert request.rewrite_unlocked and request.unlocked_notes == "Tighter"
    assert [(n.scene, n.notes) for n in request.notes] == [("2", "Own")]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--notes", "x"], "--notes must follow a --scene (or --rewrite-unlocked)"),
        (["--scene", "3"], "--scene 3 needs its --notes after it"),
        (["--scene", "3", "--scene", "4", "--notes", "x"], "--scene 3 needs its --notes after it"),
        (["--insert-after", "3"], "--insert-after 3 needs its --beat after it"),
        (["--beat", "x"], "--beat must follow an --insert-after"),
        (
            ["--rewrite-unlocked", "--notes", "a", "--notes", "b"],
            "--rewrite-unlocked takes one --notes",
        ),
    ],
)
def test_mistakes_on_the_command_line_are_refused(args: list[str], message: str) -> None:
    with pytest.raises(RevisionArgumentError) as refused:
        parsed(*args)
    assert str(refused.value) == message
