"""ReviseEpisode: a production revision of a stored draft, planned by revision_plan.py.

The revised draft is the parent with, in order: locked and untouched scenes as they were (byte
for byte: checked before it is stored), rewritten scenes (the writer's `revise_scene` with their
notes), inserted scenes (the writer's `write_scene` from an outline that gains their beat, their
labels 3A, 3B...), and omitted scenes (kept with `omitted` set and no body, so their numbers stay).
Numbers are locked on the first revision. Then, on the changed scenes only: the continuity pass,
the comedy pass; the validator reads the printed scenes (omitted ones aside); `mark_revisions`
marks every changed paragraph with the revision set; the script is rendered. The servicer stores
the result as a `revised` draft (server.py) before the last event.

Scene indices are identities here: a kept scene keeps its `index`, an inserted one takes the next
unused index, and the stored outline gains its beat under that index. A writer, though, writes
"scene k of n": it gets a copy of the outline renumbered by position in the revised draft.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterable

import grpc

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import comedy
from services.script.cards import beats, feeding_summaries, scene_view
from services.script.continuity import continuity_pass
from services.script.llm.provenance import collect_provenance
from services.script.pipeline import (
    PipelineDeps,
    render,
    run_comedy_pass,
    run_validation,
    scene_attributes,
    stored_episode,
)
from services.script.revision_plan import INSERT, LOCK, OMIT, REWRITE, RevisionPlan, Slot
from services.script.writing import StoryContext, Writer
from shared.screenplay_diff import mark_revisions
from shared.telemetry import trace_id_hex

Stage = script_pb2.Stage
# Fraction done when each stage's event is sent; the written scenes share SCENES..CONTINUITY.
PROGRESS = {
    Stage.STAGE_ACCEPTED: 0.0,
    Stage.STAGE_SCENES: 0.05,
    Stage.STAGE_CONTINUITY: 0.75,
    Stage.STAGE_COMEDY: 0.80,
    Stage.STAGE_VALIDATION: 0.85,
    Stage.STAGE_RENDER: 0.90,
    Stage.STAGE_STORED: 0.98,
    Stage.STAGE_DONE: 1.0,
}


class LockedSceneChanged(RuntimeError):
    """A locked scene did not come back byte for byte (a bug: the RPC fails, nothing is stored)."""

    grpc_code = grpc.StatusCode.INTERNAL


class EpisodeReviser:
    """Runs one ReviseEpisode: events as it goes, the last one (STAGE_DONE) with the draft."""

    def __init__(
        self,
        deps: PipelineDeps,
        writer: Writer,
        parent: episode_pb2.Episode,
        plan: RevisionPlan,
    ) -> None:
        self._deps = deps
        self._writer = writer
        self._parent = parent
        self._plan = plan
        self._tracer = deps.telemetry.tracer
        self._labels = {"doppel.show": parent.show.id, "doppel.writer": writer.name}
        self.episode_id = plan.draft_id

    def event(
        self, stage: int, message: str, fraction: float | None = None
    ) -> script_pb2.GenerateEpisodeEvent:
        return script_pb2.GenerateEpisodeEvent(
            stage=stage,
            fraction_done=PROGRESS[stage] if fraction is None else fraction,
            message=message,
            episode_id=self.episode_id,
            trace_id=trace_id_hex(),
        )

    async def run(self) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        plan = self._plan
        yield self.event(Stage.STAGE_ACCEPTED, f"{plan.revision_set.name} of {plan.parent_id}")
        stored = await self._stored()
        if stored is not None:
            done = self.event(Stage.STAGE_DONE, "already revised; returned from the library")
            done.episode.CopyFrom(stored)
            yield done
            return
        draft = self._draft()
        changed = frozenset(
            draft.scenes[position].index
            for position, slot in enumerate(plan.slots)
            if slot.action in (REWRITE, INSERT)
        )
        context = self._context(draft)
        with collect_provenance() as provenance:
            async for event in self._write(context, draft):
                yield event
            async for event in self._continuity(context, draft, changed):
                yield event
            yield await self._comedy(context, draft, changed)
        draft.attempts.extend(provenance.attempts())
        _add_usage(draft.usage, provenance.usage())
        yield self._validate(draft)
        revised = mark_revisions(self._parent, draft, plan.revision_set)
        self._check_locked(revised)
        yield self.event(Stage.STAGE_RENDER, "rendering the revised screenplay")
        await render(self._deps, revised)
        done = self.event(Stage.STAGE_DONE, _done_message(plan, revised))
        done.episode.CopyFrom(revised)
        yield done

    def stored_event(self, episode: episode_pb2.Episode) -> script_pb2.GenerateEpisodeEvent:
        """The event the servicer sends once the draft is in the library."""
        return self.event(Stage.STAGE_STORED, f"stored as revised draft {episode.id}")

    async def _stored(self) -> episode_pb2.Episode | None:
        """The draft, when this very revision was made before (the library is the record)."""
        found = await stored_episode(self._deps, self.episode_id)
        return None if found is None else found[0]

    # --- The draft before writing ------------------------------------------------------------

    def _draft(self) -> episode_pb2.Episode:
        """The parent, re-identified, with its scenes in the plan's order: inserted ones empty
        (written next), omitted ones cut to their heading; numbers locked on the first pass."""
        parent, plan = self._parent, self._plan
        draft = episode_pb2.Episode()
        draft.CopyFrom(parent)
        draft.id, draft.parent_episode_id = plan.draft_id, parent.id
        draft.kind = episode_pb2.DRAFT_KIND_REVISED
        draft.notes, draft.request_id = plan.summary, plan.request_id
        draft.revision.numbers_locked = True
        del draft.scenes[:]
        fresh = max((scene.index for scene in parent.scenes), default=-1) + 1
        act = parent.scenes[0].act if parent.scenes else ""
        for slot in plan.slots:
            if slot.action == INSERT:
                scene = episode_pb2.Scene(index=fresh, number_label=slot.label, act=act)
                self._add_beat(draft.outline, slot, fresh, draft.scenes)
                fresh += 1
            else:
                scene = episode_pb2.Scene()
                scene.CopyFrom(parent.scenes[slot.source])
                if plan.lock_numbers and not scene.number_label and not scene.number:
                    scene.number_label = slot.label  # It printed its position: now fixed.
                if slot.action == OMIT:
                    _omit(scene)
                elif slot.action == REWRITE:
                    draft.revisions.add(
                        scene_index=scene.index, notes=slot.notes, parent_episode_id=parent.id
                    )
                act = scene.act
            draft.scenes.append(scene)
        return draft

    @staticmethod
    def _add_beat(
        outline: episode_pb2.Outline, slot: Slot, index: int, before: Iterable[episode_pb2.Scene]
    ) -> None:
        """The inserted scene's beat (its card), after the beat of the scene before it (the first
        act's start when there is none): plot line and runtime target as that beat's."""
        assert slot.card is not None
        earlier = {scene.index for scene in before}
        beat = episode_pb2.Beat()
        beat.CopyFrom(slot.card)
        beat.scene_index = index
        anchor_act, anchor_at = 0, -1
        for act_number, act in enumerate(outline.acts):
            for at, existing in enumerate(act.beats):
                if existing.scene_index in earlier:
                    anchor_act, anchor_at = act_number, at
        if not outline.acts:
            outline.acts.add(name="Act One")
        beats_there = outline.acts[anchor_act].beats
        if anchor_at >= 0:
            model = beats_there[anchor_at]
            beat.plot = beat.plot or model.plot
            beat.target_seconds = beat.target_seconds or model.target_seconds
        beats_there.insert(anchor_at + 1, beat)

    def _context(self, draft: episode_pb2.Episode) -> StoryContext:
        return StoryContext(
            show=draft.show, setting=draft.setting, cast=list(draft.cast),
            relationships=list(draft.relationships), seed=draft.seed,
            scene_count=len(draft.scenes), premise=draft.outline.premise,
            kernel=draft.outline.kernel,
        )  # fmt: skip

    # --- Writing -----------------------------------------------------------------------------

    async def _write(
        self, context: StoryContext, draft: episode_pb2.Episode
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        """Every rewrite and insert at once (at most max_parallel_scenes in flight); an event
        as each is done."""
        limit = asyncio.Semaphore(max(1, self._deps.max_parallel_scenes))
        jobs = [
            (position, slot)
            for position, slot in enumerate(self._plan.slots)
            if slot.action in (REWRITE, INSERT)
        ]
        tasks = [
            asyncio.create_task(self._write_one(context, draft, position, slot, limit))
            for position, slot in jobs
        ]
        start, end = PROGRESS[Stage.STAGE_SCENES], PROGRESS[Stage.STAGE_CONTINUITY]
        try:
            for done, next_done in enumerate(asyncio.as_completed(tasks), 1):
                position, scene = await next_done
                draft.scenes[position].CopyFrom(scene)
                slot = self._plan.slots[position]
                verb = "inserted" if slot.action == INSERT else "rewritten"
                event = self.event(
                    Stage.STAGE_SCENES,
                    f"scene {slot.label} {verb} ({done} of {len(jobs)})",
                    start + (end - start) * done / max(1, len(jobs)),
                )
                event.scene.CopyFrom(scene)
                yield event
        finally:
            for task in tasks:
                task.cancel()
        draft.runtime_seconds = round(sum(s.duration_seconds for s in draft.scenes), 1)

    async def _write_one(
        self,
        context: StoryContext,
        draft: episode_pb2.Episode,
        position: int,
        slot: Slot,
        limit: asyncio.Semaphore,
    ) -> tuple[int, episode_pb2.Scene]:
        scene = draft.scenes[position]
        verb = "insert" if slot.action == INSERT else "revise"
        async with limit:
            with self._tracer.start_as_current_span(f"{verb} scene {slot.label}") as span:
                if slot.action == INSERT:
                    written = await self._positional(context, draft, position, None)
                elif scene.index >= self._parent.outline.scene_count:  # Inserted earlier.
                    written = await self._positional(context, draft, position, slot.notes)
                else:  # From the parent's outline, as RegenerateScene: the same plan.
                    notes = [slot.notes] if slot.notes else []
                    with_notes = dataclasses.replace(context, notes=tuple(notes))
                    view = scene_view(self._parent.outline, scene.index)
                    written = await self._writer.revise_scene(with_notes, view, scene, notes)
                _keep_identity(written, scene)
                span.set_attributes(
                    {"doppel.scene.index": scene.index, "doppel.scene.label": slot.label,
                     **scene_attributes(written)}
                )  # fmt: skip
        return position, written

    async def _positional(
        self,
        context: StoryContext,
        draft: episode_pb2.Episode,
        position: int,
        notes: str | None,
    ) -> episode_pb2.Scene:
        """Scene `position` as the writer sees the revised draft, scene `position` of an outline
        numbered by position: written from its beat (`notes` None), or revised with `notes`.
        An inserted scene's index is past the outline's scenes, so a writer numbering scenes by
        index would take it for the last. Its jokes are renamed after its own index, so no id
        repeats another scene's."""
        outline = _by_position(draft.outline, draft.scenes)
        view = scene_view(outline, position)
        if notes is None:
            earlier = feeding_summaries(view, position)
            written = await self._writer.write_scene(context, view, position, earlier)
        else:
            as_written = episode_pb2.Scene()
            as_written.CopyFrom(draft.scenes[position])
            as_written.index, as_written.number = position, position + 1
            with_notes = dataclasses.replace(context, notes=(notes,) if notes else ())
            listed = [notes] if notes else []
            written = await self._writer.revise_scene(with_notes, view, as_written, listed)
        index = draft.scenes[position].index
        names = {joke.id: f"s{index}-j{number}" for number, joke in enumerate(written.jokes, 1)}
        for joke in written.jokes:
            joke.id, joke.scene_index = names[joke.id], index
        for element in written.elements:
            if element.HasField("dialogue") and element.dialogue.joke_id in names:
                element.dialogue.joke_id = names[element.dialogue.joke_id]
        return written

    # --- Finishing ---------------------------------------------------------------------------

    async def _continuity(
        self, context: StoryContext, draft: episode_pb2.Episode, changed: frozenset[int]
    ) -> AsyncIterator[script_pb2.GenerateEpisodeEvent]:
        """The continuity pass on the script as printed, acting on the changed scenes only; an
        event per note. A scene it revises keeps its printed number and act."""
        printed = _as_printed(draft)
        notes = await continuity_pass(
            self._writer, context, printed, self._deps.max_parallel_scenes, self._tracer, changed
        )
        by_index = {scene.index: scene for scene in printed.scenes if scene.index in changed}
        labels: dict[int, str] = {}
        for scene in draft.scenes:
            if scene.index in by_index:
                number, label, act = scene.number, scene.number_label, scene.act
                scene.CopyFrom(by_index[scene.index])
                scene.number, scene.number_label, scene.act = number, label, act
                labels[scene.index] = label or str(number)
        draft.continuity_notes.extend(notes)
        for note in notes:
            label = labels.get(note.scene_index, str(note.scene_index + 1))
            event = self.event(
                Stage.STAGE_CONTINUITY, f"continuity: scene {label}, {note.kind} ({note.outcome})"
            )
            event.continuity_note.CopyFrom(note)
            yield event

    async def _comedy(
        self, context: StoryContext, draft: episode_pb2.Episode, changed: frozenset[int]
    ) -> script_pb2.GenerateEpisodeEvent:
        report = await run_comedy_pass(
            self._deps, self._writer, context, draft, self._labels, changed
        )
        draft.comedy.mean_after = comedy.mean_score(j for s in draft.scenes for j in s.jokes)
        return self.event(
            Stage.STAGE_COMEDY,
            f"comedy pass on the changed scenes: {report.rewritten} of {report.rewrites_tried} "
            f"weakest jokes rewritten",
        )

    def _validate(self, draft: episode_pb2.Episode) -> script_pb2.GenerateEpisodeEvent:
        """The validator's report on the script as printed."""
        report = run_validation(self._deps, _as_printed(draft))
        draft.validation.CopyFrom(report)
        self._deps.metrics.validation_score.record(
            report.overall, {**self._labels, "doppel.validation.phase": "revised"}
        )
        verdict = "passes" if report.passed else f"fails (threshold {report.threshold:.2f})"
        return self.event(
            Stage.STAGE_VALIDATION,
            f"validation: {report.overall:.2f}, {verdict}; {len(report.issues)} issue(s)",
        )

    def _check_locked(self, revised: episode_pb2.Episode) -> None:
        for position, slot in enumerate(self._plan.slots):
            if slot.action != LOCK:
                continue
            before = self._parent.scenes[slot.source].SerializeToString(deterministic=True)
            if revised.scenes[position].SerializeToString(deterministic=True) != before:
                raise LockedSceneChanged(
                    f"locked scene {slot.label} of {self._parent.id} did not come back byte for "
                    "byte; the revision is not stored"
                )


def _as_printed(draft: episode_pb2.Episode) -> episode_pb2.Episode:
    """A copy of the draft as a reader has it: an omitted scene, and its beat, are not in the
    script (what the validator and the continuity pass read)."""
    printed = episode_pb2.Episode()
    printed.CopyFrom(draft)
    omitted = {scene.index for scene in draft.scenes if scene.omitted}
    del printed.scenes[:]
    printed.scenes.extend(scene for scene in draft.scenes if not scene.omitted)
    del printed.continuity_notes[:]
    for act in printed.outline.acts:
        kept = [beat for beat in act.beats if beat.scene_index not in omitted]
        del act.beats[:]
        act.beats.extend(kept)
    printed.outline.scene_count = len(printed.scenes)
    return printed


def _omit(scene: episode_pb2.Scene) -> None:
    """Cut: the scene keeps its number and heading and prints OMITTED; its body goes."""
    scene.omitted = True
    for name in ("elements", "jokes", "characters", "revision_marks"):
        scene.ClearField(name)  # type: ignore[arg-type]
    scene.duration_seconds = 0.0


def _keep_identity(written: episode_pb2.Scene, scene: episode_pb2.Scene) -> None:
    """A written scene takes the place of `scene`: its index, number, label and act."""
    written.index, written.number = scene.index, scene.number
    written.number_label, written.act = scene.number_label, scene.act or written.act
    written.omitted = False
    del written.revision_marks[:]


def _by_position(
    outline: episode_pb2.Outline, scenes: Iterable[episode_pb2.Scene]
) -> episode_pb2.Outline:
    """The outline with every beat numbered by its scene's position in `scenes` (what a writer
    reads as scene k); a beat of no scene keeps its number past the end."""
    positions = {scene.index: position for position, scene in enumerate(scenes)}
    numbered = episode_pb2.Outline()
    numbered.CopyFrom(outline)
    spare = len(positions)
    for beat in beats(numbered):
        if beat.scene_index in positions:
            beat.scene_index = positions[beat.scene_index]
        else:
            beat.scene_index, spare = spare, spare + 1
    numbered.scene_count = len(positions)
    return numbered


def _add_usage(total: episode_pb2.LlmUsage, more: episode_pb2.LlmUsage) -> None:
    """The revision's LLM usage on top of the parent's: a draft carries what it cost in all."""
    total.input_tokens += more.input_tokens
    total.output_tokens += more.output_tokens
    total.cache_creation_input_tokens += more.cache_creation_input_tokens
    total.cache_read_input_tokens += more.cache_read_input_tokens
    total.calls += more.calls
    total.cost_usd = round(total.cost_usd + more.cost_usd, 6)


def _done_message(plan: RevisionPlan, revised: episode_pb2.Episode) -> str:
    active = revised.revision.active_set
    changed = [
        slot.label
        for slot, scene in zip(plan.slots, revised.scenes, strict=True)
        if any(mark.revision_id == active for mark in scene.revision_marks)
    ]
    return f"{plan.revision_set.name}: scenes {', '.join(changed) or 'none'} changed"
