"""The reply schemas in each provider's structured-output subset (pure transforms), checked by
the loopback provider's independent subset rules, and what a strict reply's nulls mean."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from services.script import catalog
from services.script.llm import schema, structured
from testkit import provider_schemas

CAST = ["Lux", "Ricky", "Ethel"]
PATTERNS = [pattern.id for pattern in catalog.load_patterns()]
MODELS = [schema.OutlineOut, schema.SceneOut, schema.LineOut]


def _schema(model: type) -> dict[str, Any]:
    return schema.json_schema(model, CAST, PATTERNS)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_openai_strict_schema_is_in_openai_subset(model: type) -> None:
    source = _schema(model)
    before = json.dumps(source)
    response_format = structured.openai_response_format(model.__name__, source)
    assert provider_schemas.openai_problems(response_format) == []
    assert json.dumps(source) == before  # the input is not changed
    strict = response_format["json_schema"]["schema"]
    assert response_format["json_schema"]["strict"] is True
    assert "default" not in json.dumps(strict) and "oneOf" not in json.dumps(strict)
    jsonschema.Draft202012Validator.check_schema(strict)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_anthropic_schema_is_in_anthropic_subset(model: type) -> None:
    config = structured.anthropic_output_config(_schema(model))
    assert config["format"]["type"] == "json_schema"
    assert provider_schemas.anthropic_problems(config) == []
    jsonschema.Draft202012Validator.check_schema(config["format"]["schema"])


def test_the_raw_pydantic_schema_is_refused_by_both_providers() -> None:
    raw = _schema(schema.SceneOut)
    assert provider_schemas.anthropic_problems({"format": {"type": "json_schema", "schema": raw}})
    loose = {"type": "json_schema", "json_schema": {"name": "x", "strict": True, "schema": raw}}
    problems = provider_schemas.openai_problems(loose)
    assert any("required must list every property" in p for p in problems)
    assert any("unsupported keywords" in p for p in problems)
    assert provider_schemas.anthropic_problems(None) and provider_schemas.openai_problems(None)


def test_optional_properties_become_required_and_nullable() -> None:
    strict = structured.openai_strict(_schema(schema.SceneOut))
    dialogue = strict["$defs"]["DialogueOut"]
    assert set(dialogue["required"]) == set(dialogue["properties"])
    assert dialogue["properties"]["parenthetical"]["type"] == ["string", "null"]
    assert None in dialogue["properties"]["extension"]["enum"]
    assert {"type": "null"} in dialogue["properties"]["joke"]["anyOf"]
    # A required property stays non-nullable; a dropped length bound is told in the description.
    assert dialogue["properties"]["text"]["type"] == "string"
    assert "maxLength: 1000" in dialogue["properties"]["text"]["description"]
    assert dialogue["properties"]["character"]["enum"] == CAST
    beat = structured.openai_strict(_schema(schema.OutlineOut))["$defs"]["BeatOut"]
    assert beat["properties"]["setups"]["type"] == ["array", "null"]
    assert beat["properties"]["scene_index"]["minimum"] == 0


def test_a_strict_reply_with_nulls_parses_to_the_defaults() -> None:
    strict = structured.openai_strict(_schema(schema.SceneOut))
    reply = {
        "slugline": {"placement": "INT", "location": "LAB", "time_of_day": "DAY"},
        "summary": "s",
        "elements": [
            {"type": "action", "text": "A door."},
            {"type": "dialogue", "character": "Lux", "text": "Hi.", "parenthetical": None,
             "extension": None, "joke": {"pattern": PATTERNS[0], "role": "setup"}},
            {"type": "dialogue", "character": "Ricky", "text": "Ho.", "parenthetical": None,
             "extension": None, "joke": None},
        ],
    }  # fmt: skip
    jsonschema.validate(reply, strict)
    parsed, problems = schema.parse_reply(schema.SceneOut, json.dumps(reply), lambda r: [])
    assert parsed is not None and not problems
    line = parsed.elements[2]
    assert isinstance(line, schema.DialogueOut)
    assert line.parenthetical == "" and line.extension == "" and line.joke is None


def test_fill_nulls_writes_every_property() -> None:
    strict = structured.openai_strict(_schema(schema.SceneOut))
    reply = {
        "slugline": {"placement": "INT", "location": "LAB", "time_of_day": "DAY"},
        "summary": "s",
        "elements": [
            {"type": "action", "text": "A door."},
            {"type": "dialogue", "character": "Lux", "text": "Hi."},
            {"type": "transition", "text": "CUT TO:"},
        ],
    }
    filled = provider_schemas.fill_nulls(reply, strict)
    assert filled["elements"][0] == {"type": "action", "text": "A door."}
    assert filled["elements"][1] == {
        "type": "dialogue", "character": "Lux", "text": "Hi.",
        "parenthetical": None, "extension": None, "joke": None,
    }  # fmt: skip
    jsonschema.validate(filled, strict)


def test_cast_names_match_case_insensitively() -> None:
    spell = schema.cast_spelling(CAST)
    assert spell("LUX") == "Lux" and spell("ricky") == "Ricky" and spell("Lux") == "Lux"
    assert spell("Nobody") == "Nobody"
    scene = schema.SceneOut.model_validate(
        {
            "slugline": {"placement": "INT", "location": "LAB", "time_of_day": "DAY"},
            "summary": "s",
            "elements": [
                {"type": "action", "text": "A door."},
                {"type": "dialogue", "character": "LUX", "text": "Hi.",
                 "joke": {"pattern": PATTERNS[0], "role": "setup"}},
                {"type": "dialogue", "character": "NOBODY", "text": "Ho."},
            ],
        }
    )  # fmt: skip
    problems = schema.scene_problems(scene, CAST)
    assert problems == ["elements.2.character 'NOBODY' is not in the cast (Ethel, Lux, Ricky)"]
    assert isinstance(scene.elements[1], schema.DialogueOut)
    assert scene.elements[1].character == "Lux"


def test_parse_failures_are_told_from_content_problems() -> None:
    _, problems = schema.parse_reply(schema.LineOut, "prose", lambda r: [])
    assert problems.stage == "json" and problems.parse_failure
    _, problems = schema.parse_reply(schema.LineOut, '{"words": "x"}', lambda r: [])
    assert problems.stage == "schema" and problems.parse_failure
    _, problems = schema.parse_reply(schema.LineOut, '{"text": "x"}', lambda r: ["bad"])
    assert problems.stage == "content" and not problems.parse_failure


def test_schema_names_are_made_safe() -> None:
    fmt = structured.openai_response_format("scene reply/v2" * 10, _schema(schema.LineOut))
    name = fmt["json_schema"]["name"]
    assert provider_schemas.SCHEMA_NAME.match(name) and len(name) == 64
