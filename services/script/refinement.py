"""Validation-driven refinement: revise the scenes the validator complains about, keep what helps.

Every scene is judged on its own (`scene_report`: the validator's report on an episode of that
one scene and its beat), so refining one scene never depends on another scene's text: editing one
beat of an outline changes one scene, before and after refinement. A round takes every scene with
an issue of warning level or worse in its own report (an error-level issue, such as a stranger
speaking or an empty scene, fails the script whatever its score; warnings are what drag the score
down), hands each to the writer's `revise_scene` with those issues as notes (all scenes of the
round at once, at most `parallel` in flight; a revision that fails leaves its scene as it was),
re-scores and punches up the jokes of the revised scenes (the comedy pass on them), and keeps each
revision that made its scene better: fewer errors, then fewer warnings, then a higher score. A
scene's own report includes the craft checks (services/script/checks/), so a script that passes
is still refined for them; the checks that need other scenes (CROSS_SCENE_CHECKS) are the
continuity pass's work.

A scene whose revision did not help is not tried again. Rounds stop when no scene has an issue
left to work on, when no revision of a round helped (it is then recorded, not kept), or after
`rounds` rounds. Every round is recorded on the episode (RefinementRound: the whole script's score
before and after) and gets its own span, "refinement round N".
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import defaultdict
from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass

from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script.cards import beat_at, scene_view
from services.script.comedy import comedy_pass
from services.script.validation import validate_episode
from services.script.writing import StoryContext, Writer
from shared.config import DEFAULTS

log = logging.getLogger(__name__)
Severity = episode_pb2.Severity


@dataclass(frozen=True)
class RefinementPolicy:
    rounds: int = DEFAULTS.refinement_rounds
    threshold: float = DEFAULTS.validation_threshold
    parallel: int = DEFAULTS.max_parallel_scenes


# Checks that compare a scene with other scenes (a payoff's setup planted earlier, the time of day
# of the scene before): a report on one scene alone cannot judge them, so they are left to the
# continuity pass, which sees the whole episode.
CROSS_SCENE_CHECKS = frozenset({"orphan_payoff", "time_of_day"})


def scene_notes(
    report: episode_pb2.ValidationReport, skip: frozenset[str] = frozenset()
) -> dict[int, list[str]]:
    """Issue messages by scene, for scenes with an issue of warning level or worse (issues of the
    checks in `skip` left out)."""
    notes: dict[int, list[str]] = defaultdict(list)
    ordered = sorted(report.issues, key=lambda issue: -issue.severity)
    for issue in ordered:
        if issue.check in skip:
            continue
        if issue.scene_index >= 0 and issue.severity >= Severity.SEVERITY_WARNING:
            notes[issue.scene_index].append(issue.message)
    return dict(sorted(notes.items()))


def scene_report(
    episode: episode_pb2.Episode, index: int, threshold: float
) -> episode_pb2.ValidationReport:
    """The validator's report on scene `index` alone: an episode of that scene (numbered 1) and
    its beat, with the beat's runtime target as the episode's. What it says depends on the scene,
    its beat and the episode's cast and setting only."""
    alone = episode_pb2.Episode(
        id=episode.id,
        show=episode.show,
        setting=episode.setting,
        cast=episode.cast,
        relationships=episode.relationships,
        premise=episode.premise,
    )
    scene = next(s for s in episode.scenes if s.index == index)
    copy = alone.scenes.add()
    copy.CopyFrom(scene)
    copy.index, copy.number = 0, 1
    copy.ClearField("number_label")
    outline = alone.outline
    source = episode.outline
    outline.title, outline.logline = source.title, source.logline
    outline.a_plot, outline.b_plot = source.a_plot, source.b_plot
    outline.premise, outline.kernel, outline.running_gag = (
        source.premise,
        source.kernel,
        source.running_gag,
    )
    outline.scene_count = 1
    beat = beat_at(source, index)
    if beat is not None:
        act = outline.acts.add(name=next(a.name for a in source.acts if beat in a.beats))
        own = act.beats.add()
        own.CopyFrom(beat)
        own.scene_index = 0
        outline.target_runtime_seconds = beat.target_seconds
    alone.runtime_seconds = copy.duration_seconds
    return validate_episode(alone, threshold)


_FIRST_SCENE = re.compile(r"\bscene 1\b")


def scene_notes_alone(
    episode: episode_pb2.Episode, indices: Collection[int], threshold: float
) -> dict[int, list[str]]:
    """For each of `indices`, the messages of its own report's issues of warning level or worse
    (numbered as in the episode); scenes without any are left out."""
    notes: dict[int, list[str]] = {}
    for index in sorted(indices):
        report = scene_report(episode, index, threshold)
        messages = scene_notes(report, CROSS_SCENE_CHECKS).get(0, [])
        if messages:
            notes[index] = [_FIRST_SCENE.sub(f"scene {index + 1}", m) for m in messages]
    return notes


def _standing(report: episode_pb2.ValidationReport) -> tuple[int, int, float]:
    """Fewer errors, then fewer warnings, then a higher score."""
    errors = sum(1 for issue in report.issues if issue.severity >= Severity.SEVERITY_ERROR)
    warnings = sum(1 for issue in report.issues if issue.severity == Severity.SEVERITY_WARNING)
    return -errors, -warnings, report.overall


async def _revise(
    writer: Writer,
    context: StoryContext,
    episode: episode_pb2.Episode,
    notes: dict[int, list[str]],
    parallel: int,
) -> None:
    """Replaces each noted scene with the writer's revision (index and number kept); the writer
    sees the scene's view of the outline, as when it wrote the scene."""
    limit = asyncio.Semaphore(max(1, parallel))
    positions = {scene.index: position for position, scene in enumerate(episode.scenes)}

    async def one(index: int, scene_notes: Sequence[str]) -> None:
        scene = episode.scenes[positions[index]]
        view = scene_view(episode.outline, index)
        async with limit:
            try:
                revised = await writer.revise_scene(context, view, scene, scene_notes)
            except Exception as exc:  # The draft stands; the round then shows no improvement.
                log.warning("revision of scene %d failed: %s", index + 1, type(exc).__name__)
                return
        revised.index, revised.number = scene.index, scene.number
        scene.CopyFrom(revised)

    await asyncio.gather(*(one(i, n) for i, n in notes.items() if i in positions))


def _keep_better(
    episode: episode_pb2.Episode,
    candidate: episode_pb2.Episode,
    indices: Collection[int],
    threshold: float,
) -> list[int]:
    """The revised scenes that got better alone; the others go back to their draft."""
    kept = []
    drafts = {scene.index: scene for scene in episode.scenes}
    for scene in candidate.scenes:
        if scene.index not in indices:
            continue
        before = _standing(scene_report(episode, scene.index, threshold))
        if _standing(scene_report(candidate, scene.index, threshold)) > before:
            kept.append(scene.index)
        else:
            scene.CopyFrom(drafts[scene.index])
    candidate.runtime_seconds = round(sum(s.duration_seconds for s in candidate.scenes), 1)
    return sorted(kept)


async def refine(
    writer: Writer,
    context: StoryContext,
    episode: episode_pb2.Episode,
    policy: RefinementPolicy,
    tracer: trace.Tracer,
) -> AsyncIterator[episode_pb2.RefinementRound]:
    """Refines the episode in place; yields every round as it is recorded. On return the episode
    holds the best script found and its validation report."""
    report = validate_episode(episode, policy.threshold)
    episode.validation.CopyFrom(report)
    trying = {scene.index for scene in episode.scenes}
    for number in range(1, policy.rounds + 1):
        notes = scene_notes_alone(episode, trying, policy.threshold)
        if not notes:
            return
        with tracer.start_as_current_span(f"refinement round {number}") as span:
            candidate = episode_pb2.Episode()
            candidate.CopyFrom(episode)
            await _revise(writer, context, candidate, notes, policy.parallel)
            await comedy_pass(writer, context, candidate, notes.keys(), policy.parallel)
            kept = _keep_better(episode, candidate, notes.keys(), policy.threshold)
            after = validate_episode(candidate, policy.threshold) if kept else report
            record = episode_pb2.RefinementRound(
                round=number,
                scene_indices=sorted(notes),
                score_before=report.overall,
                score_after=after.overall,
                accepted=bool(kept),
                passed=after.passed and bool(kept),
            )
            span.set_attributes(
                {
                    "doppel.refinement.round": number,
                    "doppel.refinement.scenes": len(notes),
                    "doppel.refinement.kept": len(kept),
                    "doppel.validation.score_before": report.overall,
                    "doppel.validation.score_after": after.overall,
                    "doppel.refinement.accepted": bool(kept),
                }
            )
        if kept:
            episode.CopyFrom(candidate)
            episode.validation.CopyFrom(after)
            report = after
        episode.refinement_rounds.append(record)
        yield record
        if not kept:
            return
        trying = set(kept)
