"""Premise, outline and cast in a request: limits, errors naming the field, renames that follow."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import catalog, procedural
from services.script.pipeline import episode_id_for
from services.script.procedural import ProceduralWriter
from services.script.refinement import RefinementPolicy
from services.script.requests import (
    EpisodeOrder,
    InvalidRequest,
    RuntimeDefaults,
    validate_generate,
    validate_propose,
)

DEFAULTS = RuntimeDefaults(episode_seconds=22 * 60.0, scene_seconds=120.0)
BASE = {"show": "I Love Lucy", "setting": "mars-colony-2157", "seed": 4}


def _order(**fields: object) -> EpisodeOrder:
    request = script_pb2.GenerateEpisodeRequest(**{**BASE, **fields})
    return validate_generate(request, DEFAULTS, "procedural", {"procedural"})


def _refused(**fields: object) -> str:
    with pytest.raises(InvalidRequest) as raised:
        _order(**fields)
    return str(raised.value)


def _outline(scene_count: int = 5) -> episode_pb2.Outline:
    show = catalog.find_show("i-love-lucy")
    assert show is not None
    setting = catalog.resolve_setting("mars-colony-2157")
    cast, relationships = procedural.transform_cast(show, setting)
    return procedural.write_outline(show, setting, cast, relationships, scene_count, 4)


def _beat(outline: episode_pb2.Outline, index: int) -> episode_pb2.Beat:
    return next(b for act in outline.acts for b in act.beats if b.scene_index == index)


def test_the_premise_has_a_limit_and_reaches_the_new_world() -> None:
    assert "premise must be at most 2000 characters (got 2001)" in _refused(premise="x" * 2001)
    assert "premise" in _refused(premise="bad \x00 byte")
    order = _order(premise="Lucy and Mrs. Mertz open a bakery." + " " * 1960)
    lux, echo = order.cast[0], order.cast[2]
    assert order.world_premise == f"{lux.name} and {echo.aliases[2]} open a bakery."
    assert order.premise.startswith("Lucy")


def test_an_outline_must_cover_every_scene_in_order() -> None:
    outline = _outline()
    _beat(outline, 2).scene_index = 3
    message = _refused(outline=outline)
    assert "outline.acts[1].beats[0].scene_index must be 2 (got 3)" in message  # Act Two
    empty = episode_pb2.Outline(acts=[episode_pb2.Act(name="Act One")])
    assert "outline must have 1-20 beats" in _refused(outline=empty)
    long = episode_pb2.Outline(
        acts=[
            episode_pb2.Act(
                beats=[episode_pb2.Beat(scene_index=i, plot=1, description="x") for i in range(21)]
            )
        ]
    )
    assert "got 21" in _refused(outline=long)
    assert "scene_count is 4 but the outline has 5 beats" in _refused(
        outline=_outline(), scene_count=4
    )


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda b: b.characters.append("Nobody"), "beats[1].characters[2] 'Nobody'"),
        (lambda b: setattr(b, "description", "x" * 2001), "beats[1].description"),
        (lambda b: setattr(b, "description", "  "), "beats[1].description is required"),
        (lambda b: b.payoffs.append("s4-later"), "beats[1].payoffs[0]"),
        (lambda b: b.exits.append(b.characters[0] + "x"), "beats[1].exits[0]"),
        (lambda b: b.setups.add(id="bad id", description="d"), "beats[1].setups"),
        (lambda b: setattr(b, "plot", 0), "beats[1].plot"),
        (lambda b: setattr(b, "location", "X" * 81), "beats[1].location"),
    ],
)
def test_a_bad_beat_is_named(change, named: str) -> None:
    outline = _outline()
    change(_beat(outline, 1))
    assert named in _refused(outline=outline)


def test_an_outline_is_taken_with_its_runtime_and_premise() -> None:
    outline = _outline(6)
    order = _order(outline=outline, premise="Lucy sells the colony a moon.")
    assert order.scene_count == 6 and order.target_runtime_seconds == 6 * 120.0
    assert order.outline is not None and order.outline.premise == order.world_premise
    outline.target_runtime_seconds = 6 * 200.0
    assert "outline.target_runtime_seconds" in _refused(outline=outline)


def test_a_cast_is_checked_field_by_field() -> None:
    one = [episode_pb2.Character(name="Solo")]
    assert "cast must have 2-12 characters (got 1)" in _refused(cast=one)
    twins = [episode_pb2.Character(name="Ann"), episode_pb2.Character(name=" ANN ")]
    assert "cast[1].name 'ANN' is already the name of cast[0]" in _refused(cast=twins)
    stranger = [
        episode_pb2.Character(name="A", original_name="Zed"),
        episode_pb2.Character(name="B"),
    ]
    assert "cast[0].original_name 'Zed' is not a character of I Love Lucy" in _refused(
        cast=stranger
    )
    nameless = [episode_pb2.Character(name="A"), episode_pb2.Character(name="  ")]
    assert "cast[1].name is required" in _refused(cast=nameless)
    long = [
        episode_pb2.Character(name="A", catchphrases=["x" * 201]),
        episode_pb2.Character(name="B"),
    ]
    assert "cast[0].catchphrases[0]" in _refused(cast=long)
    pair = [episode_pb2.Character(name="A"), episode_pb2.Character(name="B")]
    missing = [episode_pb2.Relationship(from_character="A", to_character="C", kind="rival")]
    assert "relationships[0].to_character 'C' is not a character of the cast" in _refused(
        cast=pair, relationships=missing
    )
    blank = [episode_pb2.Relationship(from_character="A", to_character="B")]
    assert "relationships[0].kind is required" in _refused(cast=pair, relationships=blank)


def test_a_rename_follows_the_character_everywhere() -> None:
    default = _order()
    lux, rico, echo, fenn = default.cast
    cast = [
        episode_pb2.Character(name="Lena", original_name="Lucy", role="rover racer"),
        episode_pb2.Character(name=rico.name, original_name="Ricky"),
        episode_pb2.Character(name=echo.name, original_name="Ethel"),
        episode_pb2.Character(name=fenn.name, original_name="Fred"),
        episode_pb2.Character(name="Quill", archetype="eccentric"),
    ]
    outline = _outline()
    _beat(outline, 0).description = f"{lux.name} and Lucy Ricardo scheme."
    order = _order(cast=cast, outline=outline)
    lena, rico_now, _, _, quill = order.cast
    assert (lena.name, lena.role, lena.archetype) == ("Lena", "rover racer", lux.archetype)
    assert lena.aliases[0] == lux.aliases[0].replace(lux.name, "Lena")
    assert any("Lena, you got" in phrase for phrase in rico_now.catchphrases)
    assert quill.original_name == "" and quill.archetype == "eccentric"
    assert ("Lena", rico.name) in [(r.from_character, r.to_character) for r in order.relationships]
    assert order.outline is not None
    beat = _beat(order.outline, 0)
    assert beat.description == f"Lena and Lena {lux.aliases[1]} scheme."
    assert "Lena" in beat.characters and lux.name not in beat.characters


def test_a_dropped_character_takes_its_relationships_and_may_not_stay_on_a_card() -> None:
    default = _order()
    lux, rico, echo, _ = default.cast
    kept = [
        episode_pb2.Character(name=c.name, original_name=c.original_name) for c in (lux, rico, echo)
    ]
    order = _order(cast=kept)
    links = {(r.from_character, r.to_character) for r in order.relationships}
    assert links == {(lux.name, rico.name), (lux.name, echo.name)}  # Fred's went with him
    outline = _outline()
    message = _refused(cast=kept, outline=outline)
    assert "is not a character of the cast" in message and message.startswith("outline.acts[")


def test_every_input_of_the_story_changes_the_episode_id() -> None:
    writer, policy = ProceduralWriter(), RefinementPolicy()
    base = episode_id_for(_order(), writer, policy)
    assert episode_id_for(_order(), writer, policy) == base
    outline = _outline()
    with_outline = episode_id_for(_order(outline=outline), writer, policy)
    _beat(outline, 3).description = "Something else happens."
    edited = episode_id_for(_order(outline=outline), writer, policy)
    renamed = [
        episode_pb2.Character(name="Lena", original_name="Lucy"),
        episode_pb2.Character(name="Rico", original_name="Ricky"),
    ]
    ids = {
        base,
        episode_id_for(_order(premise="A pitch."), writer, policy),
        with_outline,
        edited,
        episode_id_for(_order(cast=renamed), writer, policy),
    }
    assert len(ids) == 5


def test_propose_outlines_counts() -> None:
    request = script_pb2.ProposeOutlinesRequest(show="Taxi", setting="ancient-rome")
    assert validate_propose(request, DEFAULTS, "procedural", {"procedural"}).count == 3
    request.count = 6
    with pytest.raises(InvalidRequest, match="count must be between 1 and 5"):
        validate_propose(request, DEFAULTS, "procedural", {"procedural"})
