"""The procedural writer's scene cards: where and when every scene plays, who is in it, what it
plants and pays off, and how the running gag stands after it.

Locations follow the kernel's order; a location that is exterior (the setting says so, or its
name does) plays EXT. Times of day move forward through the episode, and a scene in the same place
as the one before keeps its time. The beat's speakers are present from the start (the first two)
or enter; in a few act scenes the last to enter leaves again. Setups: the A plot's prop is planted
in its first beat and paid off at the climax, the B plot's prop in its first beat and paid off at
the climax (or its last beat), the running gag (in episodes of RUNNING_GAG_SCENES or more) in the
first scene and paid off in the last; a setup is planted only when a later scene is there to pay
it off.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.cards import beats
from services.script.procedural._grammar import (
    A_STAGES,
    B_STAGES,
    RUNNING_GAG_STATES,
    SETUPS,
)
from services.script.procedural._kernel import EpisodeKernel, participants
from services.script.procedural._text import digest, sentence

TIMES_OF_DAY = ("MORNING", "DAY", "DAY", "AFTERNOON", "EVENING", "NIGHT")
RUNNING_GAG_SCENES = 4  # fewer scenes have no room for a running gag's setup and payoff
EXIT_STAGES = frozenset({"scheme", "complication", "friction", "b-escalation"})
_EXTERIOR_WORDS = re.compile(
    r"\b(STREET|SURFACE|YARD|GARDEN|CLEARING|ROOF|ROOFTOP|PERIMETER|FOREST|RIDGE|DOCK|ALLEY|"
    r"COURTYARD|FIELD|FIELDS|BEACH|SHORE|OUTSIDE|TRAIL|CORRAL|BATTLEMENTS|MARKET|BRIDGE PATH|"
    r"QUARTERDECK|MAIN DECK|HULL|PATH|STEPS|LOT)\b"
)


def is_exterior(setting: episode_pb2.Setting, location: str) -> bool:
    """An outdoor location: the setting's profile says so, or its name does (STREET, YARD...)."""
    profile = catalog.setting_profile(setting)
    return location in profile.exteriors or _EXTERIOR_WORDS.search(location.upper()) is not None


def _slug(text: str) -> str:
    return "-".join(re.findall(r"[a-z0-9]+", text.lower())[:4]) or "thing"


def _place_and_time(
    outline_beats: Sequence[episode_pb2.Beat], kernel: EpisodeKernel, setting: episode_pb2.Setting
) -> None:
    total = len(outline_beats)
    previous: episode_pb2.Beat | None = None
    for position, beat in enumerate(outline_beats):
        beat.location = kernel.locations[position % len(kernel.locations)]
        exterior = is_exterior(setting, beat.location)
        beat.placement = episode_pb2.PLACEMENT_EXT if exterior else episode_pb2.PLACEMENT_INT
        bucket = min(len(TIMES_OF_DAY) - 1, position * len(TIMES_OF_DAY) // max(1, total))
        same_place = previous is not None and previous.location == beat.location
        beat.time_of_day = previous.time_of_day if same_place and previous else TIMES_OF_DAY[bucket]
        previous = beat


def _people(
    outline_beats: Sequence[episode_pb2.Beat],
    kernel: EpisodeKernel,
    names: Sequence[str],
    stages: Sequence[str],
    seed: int,
) -> None:
    for beat, stage in zip(outline_beats, stages, strict=True):
        speakers = participants(beat, names, kernel.roles, stage)
        beat.characters.extend(speakers[:2])
        beat.entrances.extend(speakers[2:])
        chance = digest("exit", seed, kernel.kernel_id, beat.scene_index) % 2 == 0
        if stage in EXIT_STAGES and len(speakers) >= 3 and chance:
            beat.exits.append(speakers[-1])


def _plant(
    outline_beats: Sequence[episode_pb2.Beat], at: int, payoff_at: int, thing: str, text: str
) -> None:
    """Setup "s<at>-<thing>" planted at `at`, paid off at `payoff_at` (when that is later)."""
    if not 0 <= at < payoff_at < len(outline_beats):
        return
    taken = {setup.id for beat in outline_beats for setup in beat.setups}
    setup_id = base = f"s{at}-{_slug(thing)}"
    while setup_id in taken:
        setup_id = f"{base}-{len(taken)}"
    outline_beats[at].setups.add(id=setup_id, description=text)
    outline_beats[payoff_at].payoffs.append(setup_id)


def _threads(
    outline_beats: Sequence[episode_pb2.Beat], kernel: EpisodeKernel, stages: Sequence[str]
) -> None:
    """Setups and payoffs, and the running gag's state after each scene that moves it."""
    slots = dict(kernel.slots)
    last = len(outline_beats) - 1
    climax = stages.index("climax") if "climax" in stages else -1
    a_first = next((i for i, s in enumerate(stages) if s in A_STAGES), -1)
    b_beats = [i for i, s in enumerate(stages) if s in B_STAGES]
    _plant(outline_beats, a_first, climax, kernel.prop, SETUPS["A"].format_map(slots))
    if b_beats:
        b_payoff = climax if climax > b_beats[0] else b_beats[-1]
        _plant(outline_beats, b_beats[0], b_payoff, kernel.b_prop, SETUPS["B"].format_map(slots))
    if last + 1 < RUNNING_GAG_SCENES:
        return
    runner = SETUPS["runner"].format_map(slots)
    _plant(outline_beats, 0, last, kernel.runner_prop, runner)
    outline_beats[0].running_gag = sentence(kernel.runner_gag)
    outline_beats[last // 2].running_gag = sentence(RUNNING_GAG_STATES["middle"].format_map(slots))
    outline_beats[last].running_gag = sentence(RUNNING_GAG_STATES["last"].format_map(slots))


def write_cards(
    outline: episode_pb2.Outline,
    kernel: EpisodeKernel,
    setting: episode_pb2.Setting,
    names: Sequence[str],
    stages: Sequence[str],
    seed: int,
) -> None:
    """Fills the card of every beat of `outline` (beats in scene order, one per scene)."""
    outline_beats = sorted(beats(outline), key=lambda beat: beat.scene_index)
    _place_and_time(outline_beats, kernel, setting)
    _people(outline_beats, kernel, names, stages, seed)
    _threads(outline_beats, kernel, stages)
    outline.running_gag = sentence(kernel.runner_gag)
