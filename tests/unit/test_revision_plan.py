"""ReviseEpisode requests (services/script/revision_plan.py): every refusal names its field, and
the plan puts each scene where it belongs with the right label and notes."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

from doppelganger.v1 import episode_pb2, script_pb2
from services.script.requests import InvalidRequest
from services.script.revision_plan import (
    INSERT,
    KEEP,
    LOCK,
    MAX_INSERTS,
    OMIT,
    REWRITE,
    check_revise,
    plan_revision,
    resolve_set,
    revised_draft_id,
)
from services.script.validation import validate_episode
from tests.unit.revision_drafts import first_draft

TODAY = datetime.date(2026, 11, 3)
DRAFT_ID = "ep-0123456789abcdef0123"


@pytest.fixture(scope="module")
def draft() -> episode_pb2.Episode:
    episode = first_draft()
    episode.id = DRAFT_ID
    return episode


def request(**fields: Any) -> script_pb2.ReviseEpisodeRequest:
    return script_pb2.ReviseEpisodeRequest(draft_id=DRAFT_ID, **fields)


def notes(*pairs: tuple[str, str]) -> list[script_pb2.SceneNotes]:
    return [script_pb2.SceneNotes(scene=scene, notes=text) for scene, text in pairs]


def inserts(*pairs: tuple[str, str]) -> list[script_pb2.SceneInsertion]:
    return [script_pb2.SceneInsertion(after=after, beat=beat) for after, beat in pairs]


def plan_of(draft: episode_pb2.Episode, message: script_pb2.ReviseEpisodeRequest):
    check_revise(message)
    return plan_revision(message, draft, TODAY)


def test_the_issue_s_revision_in_order(draft: episode_pb2.Episode) -> None:
    plan = plan_of(
        draft,
        request(
            lock=["1", "2", "5"],
            notes=notes(("3", "Meaner"), ("4", "")),
            inserts=inserts(("3", "Lux hides the badge"), ("3", "Rico finds it"), ("0", "Cold")),
            omit=["6"],
        ),
    )
    assert [(s.label, s.action, s.source) for s in plan.slots] == [
        ("0A", INSERT, -1),
        ("1", LOCK, 0),
        ("2", LOCK, 1),
        ("3", REWRITE, 2),
        ("3A", INSERT, -1),
        ("3B", INSERT, -1),
        ("4", REWRITE, 3),
        ("5", LOCK, 4),
        ("6", OMIT, 5),
        ("7", KEEP, 6),
        ("8", KEEP, 7),
    ]
    assert plan.of(REWRITE)[0].notes == "Meaner" and plan.of(REWRITE)[1].notes == ""
    inserted = plan.of(INSERT)
    assert [(s.after, s.beat, s.card.description) for s in inserted] == [
        ("0", "Cold", "Cold"),
        ("3", "Lux hides the badge", "Lux hides the badge"),
        ("3", "Rico finds it", "Rico finds it"),
    ]
    assert plan.lock_numbers and plan.parent_id == DRAFT_ID
    assert plan.revision_set == episode_pb2.RevisionSet(
        id=1, name="Blue Revision", color="Blue", color_hex="#BFD7FF", date="2026-11-03"
    )
    assert plan.summary.splitlines() == [
        "Blue Revision (2026-11-03)",
        "locked: 1, 2, 5",
        "rewrite 3: Meaner",
        "rewrite 4: (another take)",
        "insert 0A after 0: Cold",
        "insert 3A after 3: Lux hides the badge",
        "insert 3B after 3: Rico finds it",
        "omit: 6",
    ]


def test_rewrite_unlocked_takes_every_scene_not_locked_or_omitted(
    draft: episode_pb2.Episode,
) -> None:
    revised = episode_pb2.Episode()
    revised.CopyFrom(draft)
    revised.revision.numbers_locked = True
    revised.scenes[7].omitted = True  # Omitted in an earlier pass: nothing to rewrite.
    revised.scenes.insert(3, episode_pb2.Scene(index=8, number_label="3A"))
    plan = plan_of(
        revised,
        request(
            lock=["1", "2", "5"],
            notes=notes(("4", "Own notes")),
            rewrite_unlocked=True,
            unlocked_notes="Tighter",
            omit=["7"],
        ),
    )
    rewritten = [(s.label, s.notes) for s in plan.of(REWRITE)]
    assert rewritten == [("3", "Tighter"), ("3A", "Tighter"), ("4", "Own notes"), ("6", "Tighter")]
    assert not plan.lock_numbers
    # An insert after 3 now goes between 3 and 3A.
    between = plan_of(revised, request(inserts=inserts(("3", "Between"))))
    assert [s.label for s in between.slots[2:5]] == ["3", "3aA", "3A"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"draft_id": "ep-1"}, "draft_id must look like 'ep-' followed by 20 hex digits"),
        ({}, "nothing to change: give notes, rewrite_unlocked, inserts or omit"),
        ({"lock": ["1"]}, "nothing to change"),
        ({"notes": notes(("3", "x" * 2001))}, "notes[0].notes must be at most 2000 characters"),
        ({"notes": notes(("", "x"))}, "notes[0].scene is required"),
        ({"unlocked_notes": "x", "omit": ["6"]}, "unlocked_notes needs rewrite_unlocked"),
        (
            {"rewrite_unlocked": True, "unlocked_notes": "y" * 2001},
            "unlocked_notes must be at most 2000 characters",
        ),
        (
            {"inserts": inserts(*[("3", "b")] * (MAX_INSERTS + 1))},
            f"inserts has 21 entries; the limit is {MAX_INSERTS}",
        ),
        ({"inserts": inserts(("3", " "))}, "inserts[0].beat is required"),
        ({"inserts": inserts(("3", "b" * 2001))}, "inserts[0].beat must be at most 2000"),
        ({"omit": ["6"], "lock": ["1" * 17]}, "lock[0] must be at most 16 characters"),
        (
            {"omit": ["6"], "revision_set": episode_pb2.RevisionSet(color_hex="blue")},
            "revision_set.color_hex 'blue' is not a colour of the form #RRGGBB",
        ),
        (
            {"omit": ["6"], "revision_set": episode_pb2.RevisionSet(color="Mauve")},
            "revision_set.color 'Mauve' is not a colour of the industry order",
        ),
        (
            {"omit": ["6"], "revision_set": episode_pb2.RevisionSet(date="3 Nov")},
            "revision_set.date '3 Nov' is not an ISO date (YYYY-MM-DD)",
        ),
        (
            {"omit": ["6"], "revision_set": episode_pb2.RevisionSet(name="N" * 33)},
            "revision_set.name must be at most 32 characters",
        ),
        ({"omit": ["6"], "request_id": "a b"}, "request_id may only contain"),
        (
            {
                "inserts": [
                    script_pb2.SceneInsertion(
                        after="3", beat="b", card=episode_pb2.Beat(location="x" * 201)
                    )
                ]
            },
            "inserts[0].card.location must be at most 200 characters",
        ),
    ],
)
def test_requests_refused_without_the_draft_name_the_field(
    fields: dict[str, Any], message: str
) -> None:
    message_request = script_pb2.ReviseEpisodeRequest(draft_id=DRAFT_ID)
    for name, value in fields.items():
        if isinstance(value, list):
            getattr(message_request, name).extend(value)
        elif isinstance(value, episode_pb2.RevisionSet):
            message_request.revision_set.CopyFrom(value)
        else:
            setattr(message_request, name, value)
    with pytest.raises(InvalidRequest) as refused:
        check_revise(message_request)
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"lock": ["9"], "omit": ["6"]}, "lock[0] '9' is not a scene of draft ep-0123"),
        ({"notes": notes(("3B", "x"))}, "notes[0].scene '3B' is not a scene of draft"),
        ({"omit": ["12"]}, "omit[0] '12' is not a scene of draft"),
        ({"inserts": inserts(("44", "b"))}, "inserts[0].after '44' is not a scene of draft"),
        (
            {"lock": ["1", "3"], "notes": notes(("3", "x"))},
            "notes[0].scene '3' is locked (lock[1]); a locked scene comes back as it is",
        ),
        ({"lock": ["5"], "omit": ["5"]}, "omit[0] '5' is locked (lock[0]); a locked scene cannot"),
        ({"omit": ["6"], "notes": notes(("6", "x"))}, "notes[0].scene '6' is omitted (omit[0])"),
        ({"omit": ["6", "6"]}, "omit[1] '6' is named twice (also omit[0])"),
        ({"notes": notes(("3", "a"), ("3", "b"))}, "notes[1].scene '3' has notes twice"),
        (
            {"rewrite_unlocked": True, "lock": [str(n) for n in range(1, 9)]},
            "nothing to change: every scene rewrite_unlocked would rewrite is locked or omitted",
        ),
        (
            {
                "inserts": [
                    script_pb2.SceneInsertion(
                        after="3", beat="b", card=episode_pb2.Beat(characters=["Lucy"])
                    )
                ]
            },
            "inserts[0].card.characters[0] 'Lucy' is not in the cast",
        ),
    ],
)
def test_requests_that_do_not_fit_the_draft_name_the_field(
    draft: episode_pb2.Episode, fields: dict[str, Any], message: str
) -> None:
    message_request = request(**fields)
    check_revise(message_request)
    with pytest.raises(InvalidRequest) as refused:
        plan_revision(message_request, draft, TODAY)
    assert message in str(refused.value)


def test_an_insert_with_no_room_for_a_label_is_refused(draft: episode_pb2.Episode) -> None:
    crowded = episode_pb2.Episode()
    crowded.CopyFrom(draft)
    crowded.revision.numbers_locked = True
    crowded.scenes[2].number_label = "3ZZZZ"  # After it, 3ZZZZA: 6 characters, still fits.
    assert plan_of(crowded, request(inserts=inserts(("3ZZZZ", "b")))).of(INSERT)[0].label == (
        "3ZZZZA"
    )
    crowded.scenes[2].number_label = "3ZZZZZ"
    with pytest.raises(InvalidRequest) as refused:
        plan_of(crowded, request(inserts=inserts(("3ZZZZZ", "b"))))
    assert "inserts[0].after: the scene after '3ZZZZZ' would be '3ZZZZZA', longer than 6" in str(
        refused.value
    )
    crowded.scenes[2].number_label = "A3"  # An imported label: not one label_after extends.
    with pytest.raises(InvalidRequest) as imported:
        plan_of(crowded, request(inserts=inserts(("A3", "b"))))
    assert "inserts[0].after: no scene number fits after 'A3'" in str(imported.value)


def test_the_revision_set_follows_the_order_unless_the_request_names_one() -> None:
    blue = resolve_set(episode_pb2.RevisionSet(), episode_pb2.RevisionState(), TODAY)
    state = episode_pb2.RevisionState(sets=[blue], active_set=1, numbers_locked=True)
    pink = resolve_set(episode_pb2.RevisionSet(), state, TODAY)
    assert (pink.id, pink.name, pink.color, pink.color_hex) == (
        2,
        "Pink Revision",
        "Pink",
        "#FFCCE0",
    )
    chosen = resolve_set(episode_pb2.RevisionSet(color="double  blue"), state, TODAY)
    assert (chosen.id, chosen.name, chosen.color, chosen.color_hex) == (
        2,
        "Double Blue Revision",
        "Double Blue",
        "#BFD7FF",
    )
    own = resolve_set(
        episode_pb2.RevisionSet(
            name="Network notes", color="Mauve", color_hex="#e0b0ff", date="2026-12-01", id=9
        ),
        state,
        TODAY,
    )
    assert own == episode_pb2.RevisionSet(
        id=2, name="Network notes", color="Mauve", color_hex="#E0B0FF", date="2026-12-01"
    )


def test_the_draft_id_derives_from_the_parent_and_the_whole_request() -> None:
    base = request(omit=["6"])
    same = request(omit=["6"])
    assert revised_draft_id(DRAFT_ID, base) == revised_draft_id(DRAFT_ID, same)
    assert revised_draft_id(DRAFT_ID, base).startswith("ep-")
    other_take = request(omit=["6"], request_id="take-2")
    assert revised_draft_id(DRAFT_ID, other_take) != revised_draft_id(DRAFT_ID, base)
    assert revised_draft_id("ep-ffffffffffffffffffff", base) != revised_draft_id(DRAFT_ID, base)


def test_locked_numbers_are_checked_in_label_order(draft: episode_pb2.Episode) -> None:
    """Once numbers are locked, 3A after 3 and a kept 6 after an omitted scene are in order;
    a label out of order is the validator's numbering warning."""
    locked = episode_pb2.Episode()
    locked.CopyFrom(draft)
    locked.revision.numbers_locked = True
    inserted = episode_pb2.Scene()
    inserted.CopyFrom(draft.scenes[2])
    inserted.index, inserted.number, inserted.number_label = 8, 0, "3A"
    locked.scenes.insert(3, inserted)
    report = validate_episode(locked, 0.75)
    assert not [issue for issue in report.issues if issue.check == "numbering"]
    locked.scenes[3].number_label = "2A"
    report = validate_episode(locked, 0.75)
    assert [issue.message for issue in report.issues if issue.check == "numbering"] == [
        "scene 2A is numbered out of order after scene 3"
    ]
