"""Bundled shows, settings and humour patterns: the script service's domain data.

The JSON files beside this module are the product's voice. `shows.json` and the `settings` of
`settings.json` are what ListShows returns; the rest of `settings.json` (themes, a generic fallback,
name pools) only feeds the procedural writer and free-text settings. `lines.json` is the procedural
writer's grammar (story, dialogue and joke templates).

Everything is loaded once and cached. Functions returning protobuf messages return copies, so a
caller may mutate what it gets.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar

from google.protobuf import json_format

from doppelganger.v1 import episode_pb2

__all__ = [
    "ARCHETYPES",
    "LEXICON_KEYS",
    "HumorPattern",
    "SettingProfile",
    "archetype_family",
    "find_show",
    "get_pattern",
    "load_patterns",
    "load_settings",
    "load_shows",
    "name_pool",
    "resolve_setting",
    "setting_profile",
    "surname_pool",
    "writer_grammar",
]

# The controlled vocabulary of character archetypes. Show characters use these words; settings map
# each to in-world roles; humour patterns list the ones best placed to deliver their payoff.
ARCHETYPES: tuple[str, ...] = (
    "schemer",
    "straight man",
    "sidekick",
    "blowhard",
    "neurotic",
    "innocent",
    "cynic",
    "romantic",
    "eccentric",
    "authority",
    "snob",
)
# In-world stand-ins every setting profile provides (the writer's templates use them as slots).
LEXICON_KEYS: tuple[str, ...] = (
    "place",
    "drink",
    "food",
    "money",
    "vehicle",
    "boss",
    "visitor",
    "event",
    "oath",
    "hazard",
    "faraway",
)
CUSTOM_PREFIX = "custom-"
MAX_CUSTOM_NAME = 80
MIN_LOCATIONS = 6
MAX_VOCABULARY = 16


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PREPOSITIONS = _wordset(
    "in on at of under beneath near during with where off aboard inside outside by from for "
    "that which who and or to into onto called named like"
)
_STOPWORDS = _PREPOSITIONS | _wordset("a an the set some this its their our his her my your")
_NOISE = re.compile(r"[^a-z0-9& ]+")
_WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+")
_M = TypeVar("_M", episode_pb2.Show, episode_pb2.Setting)


@dataclass(frozen=True)
class HumorPattern:
    """One entry of the humour pattern library.

    `archetypes` are the archetypes best placed to deliver the payoff.
    """

    id: str
    name: str
    setup: str
    escalation: str
    payoff: str
    timing: str
    archetypes: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class SettingProfile:
    """What the writer needs about a setting beyond the Setting message."""

    name_style: str
    roles: Mapping[str, tuple[str, ...]]
    spare_roles: tuple[str, ...]
    lexicon: Mapping[str, str]
    ambience: tuple[str, ...]
    exteriors: frozenset[str]


# ---------------------------------------------------------------------------------------------
# Loading


@cache
def _data(name: str) -> Any:
    return json.loads(resources.files(__name__).joinpath(name).read_text(encoding="utf-8"))


def _normalise(text: str) -> str:
    """Lower case, no punctuation, no articles: 'The Office (US)' -> 'office us'."""
    text = _NOISE.sub(" ", text.lower().replace("*", "").replace(".", ""))
    words = [w for w in text.replace("&", " and ").split() if w not in ("the", "a", "an")]
    return " ".join(words)


@cache
def _shows() -> tuple[episode_pb2.Show, ...]:
    return tuple(
        json_format.ParseDict(raw, episode_pb2.Show(), ignore_unknown_fields=True)
        for raw in _data("shows.json")["shows"]
    )


@cache
def _show_index() -> Mapping[str, int]:
    index: dict[str, int] = {}
    for position, raw in enumerate(_data("shows.json")["shows"]):
        keys = [raw["id"], raw["id"].replace("-", " "), raw["title"], *raw.get("aliases", ())]
        keys.append(re.sub(r"\(.*?\)", "", raw["title"]))
        for key in keys:
            index.setdefault(_normalise(key), position)
    return MappingProxyType(index)


def _setting_message(raw: Mapping[str, Any]) -> episode_pb2.Setting:
    return json_format.ParseDict(dict(raw), episode_pb2.Setting(), ignore_unknown_fields=True)


@cache
def _settings() -> tuple[episode_pb2.Setting, ...]:
    return tuple(_setting_message(raw) for raw in _data("settings.json")["settings"])


@cache
def _setting_index() -> Mapping[str, int]:
    index: dict[str, int] = {}
    for position, raw in enumerate(_data("settings.json")["settings"]):
        for key in (raw["id"], raw["id"].replace("-", " "), raw["name"], *raw.get("aliases", ())):
            index.setdefault(_normalise(key), position)
    return MappingProxyType(index)


def _copy(message: _M) -> _M:
    duplicate = type(message)()
    duplicate.CopyFrom(message)
    return duplicate


def load_shows() -> list[episode_pb2.Show]:
    """Every bundled show (copies)."""
    return [_copy(show) for show in _shows()]


def load_settings() -> list[episode_pb2.Setting]:
    """Every bundled setting (copies); themes and the generic fallback are not listed."""
    return [_copy(setting) for setting in _settings()]


@cache
def _patterns() -> tuple[HumorPattern, ...]:
    return tuple(
        HumorPattern(
            id=raw["id"],
            name=raw["name"],
            setup=raw["setup"],
            escalation=raw["escalation"],
            payoff=raw["payoff"],
            timing=raw["timing"],
            archetypes=tuple(raw["archetypes"]),
        )
        for raw in _data("patterns.json")["patterns"]
    )


@cache
def _pattern_index() -> Mapping[str, HumorPattern]:
    return MappingProxyType({pattern.id: pattern for pattern in _patterns()})


def load_patterns() -> list[HumorPattern]:
    """The humour pattern library (immutable entries)."""
    return list(_patterns())


def get_pattern(pattern_id: str) -> HumorPattern | None:
    return _pattern_index().get(pattern_id)


def writer_grammar() -> Mapping[str, Any]:
    """The procedural writer's templates (`lines.json`), parsed once; treat as read-only."""
    return MappingProxyType(_data("lines.json"))


def find_show(query: str) -> episode_pb2.Show | None:
    """The show whose id, title or alias matches, ignoring case, punctuation and articles."""
    position = _show_index().get(_normalise(query))
    return None if position is None else _copy(_shows()[position])


def archetype_family(archetype: str) -> str:
    """Maps a free archetype description onto ARCHETYPES ('the straight man' -> 'straight man')."""
    text = archetype.lower()
    for family in ARCHETYPES:
        if family in text:
            return family
    return "straight man"


def name_pool(style: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """In-world first names and name suffixes for a naming style, falling back to 'generic'."""
    data = _data("settings.json")
    pools, suffixes = data["name_pools"], data["name_suffixes"]
    key = style if style in pools else "generic"
    return tuple(pools[key]), tuple(suffixes.get(key, suffixes["generic"]))


def surname_pool(style: str) -> tuple[str, ...]:
    """In-world surnames for a naming style, falling back to 'generic'."""
    pools = _data("settings.json")["surname_pools"]
    return tuple(pools.get(style, pools["generic"]))


# ---------------------------------------------------------------------------------------------
# Setting profiles and free-text settings


def _profile(raw: Mapping[str, Any], head: str = "") -> SettingProfile:
    generic = _data("settings.json")["generic"]
    roles = {
        family: tuple(role.replace("{head}", head or "site").strip() for role in options)
        for family, options in {**generic["roles"], **raw.get("roles", {})}.items()
    }
    lexicon = {**generic["lexicon"], **raw.get("lexicon", {})}
    return SettingProfile(
        name_style=raw.get("name_style", "generic"),
        roles=MappingProxyType(roles),
        spare_roles=tuple(raw.get("spare_roles", generic["spare_roles"])),
        lexicon=MappingProxyType(lexicon),
        ambience=tuple(raw.get("ambience") or generic["ambience"]),
        exteriors=frozenset(raw.get("exteriors", ())),
    )


def _themes() -> list[Mapping[str, Any]]:
    data = _data("settings.json")
    return [*data["settings"], *data["themes"]]


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![a-z0-9]){re.escape(phrase)}(?![a-z0-9])", text) is not None


def _era_words(text: str) -> list[str]:
    """Years hint at a theme: 2157 -> 'future', 1926 -> '1920s', 1887 -> 'victorian'."""
    words = []
    for year in (int(y) for y in re.findall(r"\b(1[0-9]{3}|2[0-9]{3})s?\b", text)):
        if year >= 2040:
            words.append("future")
        elif 1920 <= year <= 1933:
            words.append("1920s")
        elif 1837 <= year <= 1901:
            words.append("victorian")
    return words


def _best_theme(text: str) -> Mapping[str, Any]:
    lowered = text.lower()
    haystack = " ".join([_NOISE.sub(" ", lowered), *_era_words(lowered)])
    best, best_hits = _data("settings.json")["generic"], 0
    for theme in _themes():
        hits = sum(_has_phrase(haystack, keyword) for keyword in theme.get("keywords", ()))
        if hits > best_hits:
            best, best_hits = theme, hits
    return best


def _head_phrase(text: str) -> list[str]:
    """The first noun phrase: 'a haunted lighthouse off the coast' -> ['haunted', 'lighthouse']."""
    words = [w for w in _WORD.findall(text) if not w.isdigit()]
    phrase: list[str] = []
    for word in words:
        lower = word.lower()
        if lower in _PREPOSITIONS and phrase:
            break
        if lower not in _STOPWORDS:
            phrase.append(word)
    return phrase[-3:]


def _compose_locations(phrase: list[str], theme: Mapping[str, Any]) -> tuple[list[str], set[str]]:
    """Sluglines built from the text's own noun ('COLONY COMMAND DECK') plus the theme's."""
    head = phrase[-1] if phrase else ""
    joiner = " - " if head[:1].isupper() else " "
    base = head.upper()
    suffixes = list(theme.get("suffixes", ()))
    outside = list(theme.get("exterior_suffixes", ()))
    locations = [f"{base}{joiner}{suffix}" if base else suffix for suffix in suffixes]
    exteriors: set[str] = set()
    if phrase:
        establishing = " ".join(phrase).upper()
        locations.append(establishing)
        exteriors.add(establishing)
    for suffix in outside:
        location = f"{base}{joiner}{suffix}" if base else suffix
        locations.append(location)
        exteriors.add(location)
    for location in theme.get("locations", ()):
        if len(locations) >= MIN_LOCATIONS + 2:
            break
        locations.append(location)
        if location in theme.get("exteriors", ()):
            exteriors.add(location)
    return list(dict.fromkeys(locations)), exteriors


def _phrase_heads(text: str) -> list[str]:
    """The head noun of each phrase: 'a haunted lighthouse off the coast of Maine' ->
    ['lighthouse', 'coast', 'Maine'] (proper nouns keep their capital)."""
    heads: list[str] = []
    chunk: list[str] = []
    for position, word in enumerate([*_WORD.findall(text), "of"]):
        lower = word.lower()
        if lower in _PREPOSITIONS:
            if chunk:
                heads.append(chunk[-1])
            chunk = []
        elif lower not in _STOPWORDS and not word.isdigit() and len(word) > 2:
            chunk.append(word if word[:1].isupper() and position else lower)
    return heads


def _vocabulary(text: str, theme: Mapping[str, Any]) -> list[str]:
    own = _phrase_heads(text)
    return list(dict.fromkeys([*own, *theme.get("vocabulary", ())]))[:MAX_VOCABULARY]


@lru_cache(maxsize=256)
def _derive(text: str) -> tuple[episode_pb2.Setting, SettingProfile]:
    """A free-text setting and its profile, procedurally derived from the words of `text`."""
    theme = _best_theme(text)
    phrase = _head_phrase(text)
    locations, exteriors = _compose_locations(phrase, theme)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    setting = episode_pb2.Setting(
        id=f"{CUSTOM_PREFIX}{digest}",
        name=text[:MAX_CUSTOM_NAME].rstrip(),
        description=text,
        vocabulary=_vocabulary(text, theme),
        locations=locations,
        props=list(theme.get("props", ())),
    )
    head = phrase[-1] if phrase else ""
    if not head[:1].isupper() or text.startswith(head):
        head = head.lower()
    profile = _profile({**theme, "exteriors": sorted(exteriors)}, head=head)
    return setting, profile


def resolve_setting(text: str) -> episode_pb2.Setting:
    """A catalog setting when `text` names one, otherwise a free-text setting derived from it."""
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ValueError("setting text is empty")
    position = _setting_index().get(_normalise(cleaned))
    if position is not None:
        return _copy(_settings()[position])
    return _copy(_derive(cleaned)[0])


@cache
def _catalog_profiles() -> Mapping[str, SettingProfile]:
    return MappingProxyType({raw["id"]: _profile(raw) for raw in _themes()})


def setting_profile(setting: episode_pb2.Setting) -> SettingProfile:
    """The profile of a catalog setting, or one re-derived from a free-text setting's text."""
    known = _catalog_profiles().get(setting.id)
    if known is not None:
        return known
    text = " ".join((setting.description or setting.name).split())
    return _derive(text)[1] if text else _generic_profile()


@cache
def _generic_profile() -> SettingProfile:
    return _profile(_data("settings.json")["generic"])
