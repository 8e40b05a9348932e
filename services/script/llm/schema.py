"""The JSON the LLM writers ask for, how replies are checked, and how they become protos.

Pydantic models give the shape (and the JSON Schema sent with every request); `*_problems`
functions add what a schema cannot know: speakers must be in the transformed cast, joke patterns
in the humour pattern library, the outline must give every scene exactly one beat, and its cards
name cast members and pay off only setups of earlier beats. `parse_reply` returns either the model
or a list of problems, worded to be sent back for the one repair. A beat's card fields are
optional in the reply, so a model that leaves them out still gives a usable outline.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.cards import beat_at, callback_terms, setup_sources
from services.script.llm.structured import drop_nulls
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


class SetupOut(_Strict):
    id: str = Field(
        min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$",
        description='Unique in the outline, e.g. "s2-broken-valve"',
    )  # fmt: skip
    description: str = Field(min_length=1, max_length=300, description="What the audience learns")


class BeatOut(_Strict):
    scene_index: int = Field(ge=0, description="0-based index of the scene that plays this beat")
    plot: Literal["A", "B", "runner"]
    description: str = Field(min_length=1, max_length=600)
    # The scene card: where, when, who, which threads it plants and picks up.
    location: str = Field(default="", max_length=80, description="e.g. HYDROPONICS BAY")
    placement: Literal["INT", "EXT", "INT/EXT"] = "INT"
    time_of_day: str = Field(default="", max_length=20, description="DAY, NIGHT, CONTINUOUS")
    characters: list[str] = Field(default=[], max_length=12, description="Present at the start")
    entrances: list[str] = Field(default=[], max_length=12, description="Enter during the scene")
    exits: list[str] = Field(default=[], max_length=12, description="Leave during the scene")
    setups: list[SetupOut] = Field(default=[], max_length=6, description="Planted here")
    payoffs: list[str] = Field(
        default=[], max_length=12, description="Ids of setups of earlier beats paid off here"
    )
    running_gag: str = Field(
        default="", max_length=300, description="The running gag's state after this scene"
    )


class ActOut(_Strict):
    name: str = Field(min_length=1, max_length=60, description='"Cold Open", "Act One", "Tag"')
    beats: list[BeatOut] = Field(min_length=1, max_length=20)


class OutlineOut(_Strict):
    title: str = Field(min_length=1, max_length=120)
    logline: str = Field(min_length=1, max_length=600)
    a_plot: str = Field(min_length=1, max_length=600)
    b_plot: str = Field(min_length=1, max_length=600)
    acts: list[ActOut] = Field(min_length=1, max_length=7)
    kernel: str = Field(
        default="", max_length=80, description="The A plot's story kernel in a few words"
    )
    running_gag: str = Field(default="", max_length=300, description="The episode's running gag")


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


class Problems(list[str]):
    """The problems of a reply, and the stage that found them: "json", "schema" or "content"
    (the first two are parse failures, which native structured output should make rare)."""

    def __init__(self, items: Sequence[str] = (), stage: str = "") -> None:
        super().__init__(items)
        self.stage = stage

    @property
    def parse_failure(self) -> bool:
        return self.stage in ("json", "schema")


def parse_reply(
    model: type[ReplyT], text: str, check: Callable[[ReplyT], list[str]]
) -> tuple[ReplyT | None, Problems]:
    """The reply as `model`, or None and the problems found (JSON, schema, then content)."""
    candidate = extract_json(text)
    try:
        document = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return None, Problems([f"not valid JSON ({exc.msg} at character {exc.pos})"], "json")
    try:
        # A strict-mode reply says "not given" with null (structured.py).
        parsed = model.model_validate(drop_nulls(document))
    except ValidationError as exc:
        return None, Problems(_pydantic_problems(exc), "schema")
    problems = check(parsed)
    if problems:
        return None, Problems(problems[:MAX_PROBLEMS], "content")
    return parsed, Problems()


# ---------------------------------------------------------------------------------------------
# Content checks


def cast_spelling(names: Sequence[str]) -> Callable[[str], str]:
    """Maps a name to the cast's spelling of it when they differ only in case: a speaker
    written `LUX` (screenplay capitals) is the cast's `Lux`, not a stranger worth a repair."""
    folded = {name.casefold(): name for name in names}

    def spell(name: str) -> str:
        return name if name in folded.values() else folded.get(name.casefold(), name)

    return spell


def outline_problems(outline: OutlineOut, scene_count: int, cast: Sequence[str] = ()) -> list[str]:
    """What is wrong with the outline; names on its cards are first respelled as the cast's."""
    spell = cast_spelling(cast)
    for beat in (b for act in outline.acts for b in act.beats):
        beat.characters = [spell(n) for n in beat.characters]
        beat.entrances = [spell(n) for n in beat.entrances]
        beat.exits = [spell(n) for n in beat.exits]
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
    return problems + _card_problems(outline, cast)


def _card_problems(outline: OutlineOut, cast: Sequence[str]) -> list[str]:
    """Cards name cast members; setup ids are unique; payoffs name setups of earlier beats."""
    problems: list[str] = []
    known = set(cast)
    planted: dict[str, int] = {}
    beats = sorted((b for act in outline.acts for b in act.beats), key=lambda b: b.scene_index)
    for beat in beats:
        where = f"beat {beat.scene_index}"
        for kind in ("characters", "entrances", "exits"):
            strangers = [n for n in getattr(beat, kind) if known and n not in known]
            if strangers:
                problems.append(f"{where} {kind} {strangers} are not in the cast")
        for payoff in beat.payoffs:
            if planted.get(payoff, beat.scene_index) >= beat.scene_index:
                problems.append(f"{where} pays off {payoff!r}, which no earlier beat plants")
        for setup in beat.setups:
            if setup.id in planted:
                problems.append(f"{where} plants {setup.id!r} again; setup ids are unique")
            planted.setdefault(setup.id, beat.scene_index)
    return problems


def scene_problems(scene: SceneOut, cast: Sequence[str]) -> list[str]:
    """What is wrong with the scene; speakers are first respelled as the cast's."""
    names = set(cast)
    spell = cast_spelling(cast)
    for element in scene.elements:
        if isinstance(element, DialogueOut):
            element.character = spell(element.character)
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
    """The outline with its cards, its runtime target shared among the beats as the procedural
    writer does."""
    acts = [
        episode_pb2.Act(
            name=act.name,
            beats=[_beat(beat) for beat in sorted(act.beats, key=lambda b: b.scene_index)],
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
        kernel=reply.kernel,
        running_gag=reply.running_gag,
    )
    allocate_targets(outline, target_runtime_seconds or scene_count * DEFAULT_SCENE_SECONDS)
    return outline


def _beat(beat: BeatOut) -> episode_pb2.Beat:
    return episode_pb2.Beat(
        scene_index=beat.scene_index,
        plot=PLOTS[beat.plot],
        description=beat.description,
        location=beat.location.upper(),
        placement=PLACEMENTS[beat.placement]
        if beat.location
        else episode_pb2.PLACEMENT_UNSPECIFIED,
        time_of_day=beat.time_of_day.upper(),
        characters=beat.characters,
        entrances=beat.entrances,
        exits=beat.exits,
        setups=[episode_pb2.Setup(id=s.id, description=s.description) for s in beat.setups],
        payoffs=beat.payoffs,
        running_gag=beat.running_gag,
    )


def outline_from_payload(payload: Mapping[str, Any], premise: str = "") -> episode_pb2.Outline:
    """An outline from `outline_payload`'s JSON (a scene's view: beats of other scenes carry no
    description) and the request's premise, as the loopback provider reads a request."""
    acts = []
    for act in payload.get("acts", []):
        beats = []
        for beat in act.get("beats", []):
            card = BeatOut.model_validate({"description": "-", **beat})
            proto = _beat(card)
            proto.description = beat.get("description", "")
            beats.append(proto)
        acts.append(episode_pb2.Act(name=act.get("name", ""), beats=beats))
    return episode_pb2.Outline(
        title=payload.get("title", ""),
        logline=payload.get("logline", ""),
        a_plot=payload.get("a_plot", ""),
        b_plot=payload.get("b_plot", ""),
        acts=acts,
        scene_count=sum(len(act.beats) for act in acts),
        premise=premise,
        kernel=payload.get("kernel", ""),
        running_gag=payload.get("running_gag", ""),
    )


def act_of(outline: episode_pb2.Outline, index: int) -> str:
    for act in outline.acts:
        if any(beat.scene_index == index for beat in act.beats):
            return act.name
    return ""


def beat_of(outline: episode_pb2.Outline, index: int) -> episode_pb2.Beat | None:
    return next(
        (beat for act in outline.acts for beat in act.beats if beat.scene_index == index), None
    )


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
    terms = callback_terms(outline, index, [*setting.props, *setting.vocabulary])
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
            callback_terms=terms,
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
    """The outline as reply-shaped JSON with its cards; what is empty is left out (a scene's
    view has no description for the other scenes' beats, and only the cards that feed it). The
    premise is not part of the reply's shape: requests carry it beside the outline."""
    payload: dict[str, Any] = {
        "title": outline.title,
        "logline": outline.logline,
        "a_plot": outline.a_plot,
        "b_plot": outline.b_plot,
        "acts": [
            {"name": act.name, "beats": [card_payload(beat) for beat in act.beats]}
            for act in outline.acts
        ],
    }
    for name in ("kernel", "running_gag"):
        if getattr(outline, name):
            payload[name] = getattr(outline, name)
    return payload


def card_payload(beat: episode_pb2.Beat) -> dict[str, Any]:
    """A beat as reply-shaped JSON: its index and plot line, and whatever else it has."""
    payload: dict[str, Any] = {
        "scene_index": beat.scene_index,
        "plot": _PLOT_NAMES.get(beat.plot, "A"),
    }
    if beat.description:
        payload["description"] = beat.description
    if beat.location:
        payload["location"] = beat.location
        payload["placement"] = _PLACEMENT_NAMES.get(beat.placement, "INT")
    if beat.time_of_day:
        payload["time_of_day"] = beat.time_of_day
    for name in ("characters", "entrances", "exits", "payoffs"):
        if getattr(beat, name):
            payload[name] = list(getattr(beat, name))
    if beat.setups:
        payload["setups"] = [{"id": s.id, "description": s.description} for s in beat.setups]
    if beat.running_gag:
        payload["running_gag"] = beat.running_gag
    return payload


def scene_card(outline: episode_pb2.Outline, index: int) -> dict[str, Any]:
    """Scene `index`'s own card, with the setups it pays off spelled out."""
    beat = beat_at(outline, index)
    if beat is None:
        return {"scene_index": index}
    card = card_payload(beat)
    sources = setup_sources(outline)
    planted = {s.id: s.description for b in outline.acts for s in _setups(b)}
    card["payoffs_due"] = [
        {"id": p, "planted_in_scene": sources.get(p, -1) + 1, "description": planted.get(p, "")}
        for p in beat.payoffs
    ]
    if beat.callbacks:  # A season's: earlier episodes' facts this scene calls back to.
        card["series_callbacks"] = [
            {"fact_id": c.fact_id, "episode": c.episode_number, "fact": c.text}
            for c in beat.callbacks
        ]
    return card


def _setups(act: episode_pb2.Act) -> list[episode_pb2.Setup]:
    return [setup for beat in act.beats for setup in beat.setups]


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
