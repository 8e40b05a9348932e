"""The continuity pass: after the parallel draft, each scene checked against what the scenes
before it established (ledger.py), and a scene that contradicts it revised with precise notes.

The notes of all scenes are read from the draft in one pass, scene by scene. Every scene with a
note goes to the writer's `revise_scene` with its notes (as refinement does; at most `parallel`
at once). The revision is then read against the ledger as it stood before that scene: each note
it no longer raises is "revised", each it still raises is "unresolved". A revision is kept when
it resolves at least one note and raises no new one; otherwise the draft scene stays and all its
notes are "unresolved" (so is every note of a scene whose revision failed). Scenes without a note
are not touched: their bytes stay identical. Every note and its outcome is recorded on
Episode.continuity_notes.

A card that pays off a setup no earlier card plants (the validator's orphan_payoff) is a fault of
the plan, not of the scene: no rewrite can pay off what never happened, so the payoff is dropped
from the card (the scene's text keeps its bytes) and recorded as a note, outcome "revised".
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script.ledger import LedgerBuilder, Note, notes_by_scene
from services.script.script_text import beats_of, read_scene
from services.script.writing import StoryContext, Writer

log = logging.getLogger(__name__)

REVISED, UNRESOLVED = "revised", "unresolved"


@dataclass(frozen=True)
class _Revision:
    scene_index: int
    scene: episode_pb2.Scene | None  # None: the writer failed
    outcomes: dict[tuple[str, str], str]


def read_notes(episode: episode_pb2.Episode) -> tuple[dict[int, list[Note]], LedgerBuilder]:
    """Every scene's continuity notes, from the draft read in order."""
    builder = LedgerBuilder(episode)
    cards = {beat.scene_index: beat for beat in beats_of(episode.outline)}
    notes: list[Note] = []
    for scene in episode.scenes:
        notes.extend(builder.add(read_scene(scene, cards.get(scene.index))))
    return notes_by_scene(notes), builder


def _checker(episode: episode_pb2.Episode, index: int) -> LedgerBuilder:
    """A ledger of the scenes printed before scene `index` (to read its revision against); by
    position, as a revised draft's inserted scene has an index above those after it."""
    builder = LedgerBuilder(episode)
    cards = {beat.scene_index: beat for beat in beats_of(episode.outline)}
    for scene in episode.scenes:
        if scene.index == index:
            break
        builder.add(read_scene(scene, cards.get(scene.index)))
    return builder


async def _revise_one(
    writer: Writer,
    context: StoryContext,
    episode: episode_pb2.Episode,
    scene: episode_pb2.Scene,
    notes: Sequence[Note],
    limit: asyncio.Semaphore,
) -> _Revision:
    failed = {note.key: UNRESOLVED for note in notes}
    async with limit:
        try:
            revised = await writer.revise_scene(
                context, episode.outline, scene, [note.message for note in notes]
            )
        except Exception as exc:  # The draft stands; the notes stay unresolved.
            log.warning("continuity revision of scene %d failed: %s", scene.index + 1, exc)
            return _Revision(scene.index, None, failed)
    revised.index, revised.number = scene.index, scene.number
    card = next((b for b in beats_of(episode.outline) if b.scene_index == scene.index), None)
    after = _checker(episode, scene.index).notes_for(read_scene(revised, card))
    remaining = {note.key for note in after}
    outcomes = {note.key: UNRESOLVED if note.key in remaining else REVISED for note in notes}
    new = remaining - set(outcomes)
    if new or REVISED not in outcomes.values():
        return _Revision(scene.index, None, failed)
    return _Revision(scene.index, revised, outcomes)


def drop_orphan_payoffs(
    episode: episode_pb2.Episode, scene_indices: Collection[int] | None = None
) -> list[episode_pb2.ContinuityNote]:
    """Removes from the cards (of `scene_indices`, or all) the payoffs of setups that no card
    of an earlier printed scene plants; one note per payoff dropped."""
    cards = {beat.scene_index: beat for beat in beats_of(episode.outline)}
    planted: set[str] = set()
    dropped: list[episode_pb2.ContinuityNote] = []
    for scene in episode.scenes:
        card = cards.get(scene.index)
        if card is None:
            continue
        if scene_indices is None or scene.index in scene_indices:
            orphans = [setup_id for setup_id in card.payoffs if setup_id not in planted]
            for setup_id in orphans:
                card.payoffs.remove(setup_id)
                dropped.append(
                    episode_pb2.ContinuityNote(
                        scene_index=scene.index,
                        kind="orphan_payoff",
                        message=f"the card paid off setup {setup_id}, which no earlier scene "
                        "plants: the payoff is dropped from the plan",
                        outcome=REVISED,
                    )
                )
        planted.update(setup.id for setup in card.setups if setup.id)
    return dropped


async def continuity_pass(
    writer: Writer,
    context: StoryContext,
    episode: episode_pb2.Episode,
    parallel: int,
    tracer: trace.Tracer,
    scene_indices: Collection[int] | None = None,
) -> list[episode_pb2.ContinuityNote]:
    """Checks and revises the episode in place; returns the notes it recorded (also appended to
    episode.continuity_notes), in scene order. With `scene_indices` (a revision's rewritten and
    inserted scenes) only those scenes' notes are acted on and recorded: the others stay as
    they are."""
    with tracer.start_as_current_span("continuity") as span:
        dropped = drop_orphan_payoffs(episode, scene_indices)
        by_scene, builder = read_notes(episode)
        if scene_indices is not None:
            by_scene = {index: notes for index, notes in by_scene.items() if index in scene_indices}
        limit = asyncio.Semaphore(max(1, parallel))
        positions = {scene.index: position for position, scene in enumerate(episode.scenes)}
        revisions = await asyncio.gather(
            *(
                _revise_one(writer, context, episode, episode.scenes[positions[i]], notes, limit)
                for i, notes in sorted(by_scene.items())
                if i in positions
            )
        )
        recorded: list[episode_pb2.ContinuityNote] = list(dropped)
        for revision in revisions:
            if revision.scene is not None:
                episode.scenes[positions[revision.scene_index]].CopyFrom(revision.scene)
            for note in by_scene[revision.scene_index]:
                recorded.append(
                    episode_pb2.ContinuityNote(
                        scene_index=note.scene_index,
                        kind=note.kind,
                        message=note.message,
                        outcome=revision.outcomes[note.key],
                    )
                )
        if any(revision.scene is not None for revision in revisions):
            episode.runtime_seconds = round(sum(s.duration_seconds for s in episode.scenes), 1)
        recorded.sort(key=lambda note: note.scene_index)  # stable: a scene's notes keep order
        episode.continuity_notes.extend(recorded)
        span.set_attributes(
            {
                "doppel.continuity.notes": len(recorded),
                "doppel.continuity.scenes": len(by_scene),
                "doppel.continuity.revised": sum(1 for n in recorded if n.outcome == REVISED),
                "doppel.continuity.setups": len(builder.ledger.setups),
            }
        )
    return recorded
