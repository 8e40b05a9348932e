"""Two drafts compared scene by scene and paragraph by paragraph, and the revision marks that
follow from it. Pure; depends on nothing but the generated stubs (and `shared.revisions`).

A paragraph is what a reader sees as one: a scene heading, an action, a dialogue line with its
speaker, extension and parenthetical, a transition. Elements that print nothing (empty action or
transition) are not paragraphs. An omitted scene has one paragraph, its OMITTED heading.

Scenes are matched by printed number when either draft has locked numbers (a cut scene keeps its
number and prints OMITTED: REMOVED; a new number is an ADDED scene); otherwise by aligning the
headings (difflib), pairing rewritten scenes that stand in the same place when their paragraphs
are at least `SAME_SCENE_RATIO` alike. Paragraphs are aligned with difflib; inside a replaced
run the paragraphs pair up in order (CHANGED), and what is left over is ADDED or REMOVED.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import NamedTuple

from doppelganger.v1 import episode_pb2, library_pb2
from shared.revisions import printed_number

HEADING = -1  # RevisionMark.element_index of the scene heading.
OMITTED = "OMITTED"
SAME_SCENE_RATIO = 0.3
PLACEMENTS = {
    episode_pb2.PLACEMENT_INT: "INT.",
    episode_pb2.PLACEMENT_EXT: "EXT.",
    episode_pb2.PLACEMENT_INT_EXT: "INT./EXT.",
}
# Characters the renderers print as a space (as services/scene/fountain.py's CONTROL_RE).
CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\ufffe\uffff]")
CHANGED = library_pb2.CHANGE_KIND_CHANGED
ADDED = library_pb2.CHANGE_KIND_ADDED
REMOVED = library_pb2.CHANGE_KIND_REMOVED
UNCHANGED = library_pb2.CHANGE_KIND_UNCHANGED


class Paragraph(NamedTuple):
    """One printed paragraph of a scene; `key` is what must be equal for it to be unchanged."""

    element_index: int  # Index into Scene.elements; HEADING for the heading.
    element: str  # "heading", "action", "dialogue", "transition".
    character: str
    text: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.element, self.character, self.text


@dataclass
class SceneAlignment:
    """How one scene of the newer draft relates to the base: its differing paragraphs, and for
    each unchanged paragraph the base paragraph it continues."""

    diff: library_pb2.SceneDiff
    kept: dict[int, int] = field(default_factory=dict)  # New index -> base index (HEADING too).


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
    changed since `base`; unchanged paragraphs keep the mark they had in `base` (an older set).

    The copy's revision state holds the sets of both drafts and `revision_set`, which becomes the
    active set. For a single pass the marks number exactly `changed_paragraphs`.
    """
    if revision_set.id <= 0:
        raise ValueError(f"revision_set.id must be positive, not {revision_set.id}")
    marked = episode_pb2.Episode()
    marked.CopyFrom(new)
    base_marks = {
        index: {mark.element_index: mark.revision_id for mark in scene.revision_marks}
        for index, scene in enumerate(base.scenes)
    }
    for alignment in align_drafts(base, new):
        diff = alignment.diff
        if diff.scene_index < 0:
            continue  # Gone from the newer draft: nothing to mark.
        old = base_marks.get(diff.base_scene_index, {})
        marks = {now: old[was] for now, was in alignment.kept.items() if was in old}
        for paragraph in diff.paragraphs:
            if paragraph.change in (CHANGED, ADDED):
                marks[paragraph.element_index] = revision_set.id
        scene = marked.scenes[diff.scene_index]
        del scene.revision_marks[:]
        scene.revision_marks.extend(
            episode_pb2.RevisionMark(element_index=index, revision_id=marks[index])
            for index in sorted(marks)
        )
    sets = {s.id: s for s in (*base.revision.sets, *new.revision.sets)}
    sets[revision_set.id] = revision_set
    del marked.revision.sets[:]
    marked.revision.sets.extend(sets[key] for key in sorted(sets))
    marked.revision.active_set = revision_set.id
    return marked


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
        diff.paragraphs.extend(_added(p) for p in paragraphs(new_scene))
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
    """The scene's printed paragraphs: heading first, then its elements (none when omitted)."""
    found = [Paragraph(HEADING, "heading", "", _heading_text(scene))]
    if scene.omitted:
        return found
    for index, element in enumerate(scene.elements):
        kind = element.WhichOneof("element")
        if kind == "action" and (text := _clean(element.action.text)):
            found.append(Paragraph(index, "action", "", text))
        elif kind == "dialogue":
            line = element.dialogue
            speaker = _clean(line.character).upper()
            extension = _clean(line.extension).upper()
            parenthetical = _clean(line.parenthetical)
            shown = " ".join(
                part
                for part in (
                    f"({extension})" if extension else "",
                    f"({parenthetical.strip('()')})" if parenthetical else "",
                    _clean(line.text),
                )
                if part
            )
            found.append(Paragraph(index, "dialogue", speaker, shown))
        elif kind == "transition" and (text := _transition_text(element.transition.text)):
            found.append(Paragraph(index, "transition", "", text))
    return found


def _diff_paragraphs(base: list[Paragraph], new: list[Paragraph], into: SceneAlignment) -> None:
    """Appends the differing paragraphs to `into.diff` and records the unchanged ones."""
    matcher = difflib.SequenceMatcher(
        None, [p.key for p in base], [p.key for p in new], autojunk=False
    )
    diffs: list[library_pb2.ParagraphDiff] = []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            into.kept.update(
                {new[j1 + k].element_index: base[i1 + k].element_index for k in range(i2 - i1)}
            )
            continue
        olds, news = base[i1:i2], new[j1:j2]
        for old, current in zip(olds, news, strict=False):
            diffs.append(_changed(old, current))
        diffs += [_removed(old) for old in olds[len(news) :]]
        diffs += [_added(current) for current in news[len(olds) :]]
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


def _transition_text(text: str) -> str:
    """As printed: capitals, without a trailing `<` (it would read as centred text)."""
    return _clean(text).upper().rstrip("< ")


def _heading_text(scene: episode_pb2.Scene) -> str:
    """The heading as printed (without its number); OMITTED for an omitted scene."""
    if scene.omitted:
        return OMITTED
    slugline = scene.slugline
    text = _clean(slugline.location).upper()
    if placement := PLACEMENTS.get(slugline.placement, ""):
        text = f"{placement} {text}".strip()
    if time_of_day := _clean(slugline.time_of_day).upper():
        text += f" - {time_of_day}"
    return text


def _clean(text: str) -> str:
    """The text as the Fountain renderer prints it: control characters are spaces, whitespace
    runs one space (so what prints nothing there is no paragraph here)."""
    return " ".join(CONTROL_RE.sub(" ", text).split())
