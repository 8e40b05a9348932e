"""The JSON the LLM writers ask for, how replies are checked, and how they become protos.

Pydantic models give the shape (and the JSON Schema sent with every request); `*_problems`
functions add what a schema cannot know: speakers must be in the transformed cast, joke patterns
in the humour pattern library, the outline must give every scene exactly one beat. `parse_reply`
returns either the model or a list of problems, worded to be sent back for the one repair.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.procedural import joke_context, score_joke
from services.script.validation import DEFAULT_SCENE_SECONDS, allocate_targets, element_seconds

MAX_PROBLEMS = 12
PLOTS = {
    "A": episode_pb2.PLOT_LINE_A,
    "B": episode_pb2.PLOT_LINE_B,
    "runner": episode_pb2.PLOT_LINE_RUNNER,
}
PLACEMENTS = {
    "INT": episode_pb2.PLACEMENT_INT,
    "EXT": episode_pb2.PLACEMENT_EXT,
    "INT/EXT": episode_pb2.PLACEMENT_INT_EXT,
}
ROLES = {
    "setup": episode_pb2.JOKE_ROLE_SETUP,
    "punchline": episode_pb2.JOKE_ROLE_PUNCHLINE,
    "callback": episode_pb2.JOKE_ROLE_CALLBACK,
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BeatOut(_Strict):
    scene_index: int = Field(ge=0, description="0-based index of the scene that plays this beat")
    plot: Literal["A", "B", "runner"]
    description: str = Field(min_length=1, max_length=600)


class ActOut(_Strict):
    name: str = Field(min_length=1, max_length=60, description='"Cold Open", "Act One", "Tag"')
    beats: list[BeatOut] = Field(min_length=1, max_length=20)


class OutlineOut(_Strict):
    title: str = Field(min_length=1, max_length=120)
    logline: str = Field(min_length=1, max_length=600)
    a_plot: str = Field(min_length=1, max_length=600)
    b_plot: str = Field(min_length=1, max_length=600)
    acts: list[ActOut] = Field(min_length=1, max_length=7)


class SluglineOut(_Strict):
    placement: Literal["INT", "EXT", "INT/EXT"]
    location: str = Field(min_length=1, max_length=80, description="e.g. HYDROPONICS BAY")
    time_of_day: str = Field(min_length=1, max_length=20, description="DAY, NIGHT, CONTINUOUS")


class JokeOut(_Strict):
    pattern: str = Field(description="Humour pattern id from the library")
    role: Literal["setup", "punchline", "callback"]


class ActionOut(_Strict):
    type: Literal["action"]
    text: str = Field(min_length=1, max_length=2000)


class DialogueOut(_Strict):
    type: Literal["dialogue"]
    character: str = Field(description="Speaker: a name from the transformed cast")
    parenthetical: str = Field(default="", max_length=80, description="Without brackets")
    text: str = Field(min_length=1, max_length=1000)
    extension: Literal["", "V.O.", "O.S.", "CONT'D"] = ""
    joke: JokeOut | None = Field(default=None, description="Set when the line carries a beat")


class TransitionOut(_Strict):
    type: Literal["transition"]
    text: str = Field(min_length=1, max_length=40, description='e.g. "CUT TO:"')


ElementOut = Annotated[ActionOut | DialogueOut | TransitionOut, Field(discriminator="type")]


class SceneOut(_Strict):
    slugline: SluglineOut
    summary: str = Field(min_length=1, max_length=600)
    elements: list[ElementOut] = Field(min_length=3, max_length=400)


class LineOut(_Strict):
    text: str = Field(min_length=1, max_length=400, description="The new line, one line of text")


ReplyT = TypeVar("ReplyT", bound=BaseModel)


@functools.cache
def _model_schema(model: type[BaseModel]) -> str:
    """pydantic builds a schema in milliseconds: once per model, then copied (measured in the
    LLM overhead benchmark: about 7 ms a call before)."""
    return json.dumps(model.model_json_schema())


def json_schema(
    model: type[BaseModel], cast: Sequence[str] = (), patterns: Sequence[str] = ()
) -> dict[str, Any]:
    """The JSON Schema of `model`, with speakers and pattern ids narrowed to what is allowed."""
    schema: dict[str, Any] = json.loads(_model_schema(model))
    definitions = schema.get("$defs", {})
    if cast and "DialogueOut" in definitions:
        definitions["DialogueOut"]["properties"]["character"]["enum"] = list(cast)
    if patterns and "JokeOut" in definitions:
        definitions["JokeOut"]["properties"]["pattern"]["enum"] = list(patterns)
    return schema


def extract_json(text: str) -> str:
    """The JSON object in a reply: fences and any prose around the outermost braces removed."""
    stripped = re.sub(r"^\s*```(?:json)?\s*|\s*```\s*$", "", text.strip())
    start, end = stripped.find("{"), stripped.rfind("}")
    return stripped[start : end + 1] if 0 <= start < end else stripped


def _pydantic_problems(error: ValidationError) -> list[str]:
    problems = []
    for item in error.errors()[:MAX_PROBLEMS]:
        where = ".".join(str(part) for part in item["loc"]) or "(root)"
        problems.append(f"{where}: {item['msg']}")
    return problems


def parse_reply(
    model: type[ReplyT], text: str, check: Callable[[ReplyT], list[str]]
) -> tuple[ReplyT | None, list[str]]:
    """The reply as `model`, or None and the problems found (JSON, schema, then content)."""
    candidate = extract_json(text)
    try:
        json.loads(candidate)
    except json.JSONDecodeError as exc:
        return None, [f"not valid JSON ({exc.msg} at character {exc.pos})"]
    try:
        parsed = model.model_validate_json(candidate)
    except ValidationError as exc:
        return None, _pydantic_problems(exc)
    problems = check(parsed)
    return (None, problems[:MAX_PROBLEMS]) if problems else (parsed, [])


# ---------------------------------------------------------------------------------------------
# Content checks


def outline_problems(outline: OutlineOut, scene_count: int) -> list[str]:
    indices = [beat.scene_index for act in outline.acts for beat in act.beats]
    problems = [
        f"beat scene_index {i} is out of range 0-{scene_count - 1}"
        for i in indices
        if i >= scene_count
    ]
    duplicates = sorted({i for i in indices if indices.count(i) > 1})
    if duplicates:
        problems.append(f"scenes {duplicates} have more than one beat; give each scene one beat")
    missing = sorted(set(range(scene_count)) - set(indices))
    if missing:
        problems.append(f"scenes {missing} have no beat; the outline needs {scene_count} beats")
    return problems


def scene_problems(scene: SceneOut, cast: Sequence[str]) -> list[str]:
    names = set(cast)
    pattern_ids = {pattern.id for pattern in catalog.load_patterns()}
    problems = []
    dialogue = [e for e in scene.elements if isinstance(e, DialogueOut)]
    if not dialogue:
        problems.append("the scene has no dialogue")
    for index, element in enumerate(scene.elements):
        if not isinstance(element, DialogueOut):
            continue
        if element.character not in names:
            problems.append(
                f"elements.{index}.character {element.character!r} is not in the cast "
                f"({', '.join(sorted(names))})"
            )
        if element.joke is not None and element.joke.pattern not in pattern_ids:
            problems.append(
                f"elements.{index}.joke.pattern {element.joke.pattern!r} "
                "is not a pattern id of the library"
            )
    if not any(e.joke is not None for e in dialogue):
        problems.append("no dialogue line carries a joke; mark the comedic beats")
    return problems


def line_problems(line: LineOut, original: str) -> list[str]:
    if "\n" in line.text.strip():
        return ["text must be a single line"]
    if _normalise(line.text) == _normalise(original):
        return ["text is the original line; write a different version"]
    return []


def _normalise(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


# ---------------------------------------------------------------------------------------------
# Replies to protos


def outline_to_proto(
    reply: OutlineOut, scene_count: int, target_runtime_seconds: float = 0.0
) -> episode_pb2.Outline:
    """The outline, its runtime target shared among the beats as the procedural writer does."""
    acts = [
        episode_pb2.Act(
            name=act.name,
            beats=[
                episode_pb2.Beat(
                    scene_index=beat.scene_index,
                    plot=PLOTS[beat.plot],
                    description=beat.description,
                )
                for beat in sorted(act.beats, key=lambda b: b.scene_index)
            ],
        )
        for act in reply.acts
    ]
    outline = episode_pb2.Outline(
        title=reply.title,
        logline=reply.logline,
        a_plot=reply.a_plot,
        b_plot=reply.b_plot,
        acts=acts,
        scene_count=scene_count,
    )
    allocate_targets(outline, target_runtime_seconds or scene_count * DEFAULT_SCENE_SECONDS)
    return outline


def act_of(outline: episode_pb2.Outline, index: int) -> str:
    for act in outline.acts:
        if any(beat.scene_index == index for beat in act.beats):
            return act.name
    return ""


def beat_of(outline: episode_pb2.Outline, index: int) -> episode_pb2.Beat | None:
    return next(
        (beat for act in outline.acts for beat in act.beats if beat.scene_index == index), None
    )


def planted_terms(
    setting: episode_pb2.Setting, outline: episode_pb2.Outline, index: int
) -> list[str]:
    """Props and vocabulary the outline mentions before scene `index`: what a callback can use."""
    earlier = " ".join(
        beat.description.lower()
        for act in outline.acts
        for beat in act.beats
        if beat.scene_index < index
    )
    terms = [*setting.props, *setting.vocabulary]
    return [term for term in terms if term and term.lower() in earlier]


def scene_to_proto(
    reply: SceneOut,
    index: int,
    outline: episode_pb2.Outline,
    cast: Sequence[episode_pb2.Character],
    setting: episode_pb2.Setting,
) -> episode_pb2.Scene:
    """The scene with jokes placed, timed and scored like the procedural writer's."""
    elements = [_element(item) for item in reply.elements]
    speakers = [e.character for e in reply.elements if isinstance(e, DialogueOut)]
    scene = episode_pb2.Scene(
        index=index,
        number=index + 1,
        act=act_of(outline, index),
        slugline=episode_pb2.Slugline(
            placement=PLACEMENTS[reply.slugline.placement],
            location=reply.slugline.location.upper(),
            time_of_day=reply.slugline.time_of_day.upper(),
        ),
        summary=reply.summary,
        elements=elements,
        characters=list(dict.fromkeys(speakers)),
    )
    by_name = {character.name: character for character in cast}
    callback_terms = planted_terms(setting, outline, index)
    clock = 0.0
    for position, (item, element) in enumerate(zip(reply.elements, elements, strict=True)):
        clock += element_seconds(element)
        if not isinstance(item, DialogueOut) or item.joke is None:
            continue
        joke_id = f"s{index}-j{len(scene.jokes) + 1}"
        scene.elements[position].dialogue.joke_id = joke_id
        score, dimensions = score_joke(
            item.text,
            item.joke.pattern,
            speaker=by_name.get(item.character),
            setting=setting,
            context=joke_context(scene, position),
            callback_terms=callback_terms,
        )
        scene.jokes.add(
            id=joke_id,
            scene_index=index,
            element_index=position,
            pattern=item.joke.pattern,
            role=ROLES[item.joke.role],
            score=score,
            dimensions=dimensions,
            offset_seconds=round(clock, 1),
        )
    scene.duration_seconds = round(clock, 1)
    return scene


def _element(item: ActionOut | DialogueOut | TransitionOut) -> episode_pb2.ScriptElement:
    if isinstance(item, ActionOut):
        return episode_pb2.ScriptElement(action=episode_pb2.ActionLine(text=item.text))
    if isinstance(item, TransitionOut):
        return episode_pb2.ScriptElement(transition=episode_pb2.Transition(text=item.text.upper()))
    return episode_pb2.ScriptElement(
        dialogue=episode_pb2.DialogueLine(
            character=item.character,
            parenthetical=item.parenthetical.strip().strip("()").strip(),
            text=item.text,
            extension=item.extension,
        )
    )


# ---------------------------------------------------------------------------------------------
# Protos to reply-shaped JSON (for prompts that show an existing outline or scene)

_PLOT_NAMES = {value: name for name, value in PLOTS.items()}
_PLACEMENT_NAMES = {value: name for name, value in PLACEMENTS.items()}
ROLE_NAMES = {value: name for name, value in ROLES.items()}


def outline_payload(outline: episode_pb2.Outline) -> dict[str, Any]:
    return {
        "title": outline.title,
        "logline": outline.logline,
        "a_plot": outline.a_plot,
        "b_plot": outline.b_plot,
        "acts": [
            {
                "name": act.name,
                "beats": [
                    {
                        "scene_index": beat.scene_index,
                        "plot": _PLOT_NAMES.get(beat.plot, "A"),
                        "description": beat.description,
                    }
                    for beat in act.beats
                ],
            }
            for act in outline.acts
        ],
    }


def scene_payload(scene: episode_pb2.Scene) -> dict[str, Any]:
    jokes = {joke.id: joke for joke in scene.jokes}
    elements: list[dict[str, Any]] = []
    for element in scene.elements:
        kind = element.WhichOneof("element")
        if kind == "action":
            elements.append({"type": "action", "text": element.action.text})
        elif kind == "transition":
            elements.append({"type": "transition", "text": element.transition.text})
        elif kind == "dialogue":
            elements.append(_dialogue_payload(element.dialogue, jokes))
    return {
        "slugline": {
            "placement": _PLACEMENT_NAMES.get(scene.slugline.placement, "INT"),
            "location": scene.slugline.location,
            "time_of_day": scene.slugline.time_of_day,
        },
        "summary": scene.summary,
        "elements": elements,
    }


def _dialogue_payload(
    line: episode_pb2.DialogueLine, jokes: dict[str, episode_pb2.Joke]
) -> dict[str, Any]:
    payload: dict[str, Any] = {"type": "dialogue", "character": line.character, "text": line.text}
    if line.parenthetical:
        payload["parenthetical"] = line.parenthetical
    if line.extension:
        payload["extension"] = line.extension
    joke = jokes.get(line.joke_id)
    if joke is not None:
        role = ROLE_NAMES.get(joke.role, "punchline")
        payload["joke"] = {"pattern": joke.pattern, "role": role}
    return payload
