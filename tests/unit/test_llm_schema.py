"""Reply schemas: parsing, content checks, and conversion to protos scored like the procedural
writer's."""

from __future__ import annotations

import json

import pytest

from doppelganger.v1 import episode_pb2
from services.script import catalog, procedural
from services.script.llm import prompts, schema
from services.script.validation import element_seconds
from testkit.llm_server import parse_request


@pytest.fixture(scope="module")
def story() -> tuple[
    episode_pb2.Show, episode_pb2.Setting, list[episode_pb2.Character], episode_pb2.Outline
]:
    show = catalog.find_show("I Love Lucy")
    assert show is not None
    setting = catalog.resolve_setting("a Mars colony in 2157")
    cast, relationships = procedural.transform_cast(show, setting, 11)
    outline = procedural.write_outline(show, setting, cast, relationships, 4, 11)
    return show, setting, list(cast), outline


def test_replies_in_fences_or_prose_are_found() -> None:
    text = 'Here you go:\n```json\n{"text": "A line."}\n```'
    reply, problems = schema.parse_reply(schema.LineOut, text, lambda r: [])
    assert reply is not None and reply.text == "A line." and problems == []


def test_broken_json_is_reported_with_its_position() -> None:
    reply, problems = schema.parse_reply(schema.LineOut, '{"text": "cut sho', lambda r: [])
    assert reply is None and problems and problems[0].startswith("not valid JSON")


def test_schema_violations_name_the_field() -> None:
    reply, problems = schema.parse_reply(schema.LineOut, '{"words": "x"}', lambda r: [])
    assert reply is None
    assert any(p.startswith("text:") for p in problems)
    assert any(p.startswith("words:") for p in problems)


def test_scene_round_trip_keeps_every_element_and_rescores_jokes(story) -> None:
    show, setting, cast, outline = story
    original = procedural.write_scene(show, setting, cast, outline, 1, 11, [])
    payload = json.dumps(schema.scene_payload(original))
    reply, problems = schema.parse_reply(
        schema.SceneOut, payload, lambda r: schema.scene_problems(r, [c.name for c in cast])
    )
    assert reply is not None, problems
    scene = schema.scene_to_proto(reply, 1, outline, cast, setting)
    assert list(scene.elements) == list(original.elements)
    assert scene.index == 1 and scene.number == 2 and scene.act == original.act
    assert scene.slugline == original.slugline
    assert list(scene.characters) == list(original.characters)
    assert [j.pattern for j in scene.jokes] == [j.pattern for j in original.jokes]
    assert [j.role for j in scene.jokes] == [j.role for j in original.jokes]
    for joke in scene.jokes:
        line = scene.elements[joke.element_index].dialogue
        assert line.joke_id == joke.id
        assert 0.0 < joke.score <= 1.0
        assert set(joke.dimensions) == set(procedural.JOKE_WEIGHTS)
    offsets = [j.offset_seconds for j in scene.jokes]
    assert offsets == sorted(offsets)
    assert scene.duration_seconds == pytest.approx(
        sum(element_seconds(e) for e in scene.elements), abs=0.06
    )


def test_joke_scores_are_the_procedural_writers_scores(story) -> None:
    _, setting, cast, outline = story
    reply = schema.SceneOut.model_validate(
        {
            "slugline": {"placement": "INT", "location": "hab dome", "time_of_day": "day"},
            "summary": "Luna hides the tomato.",
            "elements": [
                {"type": "action", "text": "The dome hums."},
                {"type": "dialogue", "character": cast[0].name, "text": "Where is the tomato?"},
                {"type": "dialogue", "character": cast[1].name, "parenthetical": "(beat)",
                 "text": "In the oxygen scrubber, where every tomato belongs.",
                 "joke": {"pattern": "deadpan", "role": "punchline"}},
                {"type": "transition", "text": "cut to:"},
            ],
        }
    )  # fmt: skip
    scene = schema.scene_to_proto(reply, 0, outline, cast, setting)
    by_name = {c.name: c for c in cast}
    expected = procedural.score_joke(
        "In the oxygen scrubber, where every tomato belongs.",
        "deadpan",
        speaker=by_name[cast[1].name],
        setting=setting,
        context=["Where is the tomato?"],
        callback_terms=[],
    )
    assert (scene.jokes[0].score, dict(scene.jokes[0].dimensions)) == expected
    assert scene.jokes[0].element_index == 2
    assert scene.elements[2].dialogue.parenthetical == "beat"
    assert scene.elements[3].transition.text == "CUT TO:"
    assert scene.slugline.location == "HAB DOME" and scene.slugline.time_of_day == "DAY"


def test_speakers_must_be_cast_and_patterns_from_the_library(story) -> None:
    cast = [c.name for c in story[2]]
    reply = schema.SceneOut.model_validate(
        {
            "slugline": {"placement": "EXT", "location": "CRATER", "time_of_day": "NIGHT"},
            "summary": "s",
            "elements": [
                {"type": "dialogue", "character": "Lucy", "text": "Ricky!"},
                {"type": "dialogue", "character": cast[0], "text": "Hi.",
                 "joke": {"pattern": "pie-in-face", "role": "punchline"}},
                {"type": "transition", "text": "CUT TO:"},
            ],
        }
    )  # fmt: skip
    problems = schema.scene_problems(reply, cast)
    assert any("'Lucy' is not in the cast" in p for p in problems)
    assert any("'pie-in-face' is not a pattern id" in p for p in problems)


def test_outline_must_give_every_scene_exactly_one_beat(story) -> None:
    outline = story[3]
    payload = schema.outline_payload(outline)
    good = schema.OutlineOut.model_validate(payload)
    assert schema.outline_problems(good, 4) == []
    payload["acts"][0]["beats"].append(dict(payload["acts"][0]["beats"][0]))
    payload["acts"][-1]["beats"].append({"scene_index": 9, "plot": "A", "description": "x"})
    bad = schema.OutlineOut.model_validate(payload)
    problems = schema.outline_problems(bad, 4)
    assert any("out of range" in p for p in problems)
    assert any("more than one beat" in p for p in problems)
    assert schema.outline_problems(good, 5) == [
        "scenes [4] have no beat; the outline needs 5 beats"
    ]
    assert schema.outline_to_proto(good, 4).acts[0].beats[0] == outline.acts[0].beats[0]


def test_rewritten_line_must_differ_and_be_one_line() -> None:
    assert schema.line_problems(schema.LineOut(text="Same  line!"), "same line") != []
    assert schema.line_problems(schema.LineOut(text="one\ntwo"), "x") == [
        "text must be a single line"
    ]
    assert schema.line_problems(schema.LineOut(text="A new line."), "An old line.") == []


def test_the_schema_sent_narrows_speakers_and_patterns() -> None:
    sent = schema.json_schema(schema.SceneOut, ["Luna", "Rico"], ["deadpan"])
    definitions = sent["$defs"]
    assert definitions["DialogueOut"]["properties"]["character"]["enum"] == ["Luna", "Rico"]
    assert definitions["JokeOut"]["properties"]["pattern"]["enum"] == ["deadpan"]
    # The pydantic model's own schema is left alone.
    assert (
        "enum"
        not in schema.SceneOut.model_json_schema()["$defs"]["JokeOut"]["properties"]["pattern"]
    )


def test_prompts_carry_the_context_request_and_schema(story) -> None:
    show, setting, cast, outline = story
    context = prompts.show_context(show, setting, cast, [])
    document = prompts.parse_marked_json(context, prompts.CONTEXT_MARKER)
    assert [c["name"] for c in document["cast"]] == [c.name for c in cast]
    library = prompts.parse_marked_json(prompts.universal(), prompts.LIBRARY_MARKER)
    assert {p["id"] for p in library} == {p.id for p in catalog.load_patterns()}
    assert prompts.universal().startswith(prompts.INSTRUCTIONS)
    task = prompts.scene_request([c.name for c in cast], outline, 2, ["before"], 11, []).text
    request = parse_request(task)
    assert request["task"] == "scene" and request["scene_index"] == 2
    assert request["outline"] == schema.outline_payload(outline)
    reply_schema = prompts.parse_marked_json(task, prompts.SCHEMA_MARKER)
    assert reply_schema["title"] == "SceneOut"
