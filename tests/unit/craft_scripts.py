"""Small hand-made scripts for the craft checks' unit tests: a made-up classic show (its names
are the ones the new world must not use), its transformed cast, and scenes built line by line."""

from __future__ import annotations

from collections.abc import Sequence

from doppelganger.v1 import episode_pb2
from services.script.checks import Finding

INT, EXT = episode_pb2.PLACEMENT_INT, episode_pb2.PLACEMENT_EXT

SHOW = episode_pb2.Show(
    id="made-up-show",
    title="The Made-Up Show",
    premise=(
        "Lucy Ricardo schemes her way into her husband Ricky's act and drags her landlords, "
        "Fred and Ethel Mertz, along."
    ),
    characters=[
        episode_pb2.Character(name="Lucy", archetype="schemer", aliases=["Mrs. Ricardo"]),
        episode_pb2.Character(name="Ricky", archetype="straight man", verbal_tics=["Honey,"]),
        episode_pb2.Character(
            name="Ethel", archetype="sidekick", catchphrases=["Fred Mertz, you old cheapskate!"]
        ),
        episode_pb2.Character(name="Fred", archetype="cynic", aliases=["Dr. Crane"]),
    ],
)
CAST = [
    episode_pb2.Character(name="Luna", original_name="Lucy", archetype="schemer"),
    episode_pb2.Character(
        name="Rex", original_name="Ricky", archetype="straight man", aliases=["Rex Rocco"]
    ),
    episode_pb2.Character(name="Echo", original_name="Ethel", archetype="sidekick"),
    episode_pb2.Character(name="Fenn", original_name="Fred", archetype="cynic"),
]
RELATIONSHIPS = [
    episode_pb2.Relationship(from_character="Luna", to_character="Rex", kind="wife"),
    episode_pb2.Relationship(from_character="Fenn", to_character="Echo", kind="boss"),
]
SETTING = episode_pb2.Setting(
    id="mars", name="A Mars colony", description="A colony under glass domes on Mars."
)


def say(
    speaker: str, text: str, extension: str = "", parenthetical: str = ""
) -> episode_pb2.ScriptElement:
    return episode_pb2.ScriptElement(
        dialogue=episode_pb2.DialogueLine(
            character=speaker, text=text, extension=extension, parenthetical=parenthetical
        )
    )


def act(text: str) -> episode_pb2.ScriptElement:
    return episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=text))


def scene(
    index: int,
    elements: Sequence[episode_pb2.ScriptElement],
    *,
    placement: int = INT,
    location: str = "MESS HALL",
    time_of_day: str = "DAY",
    act_name: str = "Act One",
) -> episode_pb2.Scene:
    return episode_pb2.Scene(
        index=index,
        number=index + 1,
        act=act_name,
        slugline=episode_pb2.Slugline(
            placement=placement, location=location, time_of_day=time_of_day
        ),
        elements=list(elements),
    )


def card(
    index: int,
    characters: Sequence[str] = (),
    *,
    entrances: Sequence[str] = (),
    exits: Sequence[str] = (),
    setups: Sequence[tuple[str, str]] = (),
    payoffs: Sequence[str] = (),
    location: str = "MESS HALL",
    placement: int = INT,
) -> episode_pb2.Beat:
    return episode_pb2.Beat(
        scene_index=index,
        plot=episode_pb2.PLOT_LINE_A,
        description="Luna makes a plan.",
        location=location,
        placement=placement,
        time_of_day="DAY",
        characters=list(characters),
        entrances=list(entrances),
        exits=list(exits),
        setups=[episode_pb2.Setup(id=i, description=d) for i, d in setups],
        payoffs=list(payoffs),
    )


def episode(
    scenes: Sequence[episode_pb2.Scene],
    cards: Sequence[episode_pb2.Beat] = (),
    cast: Sequence[episode_pb2.Character] = CAST,
) -> episode_pb2.Episode:
    """An episode of the made-up show; one act holding `cards` (none: an outline without
    cards, one plain beat a scene)."""
    beats = list(cards) or [
        episode_pb2.Beat(scene_index=s.index, plot=episode_pb2.PLOT_LINE_A, description="Plan.")
        for s in scenes
    ]
    outline = episode_pb2.Outline(
        title="T", logline="L", acts=[episode_pb2.Act(name="Act One", beats=beats)]
    )
    outline.scene_count = len(scenes)
    return episode_pb2.Episode(
        show=SHOW,
        setting=SETTING,
        cast=list(cast),
        relationships=RELATIONSHIPS,
        outline=outline,
        scenes=list(scenes),
    )


def checks_of(found: Sequence[Finding]) -> list[str]:
    return [item.check for item in found]
