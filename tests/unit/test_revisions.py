"""Production revision conventions (shared.revisions): the colour order, the next set, and locked
scene labels that always sort in story order."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doppelganger.v1 import episode_pb2
from shared.revisions import (
    COLOUR_ORDER,
    colour_position,
    default_revision_set,
    is_label,
    label_after,
    label_key,
    mark_hex,
    next_revision_set,
    printed_number,
    revision_colour,
)

INDUSTRY_ORDER = [
    "White",
    "Blue",
    "Pink",
    "Yellow",
    "Green",
    "Goldenrod",
    "Buff",
    "Salmon",
    "Cherry",
]


def test_the_industry_colour_order_then_double_and_triple_colours() -> None:
    assert [name for name, _ in COLOUR_ORDER] == INDUSTRY_ORDER
    names = [revision_colour(position)[0] for position in range(27)]
    assert names[:9] == INDUSTRY_ORDER
    assert names[9:18] == [f"Double {name}" for name in INDUSTRY_ORDER]
    assert names[18:] == [f"Triple {name}" for name in INDUSTRY_ORDER]
    assert revision_colour(10) == ("Double Blue", revision_colour(1)[1])
    assert revision_colour(9 * 7 + 2)[0] == "Pink (8)"
    assert all(colour_position(revision_colour(p)[0]) == p for p in range(45))
    assert colour_position(" double   blue ") == 10
    assert colour_position("Mauve") is None
    with pytest.raises(ValueError, match="negative"):
        revision_colour(-1)


def test_next_revision_set_follows_the_order_from_blue() -> None:
    state = episode_pb2.RevisionState()
    made = []
    for day in range(1, 12):
        revision_set = next_revision_set(state, datetime.date(2026, 11, day))
        state.sets.append(revision_set)
        made.append(revision_set)
    assert [s.color for s in made] == [
        *INDUSTRY_ORDER[1:],
        "Double White",
        "Double Blue",
        "Double Pink",
    ]
    assert [s.id for s in made] == list(range(1, 12))
    assert made[0] == episode_pb2.RevisionSet(
        id=1, name="Blue Revision", color="Blue", color_hex="#BFD7FF", date="2026-11-01"
    )
    assert made[8].name == "Double White Revision"


def test_next_revision_set_continues_after_a_named_colour_and_counts_custom_ones() -> None:
    state = episode_pb2.RevisionState(
        sets=[episode_pb2.RevisionSet(id=4, color="Yellow", name="Yellow Revision")]
    )
    after_yellow = next_revision_set(state, "2026-12-01")
    assert (after_yellow.id, after_yellow.color, after_yellow.date) == (5, "Green", "2026-12-01")
    state.sets.append(episode_pb2.RevisionSet(id=5, color="Studio Mauve"))
    assert next_revision_set(state, "2026-12-02").color == "Goldenrod"  # Mauve took Green's slot.


def test_marks_without_a_set_print_in_the_colour_of_their_pass() -> None:
    assert default_revision_set(2).color == "Pink"
    assert default_revision_set(2).name == "Pink Revision"
    assert mark_hex(episode_pb2.RevisionSet(color="Pink", color_hex="not a colour")) == "#FFCCE0"
    assert mark_hex(episode_pb2.RevisionSet(color_hex="#abcdef")) == "#ABCDEF"
    assert mark_hex(episode_pb2.RevisionSet(color="Mauve")) == "#BFD7FF"


def test_printed_number_prefers_the_locked_label() -> None:
    assert printed_number(episode_pb2.Scene(number=3, number_label="3A"), 9) == "3A"
    assert printed_number(episode_pb2.Scene(number=3), 9) == "3"
    assert printed_number(episode_pb2.Scene(), 9) == "9"


def test_labels_sort_as_scripts_and_scheduling_programs_order_them() -> None:
    labels = ["4", "3B", "3AA", "3", "3aA", "3A", "3aaA", "3AB", "10", "3Z", "3ZA", "3aB"]
    ordered = sorted(labels, key=label_key)
    assert ordered == ["3", "3aaA", "3aA", "3aB", "3A", "3AA", "3AB", "3B", "3Z", "3ZA", "4", "10"]
    for bad in ("", "A3", "3a", "3bA", "3-A", "three"):
        assert not is_label(bad)
        with pytest.raises(ValueError, match="not a scene label"):
            label_key(bad)
    assert is_label("12aA") and not is_label("1234aaA")


@pytest.mark.parametrize(
    ("prev", "following", "expected"),
    [
        ("3", "4", "3A"),
        ("3", None, "3A"),
        ("3A", "4", "3B"),
        ("3B", None, "3C"),
        ("3A", "3B", "3AA"),
        ("3AA", "3B", "3AB"),
        ("3Z", "4", "3ZA"),
        ("3", "3A", "3aA"),
        ("3", "3aA", "3aaA"),
        ("3aA", "3A", "3aB"),
        ("3A", "3AA", "3AAaA"),
        ("0", "1", "0A"),
        ("03", "4", "3A"),
    ],
)
def test_label_after(prev: str, following: str | None, expected: str) -> None:
    label = label_after(prev, following)
    assert label == expected
    assert label_key(prev) < label_key(label)
    if following is not None:
        assert label_key(label) < label_key(following)


def test_label_after_needs_a_later_next_label() -> None:
    with pytest.raises(ValueError, match="does not come after"):
        label_after("3A", "3A")
    with pytest.raises(ValueError, match="does not come after"):
        label_after("4", "3B")
    with pytest.raises(ValueError, match="not a scene label"):
        label_after("3 A")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=60))
def test_inserting_anywhere_keeps_labels_unique_and_in_story_order(picks: list[int]) -> None:
    """Scenes inserted at random places, each labelled between its neighbours: the labels stay
    distinct, valid and sorted in the order the scenes stand."""
    labels = [str(number) for number in range(1, 6)]
    for pick in picks:
        after = pick % (len(labels) + 1)  # 0: before the first scene.
        prev = labels[after - 1] if after else "0"
        following = labels[after] if after < len(labels) else None
        labels.insert(after, label_after(prev, following))
    assert len(set(labels)) == len(labels)
    assert sorted(labels, key=label_key) == labels  # label_key also rejects a malformed label.


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"[1-9][0-9]?(?:[aA-Z]{0,4}[A-Z])?", fullmatch=True),
    st.from_regex(r"[1-9][0-9]?(?:[aA-Z]{0,4}[A-Z])?", fullmatch=True),
)
def test_there_is_always_a_shortest_label_between_two(first: str, second: str) -> None:
    if label_key(first) == label_key(second):
        return
    low, high = sorted((first, second), key=label_key)
    label = label_after(low, high)
    assert label_key(low) < label_key(label) < label_key(high)
    assert label[-1].isupper()
