"""Faults a showrunner flags first, injected into good episodes: the craft benchmark's fault set
(bench/suites/craft.py) and the validator's acceptance tests.

Each injector takes a copy of a clean episode and a scene and plants one fault of its kind, or
returns None when the episode offers no place for it (a show without spouses has no spouse to
call "Mr."). `Fault.check` is the check id the validator must raise, at `scene_index`.

Faults that need scene cards (a character who never entered, a silent presence, orphan and
missing payoffs) run on cards: an outline without them (the procedural outline before it writes
cards) first gets cards read back from its own scenes (`ensure_cards`: the slugline, who is there
from the start, who enters and leaves), as the outline writer would have planned them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2
from services.script.checks.names import original_names
from services.script.checks.places import set_of
from services.script.checks.presence import movements, read_presence
from services.script.checks.threads import content_stems
from services.script.script_text import (
    beats_of,
    cast_names,
    has_card,
    mentions,
    read_scene,
)

Severity = episode_pb2.Severity


@dataclass(frozen=True)
class Fault:
    kind: str
    check: str  # the check id the validator must raise
    scene_index: int


Injector = Callable[[episode_pb2.Episode, int], Fault | None]


def copy(episode: episode_pb2.Episode) -> episode_pb2.Episode:
    duplicate = episode_pb2.Episode()
    duplicate.CopyFrom(episode)
    return duplicate


def ensure_cards(episode: episode_pb2.Episode) -> None:
    """Cards for an outline that has none, read back from the scenes."""
    beats = {beat.scene_index: beat for beat in beats_of(episode.outline)}
    if any(has_card(beat) for beat in beats.values()):
        return
    names = cast_names(episode.cast)
    for scene in episode.scenes:
        beat = beats.get(scene.index)
        if beat is None:
            continue
        text = read_scene(scene)
        presence = read_presence(text, names)
        entering = [n for line in text.actions for n in movements(line.text, names)[0]]
        leaving = [n for line in text.actions for n in movements(line.text, names)[1]]
        spoken = set(text.speakers())
        beat.location = scene.slugline.location
        beat.placement = scene.slugline.placement
        beat.time_of_day = scene.slugline.time_of_day
        beat.characters[:] = [n for n in names if n in presence.start and n in spoken]
        beat.entrances[:] = list(dict.fromkeys(entering))
        beat.exits[:] = list(dict.fromkeys(n for n in leaving if n != "*"))


def _card(episode: episode_pb2.Episode, index: int) -> episode_pb2.Beat:
    return next(beat for beat in beats_of(episode.outline) if beat.scene_index == index)


def _dialogue(scene: episode_pb2.Scene) -> list[tuple[int, episode_pb2.DialogueLine]]:
    return [(i, e.dialogue) for i, e in enumerate(scene.elements) if e.HasField("dialogue")]


def _line(speaker: str, text: str) -> episode_pb2.ScriptElement:
    return episode_pb2.ScriptElement(
        dialogue=episode_pb2.DialogueLine(character=speaker, text=text)
    )


def _action(text: str) -> episode_pb2.ScriptElement:
    return episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=text))


def _insert(scene: episode_pb2.Scene, position: int, element: episode_pb2.ScriptElement) -> None:
    """Inserts an element, keeping the jokes pointing at their lines."""
    elements = list(scene.elements)
    elements.insert(position, element)
    del scene.elements[:]
    scene.elements.extend(elements)
    for joke in scene.jokes:
        if joke.element_index >= position:
            joke.element_index += 1


def _absent(episode: episode_pb2.Episode, scene: episode_pb2.Scene) -> list[str]:
    """Cast members who neither speak in the scene nor are mentioned in it."""
    text = read_scene(scene)
    return [
        name
        for name in cast_names(episode.cast)
        if name not in text.speakers() and not any(mentions(line.text, name) for line in text.lines)
    ]


# -- the injectors --------------------------------------------------------------------------------


def stranger(episode: episode_pb2.Episode, index: int) -> Fault | None:
    lines = _dialogue(episode.scenes[index])
    if not lines:
        return None
    lines[len(lines) // 2][1].character = "Mysterious Stranger"
    return Fault("stranger", "stranger", index)


def never_entered(episode: episode_pb2.Episode, index: int) -> Fault | None:
    ensure_cards(episode)
    scene, card = episode.scenes[index], _card(episode, index)
    lines = _dialogue(scene)
    candidates = [
        n for n in _absent(episode, scene) if n not in card.characters and n not in card.entrances
    ]
    if not candidates or len(lines) < 2:
        return None
    position = lines[len(lines) // 2][0]
    _insert(scene, position, _line(candidates[0], "I've been here the whole time, obviously."))
    return Fault("never_entered", "speaks_before_entering", index)


def after_exit(episode: episode_pb2.Episode, index: int) -> Fault | None:
    scene = episode.scenes[index]
    lines = _dialogue(scene)
    speakers = [line.character for _, line in lines]
    repeated = [name for name in dict.fromkeys(speakers) if speakers.count(name) >= 2]
    if not repeated:
        return None
    who = repeated[0]
    last = max(position for position, line in lines if line.character == who)
    _insert(scene, last, _action(f"{who} storms out, slamming the door."))
    return Fault("after_exit", "speaks_after_leaving", index)


def self_naming(episode: episode_pb2.Episode, index: int) -> Fault | None:
    lines = _dialogue(episode.scenes[index])
    names = cast_names(episode.cast)
    if not lines or len(names) < 2:
        return None
    _, line = lines[len(lines) // 2]
    other = next(name for name in names if name != line.character)
    line.text += f" {line.character} and {other} are still at war."
    return Fault("self_naming", "self_naming", index)


def original_name(episode: episode_pb2.Episode, index: int) -> Fault | None:
    names = original_names(episode.show, episode.cast, episode.setting)
    lines = _dialogue(episode.scenes[index])
    if not names or not lines:
        return None
    surnames = [
        form
        for form, whose in names.items()
        if whose and not form.startswith(whose) and " " not in form
    ]
    form = (surnames or sorted(names))[0]
    _, line = lines[-1]
    other = next((n for n in cast_names(episode.cast) if n != line.character), line.character)
    line.text += f" {other} {form}, you old cheapskate!"
    return Fault("original_name", "original_name", index)


def heading_action(episode: episode_pb2.Episode, index: int) -> Fault | None:
    scene = episode.scenes[index]
    scene.slugline.placement = episode_pb2.PLACEMENT_EXT
    _insert(scene, 0, _action("Through the window, the lights of the settlement blink on."))
    return Fault("heading_action", "heading_action", index)


def gutted(episode: episode_pb2.Episode, index: int) -> Fault | None:
    scene = episode.scenes[index]
    if not scene.jokes:
        return None
    del scene.jokes[:]
    for _, line in _dialogue(scene):
        line.joke_id = ""
    return Fault("gutted", "no_comedy", index)


def time_reversal(episode: episode_pb2.Episode, index: int) -> Fault | None:
    if index == 0 or episode.scenes[index - 1].act != episode.scenes[index].act:
        return None
    before, after = episode.scenes[index - 1], episode.scenes[index]
    after.slugline.location = before.slugline.location
    before.slugline.time_of_day, after.slugline.time_of_day = "NIGHT", "MORNING"
    return Fault("time_reversal", "time_of_day", index)


def continuous_elsewhere(episode: episode_pb2.Episode, index: int) -> Fault | None:
    if index == 0:
        return None
    before, after = episode.scenes[index - 1], episode.scenes[index]
    if set_of(before.slugline.location) == set_of(after.slugline.location):
        after.slugline.location = "SOMEWHERE ELSE ENTIRELY"
    after.slugline.time_of_day = "CONTINUOUS"
    return Fault("continuous_elsewhere", "time_of_day", index)


def orphan_payoff(episode: episode_pb2.Episode, index: int) -> Fault | None:
    ensure_cards(episode)
    _card(episode, index).payoffs.append("s99-never-planted")
    return Fault("orphan_payoff", "orphan_payoff", index)


def missing_payoff(episode: episode_pb2.Episode, index: int) -> Fault | None:
    if index == 0:
        return None
    ensure_cards(episode)
    later = content_stems(read_scene(episode.scenes[index]).text)
    for earlier in range(index):
        for _, line in _dialogue(episode.scenes[earlier]):
            stems = content_stems(line.text)
            if len(stems) >= 3 and not stems & later:
                setup_id = f"s{earlier}-planted"
                _card(episode, earlier).setups.add(id=setup_id, description=line.text)
                _card(episode, index).payoffs.append(setup_id)
                return Fault("missing_payoff", "missing_payoff", index)
    return None


def silent_presence(episode: episode_pb2.Episode, index: int) -> Fault | None:
    ensure_cards(episode)
    absent = _absent(episode, episode.scenes[index])
    if not absent:
        return None
    _card(episode, index).characters.append(absent[0])
    return Fault("silent_presence", "silent_presence", index)


def form_of_address(episode: episode_pb2.Episode, index: int) -> Fault | None:
    scene = episode.scenes[index]
    lines = _dialogue(scene)
    for relationship in episode.relationships:
        kind = relationship.kind.lower()
        first, second = relationship.from_character, relationship.to_character
        if any(word in kind for word in ("wife", "husband", "married")):
            position = lines[-1][0] + 1 if lines else 0
            _insert(scene, position, _line(first, f"Whatever you say, Mr. {second}."))
            return Fault("form_of_address", "form_of_address", index)
        if any(word in kind for word in ("boss", "producer", "dispatcher")):
            boss_lines = [position for position, line in lines if line.character == first]
            if boss_lines:
                _insert(scene, boss_lines[0] + 1, _line(second, "Whatever you say, honey."))
                return Fault("form_of_address", "form_of_address", index)
    return None


INJECTORS: dict[str, Injector] = {
    "stranger": stranger,
    "never_entered": never_entered,
    "after_exit": after_exit,
    "self_naming": self_naming,
    "original_name": original_name,
    "heading_action": heading_action,
    "gutted": gutted,
    "time_reversal": time_reversal,
    "continuous_elsewhere": continuous_elsewhere,
    "orphan_payoff": orphan_payoff,
    "missing_payoff": missing_payoff,
    "silent_presence": silent_presence,
    "form_of_address": form_of_address,
}
# The six kinds of the issue's acceptance (a speaker outside the cast, a character who never
# entered speaking, self-naming, an original-show name, an exterior heading with indoor action,
# a scene gutted of its comedy).
ISSUE_KINDS = ("stranger", "never_entered", "self_naming", "original_name", "heading_action",
               "gutted")  # fmt: skip


def inject(
    episode: episode_pb2.Episode, kind: str, index: int
) -> tuple[episode_pb2.Episode, Fault] | None:
    """A copy of the episode with one fault of `kind` in scene `index` (None: no place for it)."""
    faulty = copy(episode)
    fault = INJECTORS[kind](faulty, index)
    return None if fault is None else (faulty, fault)


def flagged(report: episode_pb2.ValidationReport, fault: Fault) -> bool:
    """Whether the report raises the fault's check at warning or worse, in its scene."""
    return any(
        issue.check == fault.check
        and issue.scene_index == fault.scene_index
        and issue.severity >= Severity.SEVERITY_WARNING
        for issue in report.issues
    )
