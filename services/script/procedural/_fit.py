"""Fitting a scene to its runtime target, and keeping its comedic beats apart.

Exchanges go into the scene's shortest stretches between jokes (or optional lines come out) until
the runtime estimate is within FIT_TOLERANCE of the beat's target; a line goes in wherever two
comedic beats would land closer than the validator's CLUSTER_SECONDS.
"""

from __future__ import annotations

from collections.abc import Sequence

from doppelganger.v1 import episode_pb2
from services.script.procedural._grammar import ACTION_BUSINESS, ACTION_REACTIONS
from services.script.procedural._scenes import (
    Action,
    Frame,
    Item,
    Line,
    SceneWriter,
    item_seconds,
)
from services.script.procedural._text import sentence
from services.script.validation import CLUSTER_SECONDS

FIT_TOLERANCE = 0.05
EXCHANGE_SECONDS = 8.0  # with less than this missing, single lines fill the gap
MAX_FILLS = 40


def someone_else(present: Sequence[str], me: str) -> str:
    return next((name for name in present if name != me), me)


def is_beat(item: Item) -> bool:
    return (
        isinstance(item, Line)
        and item.joke is not None
        and item.joke.role != episode_pb2.JOKE_ROLE_SETUP
    )


def space_beats(writer: SceneWriter) -> None:
    """Pads with a line where two comedic beats would land closer than CLUSTER_SECONDS."""
    for _ in range(6):
        clock, last_beat, crowded = 0.0, None, None
        for position, item in enumerate(writer.items):
            clock += item_seconds(item)
            if not is_beat(item):
                continue
            if last_beat is not None and clock - last_beat < CLUSTER_SECONDS + 1.0:
                crowded = position
                break
            last_beat = clock
        if crowded is None:
            return
        _insert_line(writer, _setup_start(writer.items, crowded))


def _setup_start(items: Sequence[Item], beat: int) -> int:
    """Where the joke that pays off at `beat` starts (its setup or lead-in line)."""
    for candidate in range(beat - 1, max(-1, beat - 4), -1):
        item = items[candidate]
        if isinstance(item, Line) and (
            item.joke is None or item.joke.role == episode_pb2.JOKE_ROLE_SETUP
        ):
            return candidate
    return beat


def _neighbours(items: Sequence[Item], position: int) -> set[str]:
    around = [items[position - 1] if position else None]
    around.append(items[position] if position < len(items) else None)
    return {item.speaker for item in around if isinstance(item, Line)}


def _present_at(items: Sequence[Item], position: int) -> list[str]:
    """Who has spoken before `position` (and so is in the room there)."""
    return list(dict.fromkeys(i.speaker for i in items[:position] if isinstance(i, Line)))


def _insert_line(writer: SceneWriter, position: int) -> float:
    """A plain line (or a beat of business) at `position`; returns the seconds it adds."""
    spoken = _present_at(writer.items, position)
    choices = [name for name in spoken if name not in _neighbours(writer.items, position)]
    if not choices:
        return _insert_action(writer, position, spoken)
    me = choices[writer.rng.randrange(len(choices))]
    you = someone_else(spoken, me)
    pool = "banter" if writer.rng.random() < 0.5 else "object"
    line = writer.compose(me, writer.fill(pool, me, you, you), you, optional=True)
    writer.items.insert(position, line)
    return item_seconds(line)


def _insert_action(writer: SceneWriter, position: int, spoken: Sequence[str]) -> float:
    """A beat of business where no one can speak without speaking twice in a row."""
    actions = ACTION_REACTIONS if writer.rng.random() < 0.5 else ACTION_BUSINESS
    x, y = [*dict.fromkeys(spoken), *writer.cast][:2]
    slots = writer.slots(x, y, y)
    slots.update(X=x, Y=y)
    start = writer.rng.randrange(len(actions))
    order = [actions[(start + k) % len(actions)] for k in range(len(actions))]
    texts = [sentence(template.format_map(slots)) for template in order]
    text = next((t for t in texts if writer.suits_heading(t)), texts[0])
    action = Action(text, optional=True)
    writer.items.insert(position, action)
    return item_seconds(action)


def _speaker_at(items: Sequence[Item], position: int) -> str | None:
    item = items[position] if 0 <= position < len(items) else None
    return item.speaker if isinstance(item, Line) else None


def _insert_exchange(writer: SceneWriter, frame: Frame, present: Sequence[str], at: int) -> float:
    """The beat developed a little further: a line from the stage's pool and an answer."""
    before, after = _speaker_at(writer.items, at - 1), _speaker_at(writer.items, at)
    here = [n for n in _present_at(writer.items, at) if n in present] or list(present[:2])
    drivers = [name for name in (frame.primary, frame.secondary) if name != before]
    if not drivers:
        return _insert_line(writer, at)
    me = drivers[0]
    answers = [name for name in here if name not in (me, after)]
    if not answers:
        return _insert_line(writer, at)
    you = answers[writer.rng.randrange(len(answers))]
    other = someone_else([n for n in here if n not in (me, you)] or [frame.bystander], you)
    pool = writer.reaction_pool(you) if writer.rng.random() < 0.5 else "object"
    develop_text = writer.fill(f"develop:{frame.stage}", me, you, other)
    develop = writer.compose(me, develop_text, you, optional=True)
    answer = writer.compose(you, writer.fill(pool, you, me, other), me, optional=True)
    writer.items[at:at] = [develop, answer]
    return item_seconds(develop) + item_seconds(answer)


def _gaps(items: Sequence[Item]) -> list[tuple[float, int]]:
    """(seconds, insertion point) of every stretch between comedic beats: before the first
    joke's setup, between jokes, and before the closing action."""
    stretches, clock, start = [], 0.0, 0.0
    for position, item in enumerate(items):
        if is_beat(item):
            stretches.append((clock - start, _setup_start(items, position)))
            start = clock
        clock += item_seconds(item)
    stretches.append((clock - start, max(0, len(items) - 1)))
    return stretches


def fit_length(writer: SceneWriter, frame: Frame, present: Sequence[str]) -> None:
    """Grows the scene into its shortest stretches, or drops optional lines, until its runtime
    estimate is within FIT_TOLERANCE of the target."""
    low, high = frame.target * (1 - FIT_TOLERANCE), frame.target * (1 + FIT_TOLERANCE)
    seconds = sum(item_seconds(item) for item in writer.items)
    for _ in range(MAX_FILLS):
        if seconds >= low:
            break
        _, at = min(_gaps(writer.items))
        if low - seconds > EXCHANGE_SECONDS:
            seconds += _insert_exchange(writer, frame, present, at)
        else:
            seconds += _insert_line(writer, at)
    while seconds > high:
        dropped = _drop_optional(writer)
        if not dropped:
            break
        seconds -= dropped


def _drop_optional(writer: SceneWriter) -> float:
    """Removes the last optional item whose removal puts no one twice in a row."""
    items = writer.items
    for position in range(len(items) - 1, -1, -1):
        item = items[position]
        if not item.optional:
            continue
        before, after = _speaker_at(items, position - 1), _speaker_at(items, position + 1)
        if before is not None and before == after:
            continue
        del items[position]
        return item_seconds(item)
    return 0.0
