"""Scene cards: what each scene of an outline may know about the others, and its cache identity.

Scenes are written in parallel, so a scene learns about the rest of the episode from the outline,
never from the other scenes' text. What a scene is written from is its *view* of the outline
(`scene_view`):
- the outline-level fields (title, logline, A and B plots, premise, kernel, running gag, runtime
  target) and the structure of every beat (scene index, plot line, runtime target, act);
- its own beat whole: description and card (location, INT/EXT, time of day, who is present,
  enters and exits, setups planted, payoffs due, the running gag's state);
- the cards that feed it: the previous scene's, and every earlier one that planted a setup this
  scene pays off. Their cards only, not their descriptions.
The pipeline hashes the view into the scene's cache key and hands the writer the view itself, so a
key always covers everything its scene was written from: editing beat k's description rewrites
scene k only; editing beat k's card rewrites scene k, the next scene and the scenes paying off
k's setups; editing an outline-level field rewrites every scene.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping

from doppelganger.v1 import episode_pb2

PLACEMENT_WORDS = {
    episode_pb2.PLACEMENT_INT: "INT.",
    episode_pb2.PLACEMENT_EXT: "EXT.",
    episode_pb2.PLACEMENT_INT_EXT: "INT./EXT.",
}
_CARD_FIELDS = (
    "location",
    "placement",
    "time_of_day",
    "characters",
    "entrances",
    "exits",
    "setups",
    "payoffs",
    "running_gag",
)


def beats(outline: episode_pb2.Outline) -> list[episode_pb2.Beat]:
    """Every beat, in act order."""
    return [beat for act in outline.acts for beat in act.beats]


def beat_at(outline: episode_pb2.Outline, index: int) -> episode_pb2.Beat | None:
    """The beat of scene `index` (the first one naming it)."""
    return next((beat for beat in beats(outline) if beat.scene_index == index), None)


def setup_sources(outline: episode_pb2.Outline) -> dict[str, int]:
    """Setup id -> the scene index of the beat that plants it (the first one)."""
    sources: dict[str, int] = {}
    for beat in beats(outline):
        for setup in beat.setups:
            sources.setdefault(setup.id, beat.scene_index)
    return sources


def setup_descriptions(outline: episode_pb2.Outline) -> dict[str, str]:
    """Setup id -> what it plants."""
    found: dict[str, str] = {}
    for beat in beats(outline):
        for setup in beat.setups:
            found.setdefault(setup.id, setup.description)
    return found


def feeding_indices(outline: episode_pb2.Outline, index: int) -> list[int]:
    """The scenes whose cards scene `index` reads: the previous one and every earlier one that
    planted a setup it pays off, in scene order."""
    own = beat_at(outline, index)
    sources = setup_sources(outline)
    feeding = {index - 1} if index > 0 and beat_at(outline, index - 1) is not None else set()
    if own is not None:
        feeding.update(sources[p] for p in own.payoffs if sources.get(p, index) < index)
    return sorted(feeding)


def _structure_only(beat: episode_pb2.Beat) -> episode_pb2.Beat:
    return episode_pb2.Beat(
        scene_index=beat.scene_index, plot=beat.plot, target_seconds=beat.target_seconds
    )


def _card_only(beat: episode_pb2.Beat) -> episode_pb2.Beat:
    card = _structure_only(beat)
    for name in _CARD_FIELDS:
        value = getattr(beat, name)
        if isinstance(value, str | int):
            setattr(card, name, value)
        else:
            getattr(card, name).extend(value)
    return card


def _copy_outline(
    outline: episode_pb2.Outline, keep: Callable[[episode_pb2.Beat], episode_pb2.Beat]
) -> episode_pb2.Outline:
    view = episode_pb2.Outline()
    view.CopyFrom(outline)
    for act in view.acts:
        kept = [keep(b) for b in act.beats]
        del act.beats[:]
        act.beats.extend(kept)
    return view


def scene_view(outline: episode_pb2.Outline, index: int) -> episode_pb2.Outline:
    """What scene `index` is written from (see the module docstring)."""
    feeding = set(feeding_indices(outline, index))

    def keep(beat: episode_pb2.Beat) -> episode_pb2.Beat:
        if beat.scene_index == index:
            whole = episode_pb2.Beat()
            whole.CopyFrom(beat)
            return whole
        return _card_only(beat) if beat.scene_index in feeding else _structure_only(beat)

    return _copy_outline(outline, keep)


def structure(outline: episode_pb2.Outline) -> episode_pb2.Outline:
    """The outline's shape alone: outline-level fields and every beat's index, plot line and
    runtime target (no description, no card). What an episode-wide plan may depend on."""
    return _copy_outline(outline, _structure_only)


def slugline(beat: episode_pb2.Beat) -> str:
    """'INT. GALLEY - NIGHT' (empty when the card has no location)."""
    if not beat.location:
        return ""
    where = PLACEMENT_WORDS.get(beat.placement, "INT.")
    when = f" - {beat.time_of_day}" if beat.time_of_day else ""
    return f"{where} {beat.location}{when}"


def card_summary(beat: episode_pb2.Beat, descriptions: Mapping[str, str]) -> str:
    """One line about a scene's card, for a later scene's writer: where, when, who is there,
    who left, what was planted, how the running gag stands."""
    parts = [f"scene {beat.scene_index + 1}"]
    heading = slugline(beat)
    if heading:
        parts.append(heading)
    people = [*beat.characters, *beat.entrances]
    if people:
        parts.append("present: " + ", ".join(dict.fromkeys(people)))
    if beat.exits:
        parts.append("leaves: " + ", ".join(beat.exits))
    for setup in beat.setups:
        parts.append(f"plants {setup.id}: {setup.description}")
    for payoff in beat.payoffs:
        parts.append(f"pays off {payoff}: {descriptions.get(payoff, '')}".rstrip(": "))
    if beat.running_gag:
        parts.append(f"running gag: {beat.running_gag}")
    return "; ".join(parts)


def feeding_summaries(outline: episode_pb2.Outline, index: int) -> list[str]:
    """`card_summary` of every card that feeds scene `index` (what `earlier` carries)."""
    descriptions = setup_descriptions(outline)
    found = {beat.scene_index: beat for beat in beats(outline)}
    return [card_summary(found[i], descriptions) for i in feeding_indices(outline, index)]


def callback_terms(
    outline: episode_pb2.Outline, index: int, vocabulary: Iterable[str]
) -> tuple[str, ...]:
    """The words of `vocabulary` (props, the setting's words) a callback in scene `index` can
    land on: what the setups it pays off planted, and the running gag (after the first scene).
    From the scene's view only, so a scene's jokes score the same whatever the other scenes say."""
    if index <= 0:
        return ()
    own = beat_at(outline, index)
    descriptions = setup_descriptions(outline)
    planted = [descriptions.get(p, "") for p in (own.payoffs if own else ())]
    text = " ".join([*planted, outline.running_gag]).lower()
    terms = [t for t in dict.fromkeys(vocabulary) if t and _word(t.lower()).search(text)]
    return tuple(sorted(terms))


def _word(term: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(term)}(?!\w)")


def card_characters(beat: episode_pb2.Beat) -> list[str]:
    """Everyone the card puts in the scene: present at the start, then entering."""
    return list(dict.fromkeys([*beat.characters, *beat.entrances]))


def has_card(beat: episode_pb2.Beat | None) -> bool:
    return beat is not None and bool(beat.location or beat.characters or beat.entrances)
