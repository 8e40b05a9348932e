"""Prompts of the LLM writers, laid out universal-first for prompt caching.

Every request is four blocks, from the most shared to the least, each ending at a cache
breakpoint (Anthropic `cache_control`; OpenAI caches the longest byte-identical prefix on its own):

1. `UNIVERSAL`: the instructions and the humour pattern library: the same for every call of
   every show (about three quarters of the input of a scene call).
2. The show context (`show_context`): show DNA, setting, transformed cast, relationships: the same
   for every call of an episode (and of every episode of that show and setting).
3. The per-episode constants (`Prompt.episode`): the outline's structure (outline-level fields and
   every beat's index and plot line: what every scene's view of the outline shares,
   `cards.structure`) and the reply's JSON Schema: the same for every scene of the episode.
4. The task (`Prompt.task`): this call's REQUEST block (the scene's own beat and card, the cards
   that feed it, notes), never cached.

Bump PROMPT_VERSION whenever the wording or the reply shape changes: it is part of every cache key.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.cards import beats, structure
from services.script.llm import schema

PROMPT_VERSION = "llm-3"
LIBRARY_MARKER = "HUMOUR PATTERN LIBRARY (JSON):"
CONTEXT_MARKER = "SHOW CONTEXT (JSON):"
EPISODE_MARKER = "EPISODE OUTLINE STRUCTURE (JSON):"
REQUEST_MARKER = "REQUEST (JSON):"
SCHEMA_MARKER = "REPLY SCHEMA (JSON Schema):"
REPAIR_MARKER = "REPAIR:"
EPISODE_SECONDS = 22 * 60
MIN_SCENE_SECONDS, MAX_SCENE_SECONDS = 30, 180
WORDS_PER_MINUTE = 150
BEAT_SECONDS = 45

INSTRUCTIONS = """\
You are a staff writer in a sitcom writers' room. The show context below gives a classic sitcom's
DNA, the new setting it is moved to, and the cast transformed for that setting. Write new material
for that cast in that setting: true to each character's archetype, traits and voice (verbal tics
and catchphrases used sparingly), funny, and playable on a multi-camera set.

Rules for every reply:
- Reply with exactly one JSON object that matches the reply schema given with the task. No prose,
  no Markdown, no code fences.
- Speakers are names from the transformed cast, spelled exactly as given.
- Comedic beats are marked on the dialogue line that carries them, with a pattern id from the
  humour pattern library below and a role: setup, punchline or callback (a callback pays off
  something planted earlier in the episode).
- Screenplay conventions: sluglines are INT, EXT or INT/EXT with a location in capitals and a time
  of day; action lines are present tense; parentheticals are short and without brackets;
  transitions are in capitals ("CUT TO:", "SMASH CUT TO:", "FADE OUT.").
"""


def _character(character: episode_pb2.Character) -> dict[str, Any]:
    return {
        "name": character.name,
        "original_name": character.original_name,
        "archetype": character.archetype,
        "role": character.role,
        "traits": list(character.traits),
        "verbal_tics": list(character.verbal_tics),
        "catchphrases": list(character.catchphrases),
        "aliases": list(character.aliases),
    }


def _pattern(pattern: catalog.HumorPattern) -> dict[str, Any]:
    return {
        "id": pattern.id,
        "name": pattern.name,
        "setup": pattern.setup,
        "escalation": pattern.escalation,
        "payoff": pattern.payoff,
        "timing": pattern.timing,
        "archetypes": list(pattern.archetypes),
    }


def show_context(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    relationships: Sequence[episode_pb2.Relationship],
) -> str:
    """The shared, cacheable block: identical for every call of an episode."""
    document = {
        "show": {
            "id": show.id,
            "title": show.title,
            "premise": show.premise,
            "era": show.era,
            "structure": {
                "cold_open": show.structure.cold_open,
                "acts": show.structure.acts,
                "tag": show.structure.tag,
            },
            "favoured_humour_patterns": list(show.humor_patterns),
        },
        "setting": {
            "id": setting.id,
            "name": setting.name,
            "description": setting.description,
            "vocabulary": list(setting.vocabulary),
            "locations": list(setting.locations),
            "props": list(setting.props),
        },
        "cast": [_character(character) for character in cast],
        "relationships": [
            {"from": r.from_character, "to": r.to_character, "kind": r.kind} for r in relationships
        ],
    }
    return f"{CONTEXT_MARKER}\n{json.dumps(document, indent=1, ensure_ascii=False)}"


@functools.cache
def universal() -> str:
    """Block 1: the instructions and the humour pattern library (the same for every show)."""
    library = [_pattern(pattern) for pattern in catalog.load_patterns()]
    return f"{INSTRUCTIONS}\n{LIBRARY_MARKER}\n{json.dumps(library, indent=1, ensure_ascii=False)}"


@dataclass(frozen=True)
class Prompt:
    """A call's user turn: the per-episode constants (cached) and the task (not)."""

    episode: str
    task: str

    @property
    def text(self) -> str:
        return f"{self.episode}\n\n{self.task}"


# How every scene is written: constant, so it travels in the (cached) episode block.
SCENE_GUIDE = (
    "Writing a scene: action lines interleaved with dialogue; a comedic beat about every "
    f"{BEAT_SECONDS} seconds, with setups paid off by punchlines; keep continuity with what "
    "happened earlier. Play the scene's card: the slugline is its location, INT/EXT and time of "
    "day; only the characters present or entering speak, and those who exit leave before the "
    "end; plant its setups and pay off the setups due, in lines or action. The earlier cards "
    "(where people went, what was planted) are in `earlier`; scenes are written in parallel, so "
    "they are all you know of the other scenes. Keep to the writer's premise when there is one."
)


def _prompt(
    text: str,
    request: dict[str, Any],
    reply_schema: dict[str, Any],
    outline: episode_pb2.Outline | None = None,
) -> Prompt:
    episode = f"{SCHEMA_MARKER}\n{json.dumps(reply_schema, ensure_ascii=False)}"
    if outline is not None:
        shape = schema.outline_payload(structure(outline))
        episode = (
            f"{SCENE_GUIDE}\n\n{EPISODE_MARKER}\n{json.dumps(shape, ensure_ascii=False)}"
            f"\n\n{episode}"
        )
    return Prompt(episode, f"{text}\n\n{REQUEST_MARKER}\n{json.dumps(request, ensure_ascii=False)}")


def detailed_beats(outline: episode_pb2.Outline) -> list[dict[str, Any]]:
    """The beats of a scene's view that say more than the structure (its own, the feeding
    cards): the task carries these, the episode block the structure they fit in."""
    shape = {"scene_index", "plot"}
    cards = [schema.card_payload(beat) for beat in beats(outline)]
    return [card for card in cards if set(card) - shape]


def joined_outline(episode: dict[str, Any], detailed: list[dict[str, Any]]) -> dict[str, Any]:
    """A scene's view of the outline, as `outline_payload` gives it, from the episode block's
    structure and the task's detailed beats (the loopback provider reads prompts this way)."""
    by_index = {beat["scene_index"]: beat for beat in detailed}
    acts = [
        {**act, "beats": [by_index.get(b["scene_index"], b) for b in act["beats"]]}
        for act in episode["acts"]
    ]
    return {**episode, "acts": acts}


def scene_seconds_target(scene_count: int) -> int:
    seconds = EPISODE_SECONDS // max(1, scene_count)
    return max(MIN_SCENE_SECONDS, min(MAX_SCENE_SECONDS, seconds))


def outline_request(
    scene_count: int,
    seed: int,
    notes: Sequence[str],
    target_runtime_seconds: float,
    *,
    premise: str = "",
    avoid_kernels: Sequence[str] = (),
    bible: Sequence[str] = (),
) -> Prompt:
    minutes = round(target_runtime_seconds / 60) if target_runtime_seconds else 22
    text = (
        f"Outline a new {minutes}-minute episode in {scene_count} scenes: a title, a logline, "
        "an A plot and a B plot that touch at the climax, and acts (cold open, acts, tag, "
        "following the show's structure) whose beats give every scene exactly one beat "
        f"(scene_index 0 to {scene_count - 1}), each naming who drives it and what changes. "
        "Give every beat its scene card: location, INT or EXT (an outdoor place is EXT), time "
        "of day (a scene in the same place as the one before keeps its time), the characters "
        "present at the start, who enters and who exits, the setups it plants (each with an id "
        "unique in the outline) and the ids of earlier setups it pays off, and the running "
        "gag's state after it. Name the A plot's story kernel in a few words."
    )
    if premise:
        text += (
            " Build the episode around the writer's premise (in the request): its people, "
            "things and events appear in the logline, the A plot and the beats."
        )
    if avoid_kernels:
        text += " The A plot must differ from these, already proposed: see avoid_kernels."
    if bible:
        text += (
            " The episode belongs to a series: series_bible holds what earlier episodes "
            "established (facts with ids, running gags, relationships' state). Keep to it, and "
            "call back to at least one fact of an earlier episode in a beat."
        )
    request = {
        "task": "outline",
        "scene_count": scene_count,
        "seed": seed,
        "target_runtime_seconds": target_runtime_seconds,
        "notes": list(notes),
        "premise": premise,
        "avoid_kernels": list(avoid_kernels),
    }
    if bible:
        request["series_bible"] = list(bible)
    return _prompt(text, request, schema.json_schema(schema.OutlineOut))


def scene_request(
    cast: Sequence[str],
    outline: episode_pb2.Outline,
    index: int,
    earlier: Sequence[str],
    seed: int,
    notes: Sequence[str],
) -> Prompt:
    count = max(outline.scene_count, index + 1)
    beat = schema.beat_of(outline, index)
    seconds = round(beat.target_seconds) if beat and beat.target_seconds > 0 else 0
    seconds = seconds or scene_seconds_target(count)
    words = seconds * WORDS_PER_MINUTE // 60
    last = index == count - 1
    text = (
        f"Write scene {index + 1} of {count} (scene_index {index}), playing its beat from the "
        f"outline: about {seconds} seconds of screen time (roughly {words} spoken words). "
        f"End with a transition ({'FADE OUT.' if last else 'e.g. CUT TO:'})."
    )
    card = schema.scene_card(outline, index)
    if "series_callbacks" in card:
        text += (
            " The card calls back to earlier episodes of the series (series_callbacks): a "
            "character who is not named in the fact brings it up in a line."
        )
    request = {
        "task": "scene",
        "scene_index": index,
        "scene_count": count,
        "seed": seed,
        "target_seconds": seconds,
        "target_runtime_seconds": outline.target_runtime_seconds,
        "premise": outline.premise,
        "outline_beats": detailed_beats(outline),
        "card": card,
        "earlier": list(earlier),
        "notes": list(notes),
    }
    patterns = [pattern.id for pattern in catalog.load_patterns()]
    return _prompt(text, request, schema.json_schema(schema.SceneOut, cast, patterns), outline)


def line_request(
    scene: episode_pb2.Scene, joke: episode_pb2.Joke, speaker: str, original: str, seed: int
) -> Prompt:
    pattern = catalog.get_pattern(joke.pattern)
    text = (
        f"Punch up one line of scene {scene.number}: the line of {speaker} that carries joke "
        f"{joke.id}. Keep the speaker, the speaker's voice, the humour pattern and the joke's "
        "role; make it shorter and sharper, with a surprise that lands on the last word. Reply "
        "with the new line only."
    )
    request = {
        "task": "rewrite",
        "seed": seed,
        "scene_index": scene.index,
        "scene": schema.scene_payload(scene),
        "joke": {
            "id": joke.id,
            "element_index": joke.element_index,
            "pattern": joke.pattern,
            "role": schema.ROLE_NAMES.get(joke.role, "punchline"),
            "speaker": speaker,
            "text": original,
        },
        "pattern": _pattern(pattern) if pattern else None,
    }
    return _prompt(text, request, schema.json_schema(schema.LineOut))


def revision_request(
    cast: Sequence[str],
    outline: episode_pb2.Outline,
    scene: episode_pb2.Scene,
    notes: Sequence[str],
    seed: int,
) -> Prompt:
    text = (
        f"Revise scene {scene.number} to address every note below, keeping its beat, its "
        "slugline unless a note says otherwise, and whatever works. Reply with the whole scene."
    )
    request = {
        "task": "revise",
        "scene_index": scene.index,
        "scene_count": outline.scene_count,
        "seed": seed,
        "target_runtime_seconds": outline.target_runtime_seconds,
        "premise": outline.premise,
        "outline_beats": detailed_beats(outline),
        "card": schema.scene_card(outline, scene.index),
        "scene": schema.scene_payload(scene),
        "notes": list(notes),
    }
    patterns = [pattern.id for pattern in catalog.load_patterns()]
    return _prompt(text, request, schema.json_schema(schema.SceneOut, cast, patterns), outline)


def repair_request(problems: Sequence[str], truncated: bool) -> str:
    """The follow-up message of the one repair attempt."""
    lines = "\n".join(f"- {problem}" for problem in problems)
    cut = "Your reply was cut off at the output limit: be more concise.\n" if truncated else ""
    return (
        f"{REPAIR_MARKER} your reply could not be used.\n{cut}{lines}\n"
        "Reply again with only the corrected JSON object, matching the reply schema."
    )


def parse_marked_json(text: str, marker: str) -> Any:
    """The JSON document that follows `marker` in a prompt (the loopback server reads these)."""
    start = text.index(marker) + len(marker)
    decoder = json.JSONDecoder()
    value, _ = decoder.raw_decode(text[start:].lstrip())
    return value
