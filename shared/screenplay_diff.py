"""Two drafts compared scene by scene and paragraph by paragraph, and the revision marks that
follow from it. Pure; depends on nothing but the generated stubs (and `shared.revisions`,
`shared.printed`).

A paragraph is what prints as one (shared/printed.py): the scene heading, each paragraph of an
action, a transition, and of a dialogue its cue, its parenthetical and each line of its speech,
each compared and marked on its own, so that changing only what a character says marks only that
line (FDX prints each of them as one <Paragraph>; the PDF puts asterisks on its lines only).
A part of a dialogue is the same only when its speaker is the same too: a line given to someone
else is a changed line. What prints nothing is no paragraph. An omitted scene has one paragraph,
its OMITTED heading.

Scenes are matched by printed number when either draft has locked numbers (a cut scene keeps its
number and prints OMITTED: REMOVED; a new number is an ADDED scene); otherwise by aligning the
headings (difflib), pairing rewritten scenes that stand in the same place when their paragraphs
are at least `SAME_SCENE_RATIO` alike. Paragraphs are aligned with difflib; inside a replaced
run the paragraphs pair up in order (CHANGED), and what is left over is ADDED or REMOVED.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import NamedTuple

from doppelganger.v1 import episode_pb2, library_pb2
from shared.printed import CHARACTER, element_parts, inline, speaker
from shared.revisions import printed_number

HEADING = -1  # RevisionMark.element_index of the scene heading.
OMITTED = "OMITTED"
SAME_SCENE_RATIO = 0.3
PLACEMENTS = {
    episode_pb2.PLACEMENT_INT: "INT.",
    episode_pb2.PLACEMENT_EXT: "EXT.",
    episode_pb2.PLACEMENT_INT_EXT: "INT./EXT.",
}
CHANGED = library_pb2.CHANGE_KIND_CHANGED
ADDED = library_pb2.CHANGE_KIND_ADDED
REMOVED = library_pb2.CHANGE_KIND_REMOVED
UNCHANGED = library_pb2.CHANGE_KIND_UNCHANGED


Place = tuple[int, int]  # (element index, part): where a paragraph is (RevisionMark's fields).


class Paragraph(NamedTuple):
    """One printed paragraph of a scene; `key` is what must be equal for it to be unchanged."""

    element_index: int  # Index into Scene.elements; HEADING for the heading.
    part: int  # 1-based among the element's printed paragraphs (RevisionMark.part).
    element: str  # "heading", "action", "transition", "character", "parenthetical", "dialogue".
    character: str  # The speaker, for the parts of a dialogue.
    text: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.element, self.character, self.text

    @property
    def place(self) -> Place:
        return self.element_index, self.part


@dataclass
class SceneAlignment:
    """How one scene of the newer draft relates to the base: its differing paragraphs, and for
    each unchanged paragraph the base paragraph it continues."""

    diff: library_pb2.SceneDiff
    kept: dict[Place, Place] = field(default_factory=dict)  # New place -> base place.
    changed: list[Place] = field(default_factory=list)  # New places of changed or added ones.


def compare_drafts(
    base: episode_pb2.Episode, new: episode_pb2.Episode
) -> library_pb2.DraftComparison:
    """The DraftComparison of `new` against `base`, every scene in the newer draft's order."""
    alignments = align_drafts(base, new)
    comparison = library_pb2.DraftComparison(
        base_draft_id=base.id, draft_id=new.id, scenes=[a.diff for a in alignments]
    )
    for alignment in alignments:
        for paragraph in alignment.diff.paragraphs:
            if paragraph.change in (CHANGED, ADDED):
                comparison.changed_paragraphs += 1
            elif paragraph.change == REMOVED:
                comparison.removed_paragraphs += 1
    return comparison


def mark_revisions(
    base: episode_pb2.Episode, new: episode_pb2.Episode, revision_set: episode_pb2.RevisionSet
) -> episode_pb2.Episode:
    """A copy of `new` whose scenes mark, with `revision_set`, every paragraph that is new or
    changed since `base`, one mark a paragraph (RevisionMark.part names it); unchanged
    paragraphs keep the mark they had in `base` (an older set; a whole-element mark of `base`,
    part 0, carries over to each of the element's paragraphs), and a scene with no change keeps
    its marks exactly as they were (so a locked scene comes back byte for byte).

    The copy's revision state holds the sets of both drafts and `revision_set`, which becomes the
    active set. For a single pass the marks number exactly `changed_paragraphs`.
    """
    if revision_set.id <= 0:
        raise ValueError(f"revision_set.id must be positive, not {revision_set.id}")
    marked = episode_pb2.Episode()
    marked.CopyFrom(new)
    base_marks = {index: _marks_of(scene) for index, scene in enumerate(base.scenes)}
    for alignment in align_drafts(base, new):
        diff = alignment.diff
        if diff.scene_index < 0:
            continue  # Gone from the newer draft: nothing to mark.
        scene = marked.scenes[diff.scene_index]
        if diff.change == UNCHANGED:  # Nothing changed: its marks stay exactly as they were.
            del scene.revision_marks[:]
            scene.revision_marks.extend(base.scenes[diff.base_scene_index].revision_marks)
            continue
        old = base_marks.get(diff.base_scene_index, {})
        marks: dict[Place, int] = {}
        for now, (index, part) in alignment.kept.items():
            revision = max(old.get((index, part), 0), old.get((index, 0), 0))
            if revision:
                marks[now] = revision
        marks.update({place: revision_set.id for place in alignment.changed})
        del scene.revision_marks[:]
        scene.revision_marks.extend(
            episode_pb2.RevisionMark(element_index=index, part=part, revision_id=marks[index, part])
            for index, part in sorted(marks)
        )
    sets = {s.id: s for s in (*base.revision.sets, *new.revision.sets)}
    sets[revision_set.id] = revision_set
    del marked.revision.sets[:]
    marked.revision.sets.extend(sets[key] for key in sorted(sets))
    marked.revision.active_set = revision_set.id
    return marked


def _marks_of(scene: episode_pb2.Scene) -> dict[Place, int]:
    """The scene's marks by place, the newest set where two name one place."""
    marks: dict[Place, int] = {}
    for mark in scene.revision_marks:
        place = (mark.element_index, mark.part)
        marks[place] = max(marks.get(place, 0), mark.revision_id)
    return marks


# --- Scenes --------------------------------------------------------------------------------------


def align_drafts(base: episode_pb2.Episode, new: episode_pb2.Episode) -> list[SceneAlignment]:
    """Every scene of either draft, aligned, in the newer draft's order (a removed scene comes
    right after the scene that preceded it in the base)."""
    locked = base.revision.numbers_locked or new.revision.numbers_locked
    pairs = _pair_by_number(base, new) if locked else _pair_by_heading(base, new)
    return [_align_scene(base, new, base_index, new_index) for base_index, new_index in pairs]


def _pair_by_number(base: episode_pb2.Episode, new: episode_pb2.Episode) -> list[tuple[int, int]]:
    base_numbers = {printed_number(s, i): i - 1 for i, s in enumerate(base.scenes, 1)}
    matches: dict[int, int] = {}  # New index -> base index.
    for position, scene in enumerate(new.scenes, 1):
        base_index = base_numbers.get(printed_number(scene, position))
        if base_index is not None and base_index not in matches.values():
            matches[position - 1] = base_index
    return _merge(len(base.scenes), len(new.scenes), matches)


def _pair_by_heading(base: episode_pb2.Episode, new: episode_pb2.Episode) -> list[tuple[int, int]]:
    base_headings = [_heading_text(scene) for scene in base.scenes]
    new_headings = [_heading_text(scene) for scene in new.scenes]
    matcher = difflib.SequenceMatcher(None, base_headings, new_headings, autojunk=False)
    matches: dict[int, int] = {}
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            matches.update({j1 + k: i1 + k for k in range(i2 - i1)})
        elif tag == "replace":
            for k in range(min(i2 - i1, j2 - j1)):
                base_keys = [p.key for p in paragraphs(base.scenes[i1 + k])]
                new_keys = [p.key for p in paragraphs(new.scenes[j1 + k])]
                ratio = difflib.SequenceMatcher(None, base_keys, new_keys, autojunk=False).ratio()
                if ratio >= SAME_SCENE_RATIO:
                    matches[j1 + k] = i1 + k
    return _merge(len(base.scenes), len(new.scenes), matches)


def _merge(base_count: int, new_count: int, matches: dict[int, int]) -> list[tuple[int, int]]:
    """(base index, new index) pairs, -1 for a missing side, in the newer draft's order; an
    unmatched base scene follows the new scene matched to the base scene before it."""
    matched_base = set(matches.values())
    placed: set[int] = set()
    pairs: list[tuple[int, int]] = []

    def removed_after(base_index: int) -> None:
        for index in range(base_index + 1, base_count):
            if index in matched_base:
                return
            pairs.append((index, -1))
            placed.add(index)

    removed_after(-1)
    for new_index in range(new_count):
        base_index = matches.get(new_index, -1)
        pairs.append((base_index, new_index))
        if base_index >= 0:
            removed_after(base_index)
    done = matched_base | placed
    pairs += [(index, -1) for index in range(base_count) if index not in done]
    return pairs


def _align_scene(
    base: episode_pb2.Episode, new: episode_pb2.Episode, base_index: int, new_index: int
) -> SceneAlignment:
    """One scene's diff. Its heading is the newer draft's, or the base's when the scene is gone
    or omitted (REMOVED)."""
    base_scene = base.scenes[base_index] if base_index >= 0 else None
    new_scene = new.scenes[new_index] if new_index >= 0 else None
    diff = library_pb2.SceneDiff(base_scene_index=base_index, scene_index=new_index)
    alignment = SceneAlignment(diff)
    if base_scene is not None:
        diff.base_number = printed_number(base_scene, base_index + 1)
        diff.heading = _heading_text(base_scene)
    if new_scene is not None:
        diff.number = printed_number(new_scene, new_index + 1)
    if new_scene is None:
        assert base_scene is not None
        diff.change = REMOVED
        diff.paragraphs.extend(_removed(p) for p in paragraphs(base_scene))
    elif base_scene is None:
        diff.change = ADDED
        diff.heading = _heading_text(new_scene)
        added = paragraphs(new_scene)
        diff.paragraphs.extend(_added(p) for p in added)
        alignment.changed.extend(p.place for p in added)
    else:
        _diff_paragraphs(paragraphs(base_scene), paragraphs(new_scene), alignment)
        if new_scene.omitted and not base_scene.omitted:
            diff.change = REMOVED
        else:
            diff.change = CHANGED if diff.paragraphs else UNCHANGED
            diff.heading = _heading_text(new_scene)
    return alignment


# --- Paragraphs ----------------------------------------------------------------------------------


def paragraphs(scene: episode_pb2.Scene) -> list[Paragraph]:
    """The scene's printed paragraphs: heading first, then its elements' (none when omitted)."""
    found = [Paragraph(HEADING, 1, "heading", "", _heading_text(scene))]
    if scene.omitted:
        return found
    for index, element in enumerate(scene.elements):
        parts = element_parts(element)
        if not parts:
            continue
        character = speaker(element.dialogue) if parts[0].kind == CHARACTER else ""
        found += [
            Paragraph(index, number, part.kind, character, part.text)
            for number, part in enumerate(parts, 1)
        ]
    return found


def _diff_paragraphs(base: list[Paragraph], new: list[Paragraph], into: SceneAlignment) -> None:
    """Appends the differing paragraphs to `into.diff` and records the unchanged ones."""
    matcher = difflib.SequenceMatcher(
        None, [p.key for p in base], [p.key for p in new], autojunk=False
    )
    diffs: list[library_pb2.ParagraphDiff] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            into.kept.update({new[j1 + k].place: base[i1 + k].place for k in range(i2 - i1)})
            continue
        olds, news = base[i1:i2], new[j1:j2]
        for old, current in zip(olds, news, strict=False):
            diffs.append(_changed(old, current))
        diffs += [_removed(old) for old in olds[len(news) :]]
        diffs += [_added(current) for current in news[len(olds) :]]
        into.changed.extend(current.place for current in news)
    into.diff.paragraphs.extend(diffs)


def _changed(old: Paragraph, new: Paragraph) -> library_pb2.ParagraphDiff:
    return library_pb2.ParagraphDiff(
        change=CHANGED,
        element=new.element,
        character=new.character,
        base_text=old.text,
        text=new.text,
        base_element_index=old.element_index,
        element_index=new.element_index,
    )


def _added(new: Paragraph) -> library_pb2.ParagraphDiff:
    return library_pb2.ParagraphDiff(
        change=ADDED,
        element=new.element,
        character=new.character,
        text=new.text,
        base_element_index=HEADING,
        element_index=new.element_index,
    )


def _removed(old: Paragraph) -> library_pb2.ParagraphDiff:
    return library_pb2.ParagraphDiff(
        change=REMOVED,
        element=old.element,
        character=old.character,
        base_text=old.text,
        base_element_index=old.element_index,
        element_index=HEADING,
    )


def _heading_text(scene: episode_pb2.Scene) -> str:
    """The heading as printed (without its number); OMITTED for an omitted scene."""
    if scene.omitted:
        return OMITTED
    slugline = scene.slugline
    text = inline(slugline.location).upper()
    if placement := PLACEMENTS.get(slugline.placement, ""):
        text = f"{placement} {text}".strip()
    if time_of_day := inline(slugline.time_of_day).upper():
        text += f" - {time_of_day}"
    return text
