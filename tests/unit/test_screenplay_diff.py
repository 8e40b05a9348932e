"""compare_drafts and mark_revisions (shared.screenplay_diff): scenes matched by locked number or
by heading, paragraphs by difflib, and marks that fall exactly on what changed."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from doppelganger.v1 import episode_pb2, library_pb2
from shared.revisions import label_after, next_revision_set
from shared.screenplay_diff import HEADING, compare_drafts, mark_revisions, paragraphs
from testkit import action, line, scene, transition

CHANGED = library_pb2.CHANGE_KIND_CHANGED
ADDED = library_pb2.CHANGE_KIND_ADDED
REMOVED = library_pb2.CHANGE_KIND_REMOVED
UNCHANGED = library_pb2.CHANGE_KIND_UNCHANGED
BLUE = episode_pb2.RevisionSet(id=1, name="Blue Revision", color="Blue", date="2026-11-03")
PINK = episode_pb2.RevisionSet(id=2, name="Pink Revision", color="Pink", date="2026-11-10")


def draft(scene_count: int = 5, draft_id: str = "base") -> episode_pb2.Episode:
    scenes = []
    for number in range(1, scene_count + 1):
        scenes.append(
            scene(
                f"room {number}",
                action(f"Scene {number} opens."),
                line("Luna", f"Line one of scene {number}."),
                line("Ricky", f"Line two of scene {number}.", parenthetical="dry"),
                transition("cut to:"),
                number=number,
            )
        )
    return episode_pb2.Episode(id=draft_id, scenes=scenes)


def locked(episode: episode_pb2.Episode, draft_id: str = "new") -> episode_pb2.Episode:
    copy = episode_pb2.Episode()
    copy.CopyFrom(episode)
    copy.id = draft_id
    copy.revision.numbers_locked = True
    for scene_ in copy.scenes:
        scene_.number_label = scene_.number_label or str(scene_.number)
    return copy


def changes(comparison: library_pb2.DraftComparison) -> list[tuple[int, str, str]]:
    return [(s.change, s.base_number, s.number) for s in comparison.scenes]


def test_identical_drafts_have_no_changes() -> None:
    base = draft()
    comparison = compare_drafts(base, locked(base))
    assert changes(comparison) == [(UNCHANGED, n, n) for n in "12345"]
    assert (comparison.changed_paragraphs, comparison.removed_paragraphs) == (0, 0)
    assert (comparison.base_draft_id, comparison.draft_id) == ("base", "new")
    assert compare_drafts(base, base).changed_paragraphs == 0


def test_a_changed_speech_is_one_changed_paragraph_without_its_cue() -> None:
    base = draft()
    new = locked(base)
    new.scenes[1].elements[2].dialogue.text = "Something else entirely."
    comparison = compare_drafts(base, new)
    assert changes(comparison)[1] == (CHANGED, "2", "2")
    [paragraph] = comparison.scenes[1].paragraphs
    assert paragraph == library_pb2.ParagraphDiff(
        change=CHANGED,
        element="dialogue",
        character="RICKY",
        base_text="Line two of scene 2.",
        text="Something else entirely.",
        base_element_index=2,
        element_index=2,
    )
    assert comparison.scenes[1].heading == "INT. ROOM 2 - DAY"
    assert (comparison.changed_paragraphs, comparison.removed_paragraphs) == (1, 0)
    [mark] = mark_revisions(base, new, BLUE).scenes[1].revision_marks
    assert (mark.element_index, mark.part, mark.revision_id) == (2, 3, 1)  # Cue, (dry), speech.


def test_each_printed_part_of_a_dialogue_is_compared_on_its_own() -> None:
    """Cue, parenthetical and speech are paragraphs of their own; a line given to another
    speaker changes all of them (the same words from someone else are a changed line)."""
    base = draft(1)
    for edit, expected in (
        (
            lambda s: setattr(s.elements[1].dialogue, "character", "Ethel"),
            ["character", "dialogue"],
        ),
        (
            lambda s: setattr(s.elements[2].dialogue, "character", "Ethel"),
            ["character", "parenthetical", "dialogue"],
        ),
        (lambda s: setattr(s.elements[1].dialogue, "extension", "V.O."), ["character"]),
        (lambda s: setattr(s.elements[1].dialogue, "parenthetical", "softly"), ["parenthetical"]),
        (lambda s: setattr(s.elements[2].dialogue, "parenthetical", "wet"), ["parenthetical"]),
        (lambda s: setattr(s.slugline, "time_of_day", "NIGHT"), ["heading"]),
        (lambda s: setattr(s.elements[3].transition, "text", "smash cut to:"), ["transition"]),
    ):
        new = locked(base)
        edit(new.scenes[0])
        comparison = compare_drafts(base, new)
        found = sorted(p.element for p in comparison.scenes[0].paragraphs if p.change != REMOVED)
        assert found == sorted(expected), found
        assert comparison.changed_paragraphs == len(expected)
    given_away = locked(base)
    given_away.scenes[0].elements[2].dialogue.character = "Ethel"
    paragraphs_ = compare_drafts(base, given_away).scenes[0].paragraphs
    assert [(p.change, p.element, p.text) for p in paragraphs_] == [
        (CHANGED, "character", "ETHEL"),
        (CHANGED, "parenthetical", "(dry)"),
        (CHANGED, "dialogue", "Line two of scene 1."),
    ]
    new = locked(base)
    new.scenes[0].elements[0].action.text = "  Scene 1\nopens. "  # Whitespace only.
    new.scenes[0].summary = "A new synopsis"  # Not printed: not a paragraph.
    assert compare_drafts(base, new).changed_paragraphs == 0


def test_an_inserted_scene_and_an_omitted_one_with_locked_numbers() -> None:
    base = draft(5)
    new = locked(base)
    inserted = scene("new room", action("Fresh."), line("Luna", "Hello."))
    inserted.number_label = label_after("3", "4")
    new.scenes.insert(3, inserted)
    new.scenes[4].omitted = True  # Scene 4 cut: it keeps its number and prints OMITTED.
    comparison = compare_drafts(base, new)
    assert changes(comparison) == [
        (UNCHANGED, "1", "1"),
        (UNCHANGED, "2", "2"),
        (UNCHANGED, "3", "3"),
        (ADDED, "", "3A"),
        (REMOVED, "4", "4"),
        (UNCHANGED, "5", "5"),
    ]
    added, omitted = comparison.scenes[3], comparison.scenes[4]
    assert [(p.change, p.element, p.element_index) for p in added.paragraphs] == [
        (ADDED, "heading", HEADING),
        (ADDED, "action", 0),
        (ADDED, "character", 1),
        (ADDED, "dialogue", 1),
    ]
    assert (added.base_scene_index, added.scene_index) == (-1, 3)
    assert omitted.heading == "INT. ROOM 4 - DAY"  # Removed: the base's heading.
    assert [(p.change, p.element) for p in omitted.paragraphs] == [
        (CHANGED, "heading"),
        (REMOVED, "action"),
        (REMOVED, "character"),
        (REMOVED, "dialogue"),
        (REMOVED, "character"),
        (REMOVED, "parenthetical"),
        (REMOVED, "dialogue"),
        (REMOVED, "transition"),
    ]
    assert omitted.paragraphs[0].text == "OMITTED"
    assert comparison.changed_paragraphs == 4 + 1  # The new scene, and the OMITTED line.
    assert comparison.removed_paragraphs == 7


def test_a_deleted_scene_follows_the_scene_before_it() -> None:
    base = draft(4)
    new = locked(base)
    del new.scenes[1]
    comparison = compare_drafts(base, new)
    assert changes(comparison) == [
        (UNCHANGED, "1", "1"),
        (REMOVED, "2", ""),
        (UNCHANGED, "3", "3"),
        (UNCHANGED, "4", "4"),
    ]
    assert comparison.scenes[1].scene_index == -1
    assert comparison.removed_paragraphs == 8
    assert comparison.changed_paragraphs == 0


def test_without_locked_numbers_scenes_match_by_heading_and_place() -> None:
    base = draft(4)
    new = episode_pb2.Episode()
    new.CopyFrom(base)
    new.scenes.insert(1, scene("somewhere new", action("New.")))
    new.scenes[3].slugline.location = "renamed room"  # Was "room 3": same place, rewritten.
    new.scenes[3].elements[0].action.text = "It opens differently."
    for position, scene_ in enumerate(new.scenes, 1):
        scene_.number = position  # Renumbered: numbers are not locked.
    comparison = compare_drafts(base, new)
    assert changes(comparison) == [
        (UNCHANGED, "1", "1"),
        (ADDED, "", "2"),
        (UNCHANGED, "2", "3"),
        (CHANGED, "3", "4"),
        (UNCHANGED, "4", "5"),
    ]
    assert comparison.changed_paragraphs == 2 + 2  # The new scene; the heading and the action.
    unrelated = episode_pb2.Episode()
    unrelated.CopyFrom(base)
    unrelated.scenes[2].CopyFrom(scene("elsewhere", action("Nothing alike.")))
    assert changes(compare_drafts(base, unrelated))[2:4] == [(REMOVED, "3", ""), (ADDED, "", "3")]


def test_mark_revisions_marks_exactly_the_changed_paragraphs() -> None:
    base = draft(5)
    new = locked(base)
    new.scenes[0].elements[1].dialogue.text = "Changed."
    new.scenes[0].elements.insert(1, action("An added beat."))
    new.scenes[2].slugline.location = "moved room"
    new.scenes[4].omitted = True
    marked = mark_revisions(base, new, BLUE)
    comparison = compare_drafts(base, new)
    marks = {
        i: [(m.element_index, m.part, m.revision_id) for m in s.revision_marks]
        for i, s in enumerate(marked.scenes)
    }
    assert marks == {
        0: [(1, 1, 1), (2, 2, 1)],  # The new action; the speech of the shifted line, not its cue.
        1: [],
        2: [(HEADING, 1, 1)],
        3: [],
        4: [(HEADING, 1, 1)],
    }
    assert sum(len(m) for m in marks.values()) == comparison.changed_paragraphs == 4
    assert list(marked.revision.sets) == [BLUE]
    assert marked.revision.active_set == 1
    assert marked.revision.numbers_locked
    assert not new.scenes[0].revision_marks  # The input is left alone.


def test_a_second_pass_keeps_older_marks_where_nothing_changed() -> None:
    base = draft(3)
    blue = locked(base, "blue")
    blue.scenes[0].elements[1].dialogue.text = "Blue line."
    blue.scenes[1].elements[0].action.text = "Blue action."
    blue = mark_revisions(base, blue, BLUE)
    pink = locked(blue, "pink")
    pink.scenes[0].elements[1].dialogue.text = "Pink line."  # Changed again.
    pink.scenes[1].elements.insert(0, action("Pink beat."))  # Shifts the blue action to 1.
    pink.scenes[2].elements[2].dialogue.text = "Pink too."
    pink = mark_revisions(blue, pink, PINK)
    marks = [
        [(m.element_index, m.part, m.revision_id) for m in s.revision_marks] for s in pink.scenes
    ]
    assert marks == [[(1, 2, 2)], [(0, 1, 2), (1, 1, 1)], [(2, 3, 2)]]
    assert [s.id for s in pink.revision.sets] == [1, 2]
    assert pink.revision.active_set == 2


def test_a_whole_element_mark_carries_over_to_each_unchanged_part() -> None:
    """Part 0 marks every paragraph of an element (older drafts hold such marks): what stays
    unchanged keeps that set, part by part."""
    base = draft(1)
    blue = locked(base, "blue")
    blue.scenes[0].revision_marks.add(element_index=2, part=0, revision_id=1)
    blue.revision.sets.append(BLUE)
    pink = locked(blue, "pink")
    pink.scenes[0].elements[2].dialogue.parenthetical = "wet"
    pink = mark_revisions(blue, pink, PINK)
    marks = [(m.element_index, m.part, m.revision_id) for m in pink.scenes[0].revision_marks]
    assert marks == [(2, 1, 1), (2, 2, 2), (2, 3, 1)]


def test_a_revision_set_needs_an_id() -> None:
    with pytest.raises(ValueError, match=r"revision_set\.id"):
        mark_revisions(draft(1), draft(1), episode_pb2.RevisionSet(name="Blue"))


def test_paragraphs_skip_what_prints_nothing() -> None:
    silent = scene(
        "room", action("   "), transition(""), line("Luna", ""), action("Real.\n\n\x00\nTwo.")
    )
    assert [(p.element_index, p.part, p.element, p.text) for p in paragraphs(silent)] == [
        (HEADING, 1, "heading", "INT. ROOM - DAY"),
        (2, 1, "character", "LUNA"),
        (2, 2, "dialogue", "..."),  # Nothing to say prints "...".
        (3, 1, "action", "Real."),
        (3, 2, "action", "Two."),
    ]
    silent.omitted = True
    assert [p.text for p in paragraphs(silent)] == ["OMITTED"]


EDITS = st.lists(
    st.tuples(
        st.sampled_from(["change", "insert", "delete", "heading", "omit", "add_scene"]),
        st.integers(min_value=0, max_value=1000),
        st.integers(min_value=0, max_value=1000),
    ),
    max_size=12,
)


@settings(max_examples=150, deadline=None)
@given(EDITS, st.booleans())
def test_marks_are_exactly_the_changed_paragraphs_of_any_edit(
    edits: list[tuple[str, int, int]], lock: bool
) -> None:
    """Random edits: one mark a changed paragraph, each on a paragraph of the new draft that the
    comparison calls changed or added, and a draft compared with itself has no change."""
    base = draft(4)
    new = locked(base) if lock else episode_pb2.Episode(id="new", scenes=base.scenes)
    for kind, pick, other in edits:
        target = new.scenes[pick % len(new.scenes)]
        count = len(target.elements)
        if kind == "change" and count:
            element = target.elements[other % count]
            if element.HasField("dialogue"):
                element.dialogue.text += f" {pick}"
            elif element.HasField("action"):
                element.action.text += f" {pick}"
        elif kind == "insert":
            target.elements.insert(other % (count + 1), line("Ethel", f"New {pick}."))
        elif kind == "delete" and count:
            del target.elements[other % count]
        elif kind == "heading":
            target.slugline.location += f" {pick}"
        elif kind == "omit":
            target.omitted = True
        elif kind == "add_scene":
            position = other % (len(new.scenes) + 1)
            added = scene(f"added {pick}", action(f"Added {pick}."))
            previous = new.scenes[position - 1].number_label if position else "0"
            following = new.scenes[position].number_label if position < len(new.scenes) else None
            added.number_label = (
                label_after(previous or str(position), following or None) if lock else ""
            )
            new.scenes.insert(position, added)
    revision_set = next_revision_set(base.revision, "2026-11-03")
    marked = mark_revisions(base, new, revision_set)
    comparison = compare_drafts(base, new)
    expected = Counter(
        (diff.scene_index, paragraph.element_index)
        for diff in comparison.scenes
        for paragraph in diff.paragraphs
        if paragraph.change in (CHANGED, ADDED)
    )
    found = [
        (index, mark.element_index, mark.part)
        for index, scene_ in enumerate(marked.scenes)
        for mark in scene_.revision_marks
    ]
    assert len(found) == len(set(found)) == comparison.changed_paragraphs
    assert Counter((index, element) for index, element, _ in found) == expected
    texts = {
        (index, p.element_index, p.part): p.text
        for index, scene_ in enumerate(marked.scenes)
        for p in paragraphs(scene_)
    }
    changed_texts = [
        p.text for d in comparison.scenes for p in d.paragraphs if p.change in (CHANGED, ADDED)
    ]
    assert sorted(texts[place] for place in found) == sorted(changed_texts)
    assert all(m.revision_id == revision_set.id for s in marked.scenes for m in s.revision_marks)
    assert compare_drafts(marked, marked).changed_paragraphs == 0
    new_scenes = [d.scene_index for d in comparison.scenes if d.scene_index >= 0]
    assert new_scenes == list(range(len(new.scenes)))  # Every new scene once, in order.
    base_scenes = sorted(d.base_scene_index for d in comparison.scenes if d.base_scene_index >= 0)
    assert base_scenes == list(range(len(base.scenes)))
