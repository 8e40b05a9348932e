"""A scene's card on the page: who is there and who comes in, where and when it plays, and the
action lines that plant its setups, pay off earlier ones, move the running gag, name the
premise's elements its beat names, and see a character out.

The card is the outline's (Beat fields 5-13); an outline without cards (an old or LLM-written one)
falls back to the beat's named characters and the plot line's regulars, and to the kernel's
locations. Setups paid off here are read from the cards the scene's view carries (cards.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.cards import has_card, setup_descriptions
from services.script.premise import THING, PremiseElement, mentioned
from services.script.procedural._cards import TIMES_OF_DAY, is_exterior
from services.script.procedural._grammar import (
    CARD_CALLBACK_ACTION,
    CARD_CALLBACKS,
    CARD_EXITS,
    CARD_PAYOFFS,
    CARD_PLANTS,
    CARD_PREMISE,
    CARD_PRESENCE,
    CARD_RUNNING_GAG,
    EXTERIOR_OPENINGS,
)
from services.script.procedural._kernel import EpisodeKernel, Roles, participants
from services.script.procedural._scenes import Action, Line, SceneWriter
from services.script.procedural._text import sentence
from services.script.script_text import mentions

MAX_SPEAKERS = 6
MAX_CALLBACKS = 2  # bible callbacks one scene plays


@dataclass(frozen=True)
class Cast:
    """Who speaks in a scene: present from the start, then entering, in that order."""

    starting: tuple[str, ...]
    entering: tuple[str, ...]

    @property
    def speakers(self) -> tuple[str, ...]:
        return (*self.starting, *self.entering)


def scene_cast(
    beat: episode_pb2.Beat | None,
    names: Sequence[str],
    roles: Roles,
    stage: str,
    wanted: Sequence[str] = (),
) -> Cast:
    """The card's people (a revision's `wanted` speakers enter too); without a card, the beat's
    named characters and the plot's regulars, the first two there from the start."""
    if beat is None or not has_card(beat):
        speakers = participants(beat, names, roles, stage, wanted)
        return Cast(tuple(speakers[:2]), tuple(speakers[2:]))
    starting = [name for name in dict.fromkeys(beat.characters) if name in names]
    entering = [n for n in dict.fromkeys(beat.entrances) if n in names and n not in starting]
    entering += [n for n in wanted if n in names and n not in starting and n not in entering]
    if not starting and entering:
        starting, entering = entering[:1], entering[1:]
    if not starting:
        starting = participants(beat, names, roles, stage)[:2]
    speakers = [*starting, *entering][:MAX_SPEAKERS]
    return Cast(tuple(s for s in starting if s in speakers), tuple(speakers[len(starting) :]))


def slugline(
    beat: episode_pb2.Beat | None,
    setting: episode_pb2.Setting,
    kernel: EpisodeKernel,
    scene_index: int,
    total: int,
) -> episode_pb2.Slugline:
    """The card's place and time; without one, the kernel's location for the scene's position."""
    if beat is not None and beat.location:
        placement = beat.placement or (
            episode_pb2.PLACEMENT_EXT
            if is_exterior(setting, beat.location)
            else episode_pb2.PLACEMENT_INT
        )
        return episode_pb2.Slugline(
            placement=placement,
            location=beat.location.upper(),
            time_of_day=(beat.time_of_day or "DAY").upper(),
        )
    location = kernel.locations[scene_index % len(kernel.locations)]
    bucket = min(len(TIMES_OF_DAY) - 1, scene_index * len(TIMES_OF_DAY) // max(1, total))
    exterior = is_exterior(setting, location)
    return episode_pb2.Slugline(
        placement=episode_pb2.PLACEMENT_EXT if exterior else episode_pb2.PLACEMENT_INT,
        location=location,
        time_of_day=TIMES_OF_DAY[bucket],
    )


def opening_ambience(writer: SceneWriter, exterior: bool) -> str:
    """The establishing line: open air outside; inside, the first of the setting's ambience
    lines that agrees with the heading."""
    if exterior:
        template = next(iter(writer.pick("exterior", EXTERIOR_OPENINGS)))
        return sentence(template.format_map(writer.slots("", "", "")))
    ambiences = writer.pick("ambience", catalog.setting_profile(writer.setting).ambience)
    return next((text for text in ambiences if writer.suits_heading(text)), "")


def _action(writer: SceneWriter, pool_name: str, pool: Sequence[str], **slots: str) -> Action:
    template = next(iter(writer.pick(pool_name, pool)))
    return Action(sentence(template.format(**slots)))


def _mid_sentence(text: str) -> str:
    """'The drone turns up' -> 'the drone turns up' (a name keeps its capital)."""
    first, _, rest = text.partition(" ")
    return f"{first.lower()} {rest}" if first.lower() in ("the", "a", "an") and rest else text


def _phrase(element: PremiseElement) -> str:
    return f"the {element.phrase}" if element.kind == THING else element.phrase


def _joined(texts: Sequence[str]) -> str:
    """Several setups as one clause list: 'a; b; and c'."""
    cleaned = [text.rstrip(".") for text in texts if text]
    return "; ".join(cleaned[:-1]) + ("; and " if len(cleaned) > 1 else "") + cleaned[-1]


def plant_actions(writer: SceneWriter, beat: episode_pb2.Beat | None, primary: str) -> list[Action]:
    """The setups the card plants, in one action line."""
    if beat is None or not beat.setups:
        return []
    planted = _joined([setup.description for setup in beat.setups])
    return [_action(writer, "plant", CARD_PLANTS, X=primary, setup=planted)]


def callback_lines(
    writer: SceneWriter, beat: episode_pb2.Beat | None, present: Sequence[str]
) -> list[Line | Action]:
    """The series bible facts the card calls back to (a season's, Beat.callbacks), each in a
    line said by someone present whom the fact does not name (so nobody names themself); when
    everyone present is named, in an action line instead."""
    if beat is None or not beat.callbacks or not present:
        return []
    played: list[Line | Action] = []
    for callback in beat.callbacks[:MAX_CALLBACKS]:
        memory = " ".join(callback.text.split()).rstrip(".!?;, ")
        slots = {"memory": memory, "Memory": memory[:1].upper() + memory[1:]}
        start = writer.rng.randrange(len(CARD_CALLBACKS))
        templates = [*CARD_CALLBACKS[start:], *CARD_CALLBACKS[:start]]
        line = next(
            (
                writer.compose(speaker, text, _other(present, speaker), plain=True)
                for speaker in present
                for text in (template.format_map(slots) for template in templates)
                if writer.fits(speaker, text)
            ),
            None,
        )
        if line is None:
            text = sentence(CARD_CALLBACK_ACTION.format_map({**slots, "X": present[0]}))
            played.append(Action(text))
        else:
            played.append(line)
    return played


def _other(present: Sequence[str], speaker: str) -> str:
    return next((name for name in present if name != speaker), speaker)


def premise_actions(
    writer: SceneWriter,
    beat: episode_pb2.Beat | None,
    premise: Sequence[PremiseElement],
    primary: str,
) -> list[Action]:
    """The premise's elements the beat names that the scene has not mentioned (nor, for a cast
    member, heard speak)."""
    if beat is None or not premise:
        return []
    said = [item.text for item in writer.items]
    said += [item.speaker for item in writer.items if isinstance(item, Line)]
    return [
        _action(writer, "premise", CARD_PREMISE, X=primary, element=_phrase(element))
        for element in premise
        if mentioned(element, [beat.description]) and not mentioned(element, said)
    ]


def late_actions(
    writer: SceneWriter, beat: episode_pb2.Beat | None, outline: episode_pb2.Outline, primary: str
) -> list[Action]:
    """Earlier setups paid off here (one action line), and the running gag's state after the
    scene when the card's setups do not already show it."""
    if beat is None:
        return []
    actions: list[Action] = []
    planted = setup_descriptions(outline)
    due = [planted[p] for p in beat.payoffs if planted.get(p)]
    if due:
        actions.append(_action(writer, "payoff", CARD_PAYOFFS, X=primary, setup=_joined(due)))
    shown = {_key(setup.description) for setup in beat.setups} | {_key(text) for text in due}
    if beat.running_gag and _key(beat.running_gag) not in shown:
        state = _mid_sentence(beat.running_gag.rstrip("."))
        actions.append(_action(writer, "gag", CARD_RUNNING_GAG, state=state))
    return actions


def _key(text: str) -> str:
    return " ".join(text.lower().rstrip(".").split())


def exit_actions(writer: SceneWriter, beat: episode_pb2.Beat | None) -> list[Action]:
    """The card's exits, for those who were in the scene: they leave before it ends."""
    if beat is None:
        return []
    here = {item.speaker for item in writer.items if isinstance(item, Line)}
    return [
        _action(writer, "exit", CARD_EXITS, X=name)
        for name in dict.fromkeys(beat.exits)
        if name in here
    ]


def presence_actions(writer: SceneWriter, beat: episode_pb2.Beat | None) -> list[Action]:
    """The card's people in the cast who neither speak nor are named in the scene, named in one
    action line: a character the card puts in the room is on the page (the validator's
    silent_presence)."""
    if beat is None:
        return []
    names = {character.name for character in writer.plan.cast}
    spoken = {item.speaker for item in writer.items if isinstance(item, Line)}
    texts = [item.text for item in writer.items]
    silent = [
        name
        for name in dict.fromkeys([*beat.characters, *beat.entrances])
        if name in names and name not in spoken and not any(mentions(t, name) for t in texts)
    ]
    if not silent:
        return []
    who = " and ".join([", ".join(silent[:-1]), silent[-1]]) if len(silent) > 1 else silent[0]
    return [_action(writer, "presence", CARD_PRESENCE, X=who)]
