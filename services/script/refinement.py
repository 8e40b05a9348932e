"""Validation-driven refinement: revise the scenes the validator complains about, keep what helps.

A round takes every scene with an issue of warning level or worse (an error-level issue, such as
a stranger speaking or an empty scene, fails the script whatever its score; warnings are what drag
the score down), hands each to the writer's `revise_scene` with that scene's issue messages as
notes (all scenes of the round at once, at most `parallel` in flight; a revision that fails
leaves its scene as it was), re-scores and punches up the jokes of the revised scenes (the comedy
pass on them), and validates again. The round is kept when the script got better: it passes now,
or has fewer blocking issues, or fewer craft faults, or scores higher.

A script that passes still gets rounds for its craft faults (services/script/checks/: a name of
the classic show, a character naming themself, a heading that contradicts its action, someone
speaking out of the room...) and for a scene gutted of its comedy ("no_comedy"): those rounds take
only the scenes with such an issue of warning level or worse. Rounds stop when the script passes
with no craft issue left, when no scene has an issue left to work on, when a round does not
improve the script (it is then recorded, not kept), or after `rounds` rounds. Every round is
recorded on the episode (RefinementRound) and gets its own span, "refinement round N".
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script.checks import SPECS
from services.script.comedy import comedy_pass
from services.script.validation import validate_episode
from services.script.writing import StoryContext, Writer

log = logging.getLogger(__name__)
Severity = episode_pb2.Severity
# What a passing script is still refined for: the craft checks, and a scene with no comedic beat.
CRAFT_CHECKS = frozenset({*(spec.check for spec in SPECS), "no_comedy"})


@dataclass(frozen=True)
class RefinementPolicy:
    rounds: int = 3
    threshold: float = 0.75
    parallel: int = 4


def scene_notes(
    report: episode_pb2.ValidationReport, checks: frozenset[str] | None = None
) -> dict[int, list[str]]:
    """Issue messages by scene, for scenes with an issue of warning level or worse (of the
    given checks only, when given)."""
    notes: dict[int, list[str]] = defaultdict(list)
    ordered = sorted(report.issues, key=lambda issue: -issue.severity)
    for issue in ordered:
        if checks is not None and issue.check not in checks:
            continue
        if issue.scene_index >= 0 and issue.severity >= Severity.SEVERITY_WARNING:
            notes[issue.scene_index].append(issue.message)
    return dict(sorted(notes.items()))


def _work(report: episode_pb2.ValidationReport) -> dict[int, list[str]]:
    """What the next round works on: every noted scene of a failing script, the craft faults of
    a passing one."""
    return scene_notes(report, CRAFT_CHECKS if report.passed else None)


def _standing(report: episode_pb2.ValidationReport) -> tuple[bool, int, int, float]:
    """How good a script is: passing first, then fewer blocking issues, then fewer craft
    faults (a showrunner's notes come before a point of score), then the score."""
    blocking = sum(1 for issue in report.issues if issue.severity >= Severity.SEVERITY_ERROR)
    craft = sum(
        1
        for issue in report.issues
        if issue.check in CRAFT_CHECKS and issue.severity >= Severity.SEVERITY_WARNING
    )
    return report.passed, -blocking, -craft, report.overall


async def _revise(
    writer: Writer,
    context: StoryContext,
    episode: episode_pb2.Episode,
    notes: dict[int, list[str]],
    parallel: int,
) -> None:
    """Replaces each noted scene with the writer's revision (index and number kept)."""
    limit = asyncio.Semaphore(max(1, parallel))
    positions = {scene.index: position for position, scene in enumerate(episode.scenes)}

    async def one(index: int, scene_notes: Sequence[str]) -> None:
        scene = episode.scenes[positions[index]]
        async with limit:
            try:
                revised = await writer.revise_scene(context, episode.outline, scene, scene_notes)
            except Exception as exc:  # The draft stands; the round then shows no improvement.
                log.warning("revision of scene %d failed: %s", index + 1, type(exc).__name__)
                return
        revised.index, revised.number = scene.index, scene.number
        scene.CopyFrom(revised)

    await asyncio.gather(*(one(i, n) for i, n in notes.items() if i in positions))


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
    for number in range(1, policy.rounds + 1):
        notes = _work(report)
        if not notes:
            return
        with tracer.start_as_current_span(f"refinement round {number}") as span:
            candidate = episode_pb2.Episode()
            candidate.CopyFrom(episode)
            await _revise(writer, context, candidate, notes, policy.parallel)
            await comedy_pass(writer, context, candidate, notes.keys(), policy.parallel)
            after = validate_episode(candidate, policy.threshold)
            accepted = _standing(after) > _standing(report)
            record = episode_pb2.RefinementRound(
                round=number,
                scene_indices=sorted(notes),
                score_before=report.overall,
                score_after=after.overall,
                accepted=accepted,
                passed=after.passed and accepted,
            )
            span.set_attributes(
                {
                    "doppel.refinement.round": number,
                    "doppel.refinement.scenes": len(notes),
                    "doppel.validation.score_before": report.overall,
                    "doppel.validation.score_after": after.overall,
                    "doppel.refinement.accepted": accepted,
                }
            )
        if accepted:
            episode.CopyFrom(candidate)
            episode.validation.CopyFrom(after)
            report = after
        episode.refinement_rounds.append(record)
        yield record
        if not accepted:
            return
