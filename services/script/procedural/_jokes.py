"""Joke scoring, and the punch-up: the procedural writer's rewrite of a weak joke line.

`score_joke` is the one scale every joke is measured on, the procedural writer's, the LLM
writers' and the comedy pass's. The punch-up makes three moves, each a craft rule the scorer
measures: cut to the turn (the last sentence or two: brevity), button it with a topper that lands
on a concrete in-world noun (punch, setting fit) or on the running gag (callback), or say it in the
speaker's own voice (a verbal tic: character fit). The best candidate that differs wins.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.catalog import HumorPattern
from services.script.checks.names import (
    find_original_names,
    names_self,
    original_names,
    own_names,
)
from services.script.procedural._grammar import GENERIC_VOCABULARY, TOPPERS
from services.script.procedural._kernel import EpisodeKernel, build_kernel
from services.script.procedural._text import lead_in, seeded_rng, wordset

# Joke scoring: named dimensions in [0, 1] and their weights (they sum to 1).
#   surprise      - share of the line's content words not heard in the preceding lines, plus a
#                   bonus when the last content word is new (the turn lands at the end)
#   brevity       - 5 to 16 words is ideal; shorter or longer decays linearly
#   punch         - the line ends on a strong content word rather than a filler word
#   character_fit - the speaker's archetype is one the pattern suits (payoff archetypes)
#   setting_fit   - mentions of the setting's vocabulary, props and lexicon
#   callback      - refers back to something planted earlier (running gag, earlier props)
JOKE_WEIGHTS: Mapping[str, float] = MappingProxyType(
    {
        "surprise": 0.25,
        "brevity": 0.15,
        "punch": 0.15,
        "character_fit": 0.20,
        "setting_fit": 0.15,
        "callback": 0.10,
    }
)

JOKE_CONTEXT_LINES = 6  # dialogue lines before a joke that `surprise` compares it with
BRIEF_WORDS = 16  # `brevity` is full up to this many words
TOPPERS_PER_REWRITE = 6
MIN_CORE_WORDS = 5

_STOPWORDS = wordset(
    "a about all am an and any are as at be been but by can could did do does don't for from "
    "get got had has have he her here him his how i i'm if in into is it it's its just let me "
    "more my no not now of oh on one or our out really she so some than that that's the their "
    "them then there they this to too up us very was we well were what when where which who "
    "why will with would you you're your"
)
_WORDS = re.compile(r"[a-z][a-z'\-]*")
_SENTENCES = re.compile(r"(?<=[.!?])\s+")


# The three memos below are pure (text or setting in, words or terms out) and bounded: every joke
# of every scene is scored against its context, so the same lines and settings come back often.
@lru_cache(maxsize=65536)
def _content_words(text: str) -> tuple[str, ...]:
    return tuple(w for w in _WORDS.findall(text.lower()) if len(w) > 2 and w not in _STOPWORDS)


@lru_cache(maxsize=128)
def _setting_terms(setting_bytes: bytes) -> tuple[str, ...]:
    setting = episode_pb2.Setting.FromString(setting_bytes)
    lexicon = catalog.setting_profile(setting).lexicon.values()
    terms = [*setting.vocabulary, *setting.props, *lexicon]
    cleaned = {re.sub(r"^(the|a|an)\s+", "", term.lower()).strip() for term in terms}
    return tuple(sorted(term for term in cleaned if len(term) > 2))


@lru_cache(maxsize=8192)
def _term_pattern(term: str) -> re.Pattern[str]:
    return re.compile(rf"\b{re.escape(term)}\b")


def _surprise(text: str, context: Sequence[str]) -> float:
    words = _content_words(text)
    if not words:
        return 0.0
    heard = {w for line in context for w in _content_words(line)}
    novelty = sum(1 for w in words if w not in heard) / len(words)
    return 0.6 * novelty + 0.4 * (words[-1] not in heard)


def _brevity(text: str) -> float:
    count = len(text.split())
    if count < 5:
        return count / 5
    if count <= BRIEF_WORDS:
        return 1.0
    return max(0.0, 1.0 - (count - BRIEF_WORDS) / 20)


def _punch(text: str) -> float:
    words = _WORDS.findall(text.lower())
    if not words:
        return 0.0
    last = words[-1]
    if last in _STOPWORDS or len(last) <= 2:
        return 0.2
    return 1.0 if len(last) >= 4 else 0.6


def _character_fit(
    text: str, pattern: HumorPattern | None, speaker: episode_pb2.Character | None
) -> float:
    if speaker is None or pattern is None:
        return 0.5
    fit = 1.0 if catalog.archetype_family(speaker.archetype) in pattern.archetypes else 0.4
    lowered = text.lower()
    voiced = any(p.lower() in lowered for p in [*speaker.catchphrases, *speaker.verbal_tics])
    return min(1.0, fit + (0.2 if voiced else 0.0))


def _mentions(text: str, terms: Iterable[str]) -> int:
    lowered = text.lower()
    return sum(1 for term in terms if term in lowered and _term_pattern(term).search(lowered))


def _setting_fit(text: str, setting: episode_pb2.Setting | None) -> float:
    if setting is None:
        return 0.5
    hits = _mentions(text, _setting_terms(setting.SerializeToString()))
    return 1.0 if hits >= 2 else 0.7 if hits == 1 else 0.2


def _callback(text: str, callback_terms: Sequence[str]) -> float:
    terms = [term.lower() for term in callback_terms if term]
    return 1.0 if terms and _mentions(text, terms) else 0.0


def score_joke(
    text: str,
    pattern: HumorPattern | str,
    *,
    speaker: episode_pb2.Character | None = None,
    setting: episode_pb2.Setting | None = None,
    context: Sequence[str] = (),
    callback_terms: Sequence[str] = (),
) -> tuple[float, dict[str, float]]:
    """Weighted score in [0, 1] and its named dimensions (see JOKE_WEIGHTS); pure.

    `context` is the dialogue heard just before the line; `callback_terms` are things planted
    earlier in the episode that a callback may refer to.
    """
    resolved = pattern if isinstance(pattern, HumorPattern) else catalog.get_pattern(pattern)
    dimensions = {
        "surprise": _surprise(text, context),
        "brevity": _brevity(text),
        "punch": _punch(text),
        "character_fit": _character_fit(text, resolved, speaker),
        "setting_fit": _setting_fit(text, setting),
        "callback": _callback(text, callback_terms),
    }
    score = sum(JOKE_WEIGHTS[name] * value for name, value in dimensions.items())
    return round(score, 4), {name: round(value, 4) for name, value in dimensions.items()}


def joke_context(scene: episode_pb2.Scene, element_index: int) -> list[str]:
    """The dialogue heard just before an element of the scene (what `surprise` compares with)."""
    before = [
        element.dialogue.text
        for element in scene.elements[: max(0, element_index)]
        if element.WhichOneof("element") == "dialogue"
    ]
    return before[-JOKE_CONTEXT_LINES:]


def _cores(text: str) -> list[str]:
    """The line itself; a long one (over BRIEF_WORDS) also cut to its last sentence or two
    (each at least MIN_CORE_WORDS), since the turn is at the end."""
    line = text.strip()
    if len(line.split()) <= BRIEF_WORDS:
        return [line]
    sentences = [part for part in _SENTENCES.split(line) if part]
    cuts = [" ".join(sentences[-2:]), sentences[-1] if sentences else ""]
    return [c for c in dict.fromkeys([line, *cuts]) if len(c.split()) >= MIN_CORE_WORDS]


def punch_up(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    scene: episode_pb2.Scene,
    joke: episode_pb2.Joke,
    seed: int,
    *,
    kernel: EpisodeKernel | None = None,
) -> str:
    """A better version of the line that carries `joke` (or the line itself when nothing
    scores higher); deterministic. `kernel` is the episode's when the caller keeps it."""
    line = scene.elements[joke.element_index].dialogue
    kernel = build_kernel(show, setting, cast, seed) if kernel is None else kernel
    speaker = next((c for c in cast if c.name == line.character), None)
    rng = seeded_rng("punch-up", show.id, setting.id, seed, scene.index, joke.id, line.text)
    slots = dict(kernel.slots)
    common = [term for term in setting.vocabulary if term.islower()]  # "Ask the Phobos." no
    slots["vocab"] = rng.choice(common or list(GENERIC_VOCABULARY))
    toppers = rng.sample(TOPPERS, min(TOPPERS_PER_REWRITE, len(TOPPERS)))
    cores = _cores(line.text)
    candidates = [*cores, *(f"{c} {t.format_map(slots)}" for c in cores for t in toppers)]
    if speaker is not None:
        candidates += [lead_in(tic, core) for tic in speaker.verbal_tics for core in cores[-1:]]
    context = joke_context(scene, joke.element_index)
    terms = (kernel.runner_prop,) if scene.index > 0 else ()

    def score(text: str) -> float:
        value, _ = score_joke(
            text, joke.pattern, speaker=speaker, setting=setting, context=context,
            callback_terms=terms,
        )  # fmt: skip
        return value

    original = original_names(show, cast, setting)
    own = own_names(speaker) if speaker is not None else []

    def fits(text: str) -> bool:  # no third-person self-naming, no classic names
        return not find_original_names(text, original) and names_self(text, own) is None

    fresh = [text for text in dict.fromkeys(candidates) if text != line.text and fits(text)]
    return max(fresh, key=lambda text: (score(text), -len(text), text), default=line.text)
