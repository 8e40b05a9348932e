"""The premise's named elements, and what the procedural writer and the validator do with them."""

from __future__ import annotations

import re

from doppelganger.v1 import episode_pb2
from services.script import catalog, procedural
from services.script.premise import (
    CHARACTER,
    EVENT,
    PERSON,
    THING,
    join_elements,
    mentioned,
    premise_elements,
    scene_texts,
)
from services.script.validation import validate_episode
from testkit import draft_episode
from tests.unit.episode_drafts import copy

MARS = catalog.resolve_setting("mars-colony-2157")
KETTLE = re.compile("silver kettle", re.IGNORECASE)


def _lucy_cast() -> list[episode_pb2.Character]:
    show = catalog.find_show("i-love-lucy")
    assert show is not None
    return procedural.transform_cast(show, MARS)[0]


def test_quoted_things_names_and_noun_phrases_are_found() -> None:
    cast = _lucy_cast()
    lux, rico = cast[0].name, cast[1].name
    premise = (
        f"{lux} wants to sing at the colony's anniversary gala, but {rico} has hired a famous "
        "tenor named Enzo Caruso, and the 'Golden Oxygen Mask' trophy is missing."
    )
    found = {(e.text, e.kind) for e in premise_elements(premise, cast)}
    assert ("Golden Oxygen Mask", THING) in found
    assert (lux, CHARACTER) in found and (rico, CHARACTER) in found
    assert ("Enzo Caruso", PERSON) in found
    assert ("colony's anniversary gala", EVENT) in found


def test_aliases_find_the_character_and_the_setting_names_are_not_elements() -> None:
    cast = _lucy_cast()
    mrs = cast[0].aliases[2]  # "Mrs. <surname>"
    found = premise_elements(f"On Mars, {mrs} enters a baking contest.", cast, MARS.name)
    assert [(e.text, e.kind) for e in found] == [
        (cast[0].name, CHARACTER),
        ("baking contest", EVENT),
    ]
    assert join_elements(found) == f"{cast[0].name} and a baking contest"


def test_no_premise_no_elements_and_mentions_are_whole_words() -> None:
    assert premise_elements("   ") == []
    element = premise_elements("They lose the 'Tin Cup'.")[0]
    assert mentioned(element, ["Where is the tin cup?"])
    assert not mentioned(element, ["Where is the tin cupboard?"])


async def test_the_outline_and_the_scenes_are_built_around_the_premise() -> None:
    context, episode = await draft_episode(
        "i-love-lucy",
        "mars-colony-2157",
        4,
        premise="Lucy throws a party for Dr. Vasquez and loses the 'Golden Spoon'.",
    )
    outline = episode.outline
    assert outline.premise == context.premise and "Lucy" not in outline.premise
    elements = premise_elements(outline.premise, episode.cast, MARS.name + " " + MARS.description)
    assert {e.text for e in elements} >= {"Dr. Vasquez", "Golden Spoon"}
    texts = [text for scene in episode.scenes for text in scene_texts(scene)]
    for element in elements:
        assert mentioned(element, [outline.logline]) and mentioned(element, [outline.a_plot])
        assert any(mentioned(element, [b.description]) for a in outline.acts for b in a.beats)
        assert mentioned(element, texts), element
    assert episode.cast[0].name in outline.a_plot.split(" sets out")[0]
    report = validate_episode(episode)
    assert report.passed and not [i for i in report.issues if "premise" in i.message]


async def test_premise_adherence_is_scored_inside_plot_coherence() -> None:
    _, episode = await draft_episode(
        "cheers", "victorian-london", 2, premise="Sam enters the 'Silver Kettle' contest."
    )
    kept = validate_episode(episode)
    dropped = copy(episode)
    beat_scene = next(
        b.scene_index
        for a in dropped.outline.acts
        for b in a.beats
        if "Silver Kettle" in b.description
    )
    scene = dropped.scenes[beat_scene]
    for element in scene.elements:  # The scene that should mention the kettle never does.
        kind = element.WhichOneof("element")
        if kind == "dialogue":
            element.dialogue.text = KETTLE.sub("teapot", element.dialogue.text)
        elif kind == "action":
            element.action.text = KETTLE.sub("teapot", element.action.text)
    report = validate_episode(dropped)
    assert report.plot_coherence < kept.plot_coherence
    issue = next(i for i in report.issues if "Silver Kettle" in i.message)
    assert issue.scene_index == beat_scene and issue.category == "plot"
    without = copy(episode)
    without.premise, without.outline.premise = "", ""
    assert validate_episode(without).plot_coherence >= kept.plot_coherence - 0.2
