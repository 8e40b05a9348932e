"""Scene assembly: a scene of the plan, from its beat and card to the finished Scene message.

A scene is written to its beat's runtime target (Beat.target_seconds): an opening exchange and a
joke, the setups its card plants, build-up steps spread between the remaining jokes (one comedic
beat about every COMEDY_INTERVAL_SECONDS), the payoffs due and the running gag, a closing action,
then fitted to the target (_fit.py); whoever the card sees out leaves before the end. Only the
card's people speak, under the card's slugline (_staging.py). `revise_scene` writes another take
of the same beat following notes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from doppelganger.v1 import episode_pb2
from services.script.premise import PremiseElement
from services.script.procedural._fit import fit_length, someone_else, space_beats
from services.script.procedural._grammar import (
    ACTION_BUSINESS,
    ACTION_CLOSINGS,
    ACTION_ENTRANCES,
    ACTION_OPENINGS,
    ACTION_REACTIONS,
    B_STAGES,
    LAST_TRANSITION,
    TRANSITIONS,
)
from services.script.procedural._jokes import JOKE_CONTEXT_LINES, score_joke
from services.script.procedural._kernel import EpisodeKernel, build_kernel
from services.script.procedural._outline import find_beat, push_key
from services.script.procedural._plan import EpisodePlan, plan_episode, with_extra_jokes
from services.script.procedural._revision import FIRST_DRAFT, SceneDirectives, read_notes
from services.script.procedural._runtime import MAX_TARGET_SECONDS, MIN_TARGET_SECONDS
from services.script.procedural._scenes import Action, Frame, Line, SceneWriter, item_seconds
from services.script.procedural._staging import (
    callback_lines,
    exit_actions,
    late_actions,
    opening_ambience,
    plant_actions,
    premise_actions,
    presence_actions,
    scene_cast,
    slugline,
)
from services.script.procedural._text import seeded_rng, sentence

BRIEF_SCENE_SECONDS = 80.0  # act scenes shorter than this skip the stakes and the banter
TIGHT_SCENE_SECONDS = 55.0  # ... and shorter than this the turn too (a card's actions take room)
CATCHPHRASE_CHANCE = 0.4


@dataclass(frozen=True)
class _Card:
    """What the body plays besides the plan: the scene's beat and card, the outline they come
    from (for the setups paid off), the premise's elements, whether it is outdoors."""

    beat: episode_pb2.Beat | None
    outline: episode_pb2.Outline
    premise: tuple[PremiseElement, ...]
    exterior: bool


# ---------------------------------------------------------------------------------------------
# The body: opening, build-up steps between the jokes, closing


def _write_body(writer: SceneWriter, frame: Frame, card: _Card) -> None:
    """Opening and first joke; the card's setups; build-up steps spread between the other jokes;
    payoffs and the running gag; closing; fit."""
    planted = plant_actions(writer, card.beat, frame.primary)
    paid = late_actions(writer, card.beat, card.outline, frame.primary)
    present = _write_opening(writer, frame, card.exterior)
    recalled = callback_lines(writer, card.beat, present)
    writer.items.extend([*planted, *recalled])
    played = (*planted, *recalled, *paid)
    steps = _steps(frame, sum(item_seconds(item) for item in played))
    later = frame.jokes[1:]
    for group, slot in zip(_spread(steps, len(later)), later, strict=True):
        for step in group:
            present = step(writer, frame, present)
        writer.joke(slot, present)
    writer.items.extend(paid)
    writer.action("closing", ACTION_CLOSINGS, frame.primary, frame.secondary)
    writer.items[1:1] = premise_actions(writer, card.beat, card.premise, frame.primary)
    space_beats(writer)
    fit_length(writer, frame, present)
    space_beats(writer)


_Step: TypeAlias = Callable[[SceneWriter, Frame, list[str]], list[str]]


def _spread(steps: Sequence[_Step], groups: int) -> list[list[_Step]]:
    """Steps split in order into `groups` runs as even as possible (earlier runs longer)."""
    size, extra = divmod(len(steps), groups)
    runs, start = [], 0
    for group in range(groups):
        end = start + size + (1 if group < extra else 0)
        runs.append(list(steps[start:end]))
        start = end
    return runs


def _write_opening(writer: SceneWriter, frame: Frame, exterior: bool) -> list[str]:
    """Establishing action, the beat's opening exchange and the first joke; returns who is in
    the room (the secondary comes in first when the card has only the primary there)."""
    primary, secondary = frame.primary, frame.secondary
    ambience = opening_ambience(writer, exterior)
    writer.action("opening", ACTION_OPENINGS, primary, secondary, prefix=ambience)
    present = list(frame.present_at_start)
    writer.line(f"open:{frame.stage}", primary, secondary, frame.bystander)
    if secondary not in present:
        present = _enter(writer, secondary, primary, present)
    else:
        writer.react(secondary, primary, frame.bystander)
    writer.joke(frame.jokes[0], [primary, secondary])
    writer.action("business", ACTION_BUSINESS, primary, secondary, optional=True)
    return present


def _stakes(writer: SceneWriter, frame: Frame, present: list[str]) -> list[str]:
    """What the plan needs, and the objection to it."""
    primary, secondary = frame.primary, frame.secondary
    writer.line(f"push:{push_key(frame.stage)}", primary, secondary, frame.bystander)
    writer.line("object", secondary, primary, frame.bystander, optional=True)
    return present


def _entrance(writer: SceneWriter, frame: Frame, present: list[str]) -> list[str]:
    """The first newcomer comes in (sometimes heard before seen); maybe a catchphrase."""
    if frame.newcomers:
        present = _enter(writer, frame.newcomers[0], frame.primary, present)
    _catchphrase(writer, present)
    return present


def _late_entrance(writer: SceneWriter, frame: Frame, present: list[str]) -> list[str]:
    """Anyone else the scene needs (the climax brings both plots together)."""
    for newcomer in frame.newcomers[1:]:
        present = _enter(writer, newcomer, frame.primary, present)
    _signature_catchphrase(writer, present)
    return present


def _banter(writer: SceneWriter, frame: Frame, present: list[str]) -> list[str]:
    for _ in range(writer.rng.randint(0, 1)):
        me = writer.rng.choice(present)
        writer.line("banter", me, someone_else(present, me), frame.secondary, optional=True)
    return present


def _turn(writer: SceneWriter, frame: Frame, present: list[str]) -> list[str]:
    """The scene's turn, and the room's silence after it."""
    writer.line(f"turn:{frame.plot}", frame.primary, frame.secondary, frame.bystander)
    writer.action("reaction", ACTION_REACTIONS, frame.secondary, frame.primary, optional=True)
    _signature_catchphrase(writer, present)
    return present


_LONG_STEPS: tuple[_Step, ...] = (_stakes, _entrance, _banter, _late_entrance, _turn)
_BRIEF_STEPS: tuple[_Step, ...] = (_entrance, _late_entrance, _turn)
_TIGHT_STEPS: tuple[_Step, ...] = (_entrance, _late_entrance)
_SHORT_STEPS: tuple[_Step, ...] = (_entrance,)


def _steps(frame: Frame, card_seconds: float) -> tuple[_Step, ...]:
    """The build-up a scene has room for once its card's actions are played."""
    room = frame.target - card_seconds
    if frame.short:
        return _SHORT_STEPS
    if room < TIGHT_SCENE_SECONDS:
        return _TIGHT_STEPS
    return _BRIEF_STEPS if room < BRIEF_SCENE_SECONDS else _LONG_STEPS


def _enter(writer: SceneWriter, newcomer: str, primary: str, present: list[str]) -> list[str]:
    """Brings a speaker in, sometimes heard off-screen before being seen."""
    if newcomer in present:
        return present
    if writer.rng.random() < 0.35 and writer.last_speaker() != newcomer:
        text = writer.fill("arrive", newcomer, primary, primary)
        writer.say(newcomer, text, primary, extension="O.S.")
        writer.action("entrance", ACTION_ENTRANCES, newcomer, primary)
    else:
        writer.action("entrance", ACTION_ENTRANCES, newcomer, primary)
        writer.say(newcomer, writer.fill("arrive", newcomer, primary, primary), primary)
    return [*present, newcomer]


def _catchphrase(writer: SceneWriter, present: Sequence[str]) -> None:
    """At most one catchphrase a scene, in fewer than half the scenes, and each catchphrase in
    one scene of the episode at most (the plan deals them out)."""
    if writer.rng.random() >= CATCHPHRASE_CHANCE:
        return
    last = writer.last_speaker()
    phrases = [(name, phrase) for name, c in writer.cast.items() for phrase in c.catchphrases]
    owned = [
        (speaker, phrase)
        for speaker, phrase in writer.plan.lines.catchphrases(phrases, writer.index)
        if speaker in present
        and speaker != last
        and phrase not in writer.used
        and writer.fits(speaker, phrase)
    ]
    if owned:
        speaker, phrase = owned[writer.rng.randrange(len(owned))]
        writer.say(speaker, phrase, someone_else(present, speaker), plain=True)


def _signature_catchphrase(writer: SceneWriter, present: Sequence[str]) -> None:
    """A character's signature (first) catchphrase that the plan dealt to this scene and that
    has not been said, when the scene has had no catchphrase yet: a show's signature lines recur
    from episode to episode (what `AnalyzeShow` finds them by). No random draw."""
    phrases = [(name, phrase) for name, c in writer.cast.items() for phrase in c.catchphrases]
    dealt = writer.plan.lines.catchphrases(phrases, writer.index)
    if any(phrase in writer.used for _, phrase in dealt):
        return
    last = writer.last_speaker()
    for speaker, phrase in dealt:
        if (
            phrase == writer.cast[speaker].catchphrases[0]
            and speaker in present
            and speaker != last
            and writer.fits(speaker, phrase)
        ):
            writer.say(speaker, phrase, someone_else(present, speaker), plain=True)
            return


# ---------------------------------------------------------------------------------------------
# The Scene message


def _to_elements(
    writer: SceneWriter, transition: str
) -> tuple[list[episode_pb2.ScriptElement], list[episode_pb2.Joke], float]:
    elements: list[episode_pb2.ScriptElement] = []
    jokes: list[episode_pb2.Joke] = []
    clock = 0.0
    context: list[str] = []
    callback_terms = (writer.kernel.runner_prop,) if writer.index > 0 else ()
    for item in writer.items:
        clock += item_seconds(item)
        if isinstance(item, Action):
            elements.append(
                episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=item.text))
            )
            continue
        dialogue = episode_pb2.DialogueLine(
            character=item.speaker,
            parenthetical=item.parenthetical,
            text=item.text,
            extension=item.extension,
        )
        if item.joke is not None:
            joke_id = f"s{writer.index}-j{len(jokes) + 1}"
            dialogue.joke_id = joke_id
            score, dimensions = score_joke(
                item.text,
                item.joke.pattern,
                speaker=writer.cast.get(item.speaker),
                setting=writer.setting,
                context=context[-JOKE_CONTEXT_LINES:],
                callback_terms=callback_terms,
            )
            jokes.append(
                episode_pb2.Joke(
                    id=joke_id,
                    scene_index=writer.index,
                    element_index=len(elements),
                    pattern=item.joke.pattern,
                    role=item.joke.role,
                    score=score,
                    dimensions=dimensions,
                    offset_seconds=round(clock, 1),
                )
            )
        context.append(item.text)
        elements.append(episode_pb2.ScriptElement(dialogue=dialogue))
    elements.append(episode_pb2.ScriptElement(transition=episode_pb2.Transition(text=transition)))
    return elements, jokes, clock


# ---------------------------------------------------------------------------------------------
# Writing and revising scenes


def write_planned_scene(
    plan: EpisodePlan,
    scene_index: int,
    directives: SceneDirectives = FIRST_DRAFT,
    *,
    outline: episode_pb2.Outline,
) -> episode_pb2.Scene:
    """Scene `scene_index` of the plan, built from its beat and card (read from `outline`: the
    episode's outline or the scene's view of it, `cards.scene_view`) and written to its runtime
    target; `directives` ask for another take (see `read_notes`)."""
    if not 0 <= scene_index < plan.scene_total:
        raise ValueError(f"scene_index must be in [0, {plan.scene_total}) (got {scene_index})")
    source = outline
    show, setting, kernel = plan.show, plan.setting, plan.kernel
    beat, act_name = find_beat(source, scene_index)
    stage = plan.stages[scene_index]
    description = (beat.description if beat else "") or kernel.slots[
        "b_issue" if stage in B_STAGES else "want"
    ]
    writer = SceneWriter(
        plan=plan,
        index=scene_index,
        rng=seeded_rng(
            "scene", show.id, setting.id, setting.description, plan.seed, scene_index,
            description, directives.take,
        ),
        take=directives.take,
        focus=directives.focus or kernel.focus(stage),
    )  # fmt: skip
    jokes = plan.jokes[scene_index]
    if directives.extra_jokes:
        jokes = with_extra_jokes(
            jokes, directives.extra_jokes, kernel.patterns, plan.seed, plan.key
        )
    target = plan.targets[scene_index] * directives.length_factor
    names = [c.name for c in plan.cast]
    people = scene_cast(beat, names, kernel.roles, stage, directives.speakers)
    frame = Frame(
        speakers=people.speakers,
        stage=stage,
        jokes=jokes,
        target=min(MAX_TARGET_SECONDS, max(MIN_TARGET_SECONDS, target)),
        starting=people.starting,
    )
    heading = slugline(beat, setting, kernel, scene_index, plan.scene_total)
    writer.placement = heading.placement  # Action lines must agree with the heading.
    _write_scene_body(writer, frame, beat, source, heading)
    last = scene_index == plan.scene_total - 1
    transition = LAST_TRANSITION if last else writer.rng.choice(TRANSITIONS)
    elements, joke_messages, seconds = _to_elements(writer, transition)
    spoken = [item.speaker for item in writer.items if isinstance(item, Line)]
    return episode_pb2.Scene(
        index=scene_index,
        number=scene_index + 1,
        act=act_name,
        slugline=heading,
        summary=sentence(description),
        elements=elements,
        jokes=joke_messages,
        characters=list(dict.fromkeys(spoken)),
        duration_seconds=round(seconds, 1),
    )


def _write_scene_body(
    writer: SceneWriter,
    frame: Frame,
    beat: episode_pb2.Beat | None,
    outline: episode_pb2.Outline,
    heading: episode_pb2.Slugline,
) -> None:
    """The body with the card played in it; exits go in last, just before the closing action,
    so nobody who left speaks again; before them, anyone the card puts in the room who has not
    spoken nor been named is named."""
    exterior = heading.placement in (episode_pb2.PLACEMENT_EXT, episode_pb2.PLACEMENT_INT_EXT)
    _write_body(writer, frame, _Card(beat, outline, writer.plan.premise, exterior))
    leaving = exit_actions(writer, beat)
    writer.items[-1:-1] = [*presence_actions(writer, beat), *leaving]


def revise_planned_scene(
    plan: EpisodePlan,
    scene_index: int,
    notes: Sequence[str],
    *,
    outline: episode_pb2.Outline,
) -> episode_pb2.Scene:
    """Another take of scene `scene_index` of the plan that follows `notes` (see `read_notes`)."""
    directives = read_notes(notes, plan.cast, plan.setting, plan.kernel.props)
    return write_planned_scene(plan, scene_index, directives, outline=outline)


def scene_total(outline: episode_pb2.Outline, scene_index: int) -> int:
    """The scenes a plan needs for `scene_index`: the outline's, or more when it asks past them."""
    if scene_index < 0:
        raise ValueError(f"scene_index must be >= 0 (got {scene_index})")
    return max(outline.scene_count, scene_index + 1)


def write_scene(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    outline: episode_pb2.Outline,
    scene_index: int,
    seed: int,
    previous_summaries: list[str] | None = None,
    directives: SceneDirectives = FIRST_DRAFT,
    *,
    kernel: EpisodeKernel | None = None,
) -> episode_pb2.Scene:
    """One scene of the outline, planned from these inputs alone (`plan_episode` and
    `write_planned_scene` write several scenes from one plan).

    `previous_summaries` is accepted for parity with the LLM writers; the procedural writer takes
    its continuity (running gag, props, who drives which plot, the line plan) from the inputs it
    shares with every other scene, so the result never depends on which scenes were written first.
    """
    total = scene_total(outline, scene_index)
    plan = plan_episode(show, setting, cast, seed, outline, total, kernel=kernel)
    return write_planned_scene(plan, scene_index, directives, outline=outline)


def revise_scene(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    outline: episode_pb2.Outline,
    scene: episode_pb2.Scene,
    seed: int,
    notes: Sequence[str],
) -> episode_pb2.Scene:
    """Another take of `scene` that follows `notes` (see `read_notes`): rewritten from its beat,
    so whatever was wrong with it (a stranger speaking, an empty scene) is gone, with the same
    index, so the episode's line plan still keeps every line unique."""
    kernel = build_kernel(
        show, setting, cast, seed, premise=outline.premise, kernel_id=outline.kernel
    )
    directives = read_notes(notes, cast, setting, kernel.props)
    return write_scene(
        show, setting, cast, outline, scene.index, seed, directives=directives, kernel=kernel
    )
