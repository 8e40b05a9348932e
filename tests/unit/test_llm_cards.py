"""The LLM writers' side of steering: the premise and the scene cards in the prompts, the card
fields in the outline schema (still a valid JSON Schema), and the checks on a model's cards."""

from __future__ import annotations

import jsonschema

from doppelganger.v1 import episode_pb2
from services.script import cards, catalog, procedural
from services.script.llm import prompts, schema
from testkit.llm_server import parse_request


def _story() -> tuple[list[episode_pb2.Character], episode_pb2.Outline]:
    show = catalog.find_show("the-office-us")
    assert show is not None
    setting = catalog.resolve_setting("generation-starship")
    cast, relationships = procedural.transform_cast(show, setting)
    premise = "Michael Scott sells the ship's 'Last Orange' at auction."
    outline = procedural.write_outline(
        show, setting, cast, relationships, 8, 2,
        premise=procedural.world_names(show, setting).apply(premise),
    )  # fmt: skip
    return cast, outline


def test_the_outline_schema_with_cards_is_valid_json_schema() -> None:
    sent = schema.json_schema(schema.OutlineOut)
    jsonschema.Draft202012Validator.check_schema(sent)
    beat = sent["$defs"]["BeatOut"]["properties"]
    assert {"location", "placement", "time_of_day", "characters", "entrances", "exits"} <= set(beat)
    assert {"setups", "payoffs", "running_gag"} <= set(beat)
    assert sent["$defs"]["BeatOut"]["required"] == ["scene_index", "plot", "description"]
    cast, outline = _story()
    payload = schema.outline_payload(outline)
    jsonschema.validate(payload, sent)
    parsed = schema.OutlineOut.model_validate(payload)
    assert schema.outline_problems(parsed, 8, [c.name for c in cast]) == []
    back = schema.outline_to_proto(parsed, 8, outline.target_runtime_seconds)
    assert cards.beats(back) == cards.beats(outline)
    assert back.kernel == outline.kernel and back.running_gag == outline.running_gag


def test_a_models_cards_are_checked() -> None:
    cast, outline = _story()
    payload = schema.outline_payload(outline)
    beats = [b for act in payload["acts"] for b in act["beats"]]
    beats[1]["characters"] = ["Nobody"]
    beats[2]["payoffs"] = ["s7-from-the-future"]
    beats[3]["setups"] = beats[0]["setups"]
    problems = schema.outline_problems(
        schema.OutlineOut.model_validate(payload), 8, [c.name for c in cast]
    )
    assert "beat 1 characters ['Nobody'] are not in the cast" in problems
    assert "beat 2 pays off 's7-from-the-future', which no earlier beat plants" in problems
    assert any(p.startswith("beat 3 plants") and "again" in p for p in problems)


def test_the_outline_request_carries_the_premise_and_the_kernels_to_avoid() -> None:
    task = prompts.outline_request(
        8, 3, [], 1320.0, premise="A pitch.", avoid_kernels=["fix-the-prop"]
    ).text
    request = prompts.parse_marked_json(task, prompts.REQUEST_MARKER)
    assert request["premise"] == "A pitch." and request["avoid_kernels"] == ["fix-the-prop"]
    assert "premise" in task.split(prompts.REQUEST_MARKER)[0]
    assert "scene card" in task


def test_a_scene_request_carries_its_card_and_the_cards_that_feed_it() -> None:
    cast, outline = _story()
    index = next(b.scene_index for b in cards.beats(outline) if b.payoffs)
    view = cards.scene_view(outline, index)
    earlier = cards.feeding_summaries(view, index)
    task = prompts.scene_request([c.name for c in cast], view, index, earlier, 2, []).text
    request = parse_request(task)
    assert request["premise"] == outline.premise and "Last Orange" in request["premise"]
    own = cards.beat_at(outline, index)
    assert own is not None
    card = request["card"]
    assert card["location"] == own.location and card["characters"] == list(own.characters)
    planted = cards.setup_descriptions(outline)
    assert [p["description"] for p in card["payoffs_due"]] == [planted[p] for p in own.payoffs]
    assert request["earlier"] == earlier and len(earlier) >= 1
    described = [
        b["scene_index"] for act in request["outline"]["acts"] for b in act["beats"]
        if "description" in b
    ]  # fmt: skip
    assert described == [index]  # other scenes' beats travel as cards, never as text
    show = catalog.find_show("the-office-us")
    assert show is not None
    setting = catalog.resolve_setting("generation-starship")
    context = prompts.show_context(show, setting, cast, [])
    document = prompts.parse_marked_json(context, prompts.CONTEXT_MARKER)
    assert document["cast"][0]["aliases"] == list(cast[0].aliases)
