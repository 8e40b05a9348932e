"""A first draft and its Blue revision, for the revision tests: an 8-scene generated episode,
then numbers locked, a few lines changed (one speech so long it breaks across pages), a scene
inserted after 3 (3A) and scene 6 omitted, marked with `mark_revisions`."""

from __future__ import annotations

from dataclasses import dataclass

from doppelganger.v1 import episode_pb2, library_pb2
from shared.revisions import label_after, next_revision_set
from shared.screenplay_diff import compare_drafts, mark_revisions
from testkit import action, generated_episode, line, scene, transition

LONG_SPEECH = " ".join(f"This is sentence {n} of a speech that will not end." for n in range(40))
REVISION_DATE = "2026-11-03"


@dataclass(frozen=True)
class RevisedDraft:
    base: episode_pb2.Episode
    revised: episode_pb2.Episode  # Marked: revision_marks and revision state set.
    comparison: library_pb2.DraftComparison
    revision_set: episode_pb2.RevisionSet


def first_draft() -> episode_pb2.Episode:
    base = generated_episode("i-love-lucy", "mars-colony-2157", 8, 7)
    base.id = "draft-1"
    for position, scene_ in enumerate(base.scenes, 1):
        scene_.index, scene_.number = position - 1, position
    return base


def revise(base: episode_pb2.Episode) -> RevisedDraft:
    new = episode_pb2.Episode()
    new.CopyFrom(base)
    new.id = "draft-2"
    new.revision.numbers_locked = True
    for scene_ in new.scenes:
        scene_.number_label = str(scene_.number)
    speech = _first(new.scenes[1], "dialogue")
    speech.dialogue.text = "I rewrote this line in the Blue pass."
    _first(new.scenes[6], "action").action.text = "The lights come back on, one by one."
    _first(new.scenes[6], "dialogue").dialogue.text = LONG_SPEECH
    new.scenes[7].elements.append(transition("smash cut to:"))
    inserted = scene(
        "greenhouse annex",
        action("Rows of tomatoes under violet light. LUX tiptoes in."),
        line("Lux", "Nobody has to know.", parenthetical="whispering"),
        line("Rico", "Everybody is going to know.", extension="O.S."),
        transition("cut to:"),
        act=new.scenes[2].act,
    )
    inserted.number_label = label_after("3", "4")
    new.scenes.insert(3, inserted)
    omitted = new.scenes[6]  # Scene 6, after the insertion.
    assert omitted.number_label == "6"
    omitted.omitted = True
    for index, scene_ in enumerate(new.scenes):
        scene_.index = index
    revision_set = next_revision_set(base.revision, REVISION_DATE)
    marked = mark_revisions(base, new, revision_set)
    return RevisedDraft(base, marked, compare_drafts(base, new), revision_set)


def _first(scene_: episode_pb2.Scene, kind: str) -> episode_pb2.ScriptElement:
    return next(e for e in scene_.elements if e.WhichOneof("element") == kind)
