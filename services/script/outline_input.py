"""An outline a request sends (one of ProposeOutlines', edited or not), checked and brought into
the episode's world.

Its text and cards are renamed first (`Casting.to_world`: an original name, or a character the
cast renamed), then checked: the beats cover scenes 0..n-1 in order with no gap, n within 1-20,
every text within its limit, every card's people in the cast, every payoff naming a setup of an
earlier beat, exits only of people in the scene. Errors name the field, e.g.
`outline.acts[1].beats[0].scene_index`. Beat runtime targets are the pipeline's to share out
(`allocate_targets`), so they are not checked.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from doppelganger.v1 import episode_pb2
from services.script.fields import InvalidRequest, check_text
from services.script.premise import MAX_PREMISE_CHARS

MIN_SCENES, MAX_SCENES = 1, 20
MAX_ACTS = 7
MAX_TITLE_CHARS = 200
MAX_STORY_CHARS = 4000  # logline, A plot, B plot (a logline may quote the premise)
MAX_ACT_NAME_CHARS = 60
MAX_BEAT_CHARS = 2000
MAX_LOCATION_CHARS = 80
MAX_TIME_CHARS = 20
MAX_PEOPLE = 12  # characters, entrances, exits of one card
MAX_SETUPS = 6  # planted by one beat
MAX_SETUP_CHARS = 300
MAX_PAYOFFS = 12
MAX_GAG_CHARS = 300
MAX_KERNEL_CHARS = 80
MAX_CALLBACKS = 4  # series bible facts one beat calls back to (a season's)
MAX_CALLBACK_CHARS = 300
SETUP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PLOTS = (episode_pb2.PLOT_LINE_A, episode_pb2.PLOT_LINE_B, episode_pb2.PLOT_LINE_RUNNER)
PLACEMENTS = (
    episode_pb2.PLACEMENT_UNSPECIFIED,
    episode_pb2.PLACEMENT_INT,
    episode_pb2.PLACEMENT_EXT,
    episode_pb2.PLACEMENT_INT_EXT,
)


def beat_count(outline: episode_pb2.Outline) -> int:
    return sum(len(act.beats) for act in outline.acts)


def _rename(outline: episode_pb2.Outline, to_world: Callable[[str], str]) -> None:
    outline.title, outline.logline = to_world(outline.title), to_world(outline.logline)
    outline.a_plot, outline.b_plot = to_world(outline.a_plot), to_world(outline.b_plot)
    outline.premise, outline.running_gag = to_world(outline.premise), to_world(outline.running_gag)
    for act in outline.acts:
        for beat in act.beats:
            beat.description = to_world(beat.description)
            beat.running_gag = to_world(beat.running_gag)
            for people in (beat.characters, beat.entrances, beat.exits):
                people[:] = [to_world(name.strip()) for name in people]
            for setup in beat.setups:
                setup.description = to_world(setup.description)
            for callback in beat.callbacks:
                callback.text = to_world(callback.text)


def _check_people(field: str, beat: episode_pb2.Beat, cast: Sequence[str]) -> None:
    known = set(cast)
    for kind in ("characters", "entrances", "exits"):
        people = getattr(beat, kind)
        if len(people) > MAX_PEOPLE:
            raise InvalidRequest(f"{field}.{kind} has {len(people)} names; at most {MAX_PEOPLE}")
        for position, name in enumerate(people):
            if name not in known:
                raise InvalidRequest(
                    f"{field}.{kind}[{position}] {name[:60]!r} is not a character of the cast "
                    f"({', '.join(cast)})"
                )
    there = {*beat.characters, *beat.entrances}
    for position, name in enumerate(beat.exits):
        if name not in there:
            raise InvalidRequest(
                f"{field}.exits[{position}] {name!r} must be among the scene's characters or "
                "entrances"
            )


def _check_threads(field: str, beat: episode_pb2.Beat, planted: dict[str, int]) -> None:
    """Setups have fresh ids; payoffs name setups of earlier beats. Adds this beat's setups."""
    if len(beat.setups) > MAX_SETUPS:
        raise InvalidRequest(f"{field}.setups has {len(beat.setups)} items; at most {MAX_SETUPS}")
    if len(beat.payoffs) > MAX_PAYOFFS:
        raise InvalidRequest(
            f"{field}.payoffs has {len(beat.payoffs)} items; at most {MAX_PAYOFFS}"
        )
    for position, payoff in enumerate(beat.payoffs):
        if planted.get(payoff, beat.scene_index) >= beat.scene_index:
            raise InvalidRequest(
                f"{field}.payoffs[{position}] {payoff[:64]!r} must name a setup planted by an "
                "earlier beat"
            )
    for position, setup in enumerate(beat.setups):
        if not SETUP_ID.fullmatch(setup.id):
            raise InvalidRequest(
                f"{field}.setups[{position}].id must be 1-64 letters, digits, '.', '_' or '-' "
                f"(got {setup.id[:70]!r})"
            )
        if setup.id in planted:
            raise InvalidRequest(f"{field}.setups[{position}].id {setup.id!r} is already used")
        check_text(f"{field}.setups[{position}].description", setup.description, MAX_SETUP_CHARS)
        planted[setup.id] = beat.scene_index


def _check_beat(
    field: str, beat: episode_pb2.Beat, cast: Sequence[str], planted: dict[str, int]
) -> None:
    if beat.plot not in PLOTS:
        raise InvalidRequest(
            f"{field}.plot must be PLOT_LINE_A, PLOT_LINE_B or PLOT_LINE_RUNNER (got {beat.plot})"
        )
    check_text(f"{field}.description", beat.description, MAX_BEAT_CHARS)
    check_text(f"{field}.location", beat.location, MAX_LOCATION_CHARS, required=False)
    if beat.placement not in PLACEMENTS:
        raise InvalidRequest(f"{field}.placement is not a Placement (got {beat.placement})")
    check_text(f"{field}.time_of_day", beat.time_of_day, MAX_TIME_CHARS, required=False)
    check_text(f"{field}.running_gag", beat.running_gag, MAX_GAG_CHARS, required=False)
    _check_people(field, beat, cast)
    _check_threads(field, beat, planted)
    _check_callbacks(field, beat)


def _check_callbacks(field: str, beat: episode_pb2.Beat) -> None:
    """A season's callbacks to its bible: a few per beat, each a fact id and its text."""
    if len(beat.callbacks) > MAX_CALLBACKS:
        raise InvalidRequest(
            f"{field}.callbacks has {len(beat.callbacks)} items; at most {MAX_CALLBACKS}"
        )
    for position, callback in enumerate(beat.callbacks):
        where = f"{field}.callbacks[{position}]"
        if not SETUP_ID.fullmatch(callback.fact_id):
            raise InvalidRequest(f"{where}.fact_id must be 1-64 of A-Z a-z 0-9 . _ -")
        check_text(f"{where}.text", callback.text, MAX_CALLBACK_CHARS)


def check_outline(
    outline: episode_pb2.Outline,
    cast: Sequence[str],
    to_world: Callable[[str], str],
    scene_count: int | None = None,
) -> episode_pb2.Outline:
    """The outline renamed into the episode's world and checked (a copy; InvalidRequest naming
    the field otherwise). `scene_count`, when the request sets one, must match its beats."""
    count = beat_count(outline)
    if not MIN_SCENES <= count <= MAX_SCENES:
        raise InvalidRequest(
            f"outline must have {MIN_SCENES}-{MAX_SCENES} beats, one per scene (got {count})"
        )
    if len(outline.acts) > MAX_ACTS:
        raise InvalidRequest(f"outline.acts has {len(outline.acts)} acts; at most {MAX_ACTS}")
    if scene_count is not None and scene_count != count:
        raise InvalidRequest(
            f"scene_count is {scene_count} but the outline has {count} beats (one per scene)"
        )
    if outline.scene_count and outline.scene_count != count:
        raise InvalidRequest(
            f"outline.scene_count is {outline.scene_count} but the outline has {count} beats"
        )
    world = episode_pb2.Outline()
    world.CopyFrom(outline)
    _rename(world, to_world)
    check_text("outline.title", world.title, MAX_TITLE_CHARS, required=False)
    for name in ("logline", "a_plot", "b_plot"):
        check_text(f"outline.{name}", getattr(world, name), MAX_STORY_CHARS, required=False)
    check_text("outline.premise", world.premise, MAX_PREMISE_CHARS, required=False)
    check_text("outline.kernel", world.kernel, MAX_KERNEL_CHARS, required=False)
    check_text("outline.running_gag", world.running_gag, MAX_GAG_CHARS, required=False)
    planted: dict[str, int] = {}
    expected = 0
    for a, act in enumerate(world.acts):
        check_text(f"outline.acts[{a}].name", act.name, MAX_ACT_NAME_CHARS, required=False)
        for b, beat in enumerate(act.beats):
            field = f"outline.acts[{a}].beats[{b}]"
            if beat.scene_index != expected:
                raise InvalidRequest(
                    f"{field}.scene_index must be {expected} (got {beat.scene_index}): the "
                    f"beats must cover scenes 0-{count - 1} in order, with no gap"
                )
            _check_beat(field, beat, cast, planted)
            expected += 1
    world.scene_count = count
    return world
