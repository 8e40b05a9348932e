"""Every name of the classic cast, renamed for the new world: first names, surnames, nicknames,
title and surname forms.

A character's `aliases` say which forms of the name the show uses ("Lucy Ricardo", "Ricardo",
"Mrs. Ricardo", "Ralphie"). Every capitalised word of a name becomes one new word for the whole
cast, so a family keeps one surname ("Fred Mertz" and "Mrs. Mertz" become "Fenn Marsh" and
"Mrs. Marsh") and titles stay ("Dr. Crane" becomes "Dr. Corvin"). A new name keeps an echo of the
old one (same initial, similar sound), never is an original name, and depends on the show and the
setting only, so Lucy is the same person in every Mars episode.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.procedural._text import seeded_rng, sentence


def _wordset(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words that stand before a name and stay as they are ("Mrs. Ricardo" -> "Mrs. Rivera").
TITLES = _wordset(
    """mr. mrs. ms. miss mister dr. doctor captain major corporal sergeant colonel lieutenant
    general private father reverend sister brother uncle aunt sir lady lord professor nurse
    judge officer madame coach chief"""
)
# Surname particles: "Louie De Palma" has the surname "De Palma".
PARTICLES = _wordset("de del della di da van von la le du st. mac ten ter")
NICKNAME_ENDINGS = ("ie", "y")  # "Ralph" -> "Ralphie": every first name's diminutives


def _name_score(original: str, candidate: str) -> float:
    a, b = original.lower(), candidate.lower()
    score = difflib.SequenceMatcher(None, a, b).ratio()
    return score + 0.15 * (a[-1:] == b[-1:]) + 0.1 * (a[:2] == b[:2])


def echo_name(
    original: str,
    pool: Sequence[str],
    suffixes: Sequence[str],
    used: set[str],
    rng: random.Random,
    any_initial: bool = False,
) -> str:
    """An in-world name that keeps an echo of the original (same initial, similar sound);
    `any_initial` lets a surname pool without that initial give its closest-sounding name."""
    initial = original[:1].lower()
    free = [n for n in pool if n.lower() not in used]
    candidates = [n for n in free if n[:1].lower() == initial] or (free if any_initial else [])
    if candidates:
        jitter = {name: rng.random() * 0.05 for name in candidates}
        return max(candidates, key=lambda n: (_name_score(original, n) + jitter[n], n))
    stem = original[:3] if len(original) > 3 else original
    for extra in range(1, 10):
        for suffix in suffixes:
            name = sentence(stem.lower() + suffix * extra)
            if name.lower() not in used:
                return name
    return f"{original}-{rng.randrange(100, 1000)}"


@dataclass(frozen=True)
class _Forms:
    """The name words of one character's aliases, by kind."""

    surnames: tuple[str, ...]
    given: tuple[str, ...]  # other given names and nicknames ("Ed", "Ralphie", "Hawk")


def _name_words(words: Sequence[str]) -> list[str]:
    return [word for word in words if word[:1].isupper()]


def _surname_of(names: Sequence[str]) -> tuple[str, list[str]]:
    """(surname, given names) of the capitalised words of a full name."""
    if len(names) >= 2 and names[-2].lower() in PARTICLES:
        return f"{names[-2]} {names[-1]}", list(names[:-2])
    return names[-1], list(names[:-1])


def _split_title(alias: str) -> tuple[str, list[str]]:
    words = alias.split()
    if len(words) > 1 and words[0].lower() in TITLES:
        return words[0], words[1:]
    return "", words


def _explicit_surnames(show: episode_pb2.Show) -> list[str]:
    """Surnames the aliases make plain: the last name of a full name, the name after a title."""
    names_of_cast = {c.name for c in show.characters}
    found: list[str] = []
    for character in show.characters:
        for alias in character.aliases:
            title, words = _split_title(alias)
            names = _name_words(words)
            if len(names) >= 2:
                found.append(_surname_of(names)[0])
            elif names and title and names[0] not in names_of_cast:
                found.append(names[0])
    return list(dict.fromkeys(found))


def _forms(character: episode_pb2.Character, surnames: Iterable[str]) -> _Forms:
    known = set(surnames)
    own_surnames: list[str] = []
    given: list[str] = []
    for alias in character.aliases:
        title, words = _split_title(alias)
        names = _name_words(words)
        if not names:
            continue
        if len(names) >= 2 or (title and names[0] in known):
            surname, first = _surname_of(names) if len(names) >= 2 else (names[0], [])
            own_surnames.append(surname)
            given.extend(first)
        elif names[0] in known:
            own_surnames.append(names[0])
        else:
            given.append(names[0])
    given = [g for g in dict.fromkeys(given) if g != character.name and g not in known]
    return _Forms(tuple(dict.fromkeys(own_surnames)), tuple(given))


def _nickname(original_first: str, new_first: str, nickname: str) -> str | None:
    """A nickname made from the first name keeps its shape on the new one ("Ralphie" of "Ralph"
    -> "Rolfie" of "Rolf", "Hawk" of "Hawkeye" -> "Hal" of "Hale"); None when unrelated."""
    old, nick = original_first.lower(), nickname.lower()
    if nick.startswith(old):
        ending = nickname[len(original_first) :]
        word, _, rest = ending.partition(" ")
        if re.fullmatch(r"([b-df-hj-np-tv-z])?(ie|y)", word):  # "Ralphie", "Sammy", "Freddie"
            stem = (
                new_first[:-1] if new_first[-1:] in "aeiouy" and len(new_first) > 3 else new_first
            )
            return f"{stem}ie {rest}".strip()
        return new_first + ending
    if old.startswith(nick):
        return new_first[: max(2, min(len(new_first) - 1, len(nickname)))]
    shared = len(_common_prefix(old, nick))
    if shared >= 3:
        base = new_first.rstrip("aeiouy") if len(new_first) > 3 else new_first
        return base + nickname[shared:]
    return None


def _common_prefix(a: str, b: str) -> str:
    size = 0
    while size < min(len(a), len(b)) and a[size] == b[size]:
        size += 1
    return a[:size]


@dataclass(frozen=True)
class WorldNames:
    """Original name word -> its new-world word, for one show in one setting."""

    words: Mapping[str, str]  # "Lucy" -> "Luna", "Ricardo" -> "Rivera", "De Palma" -> "Dorsey"
    first_names: Mapping[str, str]  # character name -> new name
    _pattern: re.Pattern[str] | None
    _variants: Mapping[str, str]

    def apply(self, text: str) -> str:
        """`text` with every original name (any form of it, also in capitals) renamed."""
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: self._variants[m.group(0)], text)

    @property
    def originals(self) -> tuple[str, ...]:
        """Every original name word (what must never reach the new world)."""
        return tuple(self.words)


def _build(words: Mapping[str, str], first_names: Mapping[str, str]) -> WorldNames:
    variants: dict[str, str] = {}
    for original, new in first_names.items():
        for ending in NICKNAME_ENDINGS:
            variants.setdefault(original + ending, new)
    for original, new in words.items():
        variants[original] = new
    for original, new in list(variants.items()):
        variants.setdefault(original.upper(), new.upper())
    ordered = sorted(variants, key=lambda v: (-len(v), v))
    pattern = (
        re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, ordered)) + r")(?!\w)")
        if ordered
        else None
    )
    return WorldNames(
        words=MappingProxyType(dict(words)),
        first_names=MappingProxyType(dict(first_names)),
        _pattern=pattern,
        _variants=MappingProxyType(variants),
    )


@lru_cache(maxsize=256)
def _world_names(show_bytes: bytes, setting_bytes: bytes) -> WorldNames:
    show = episode_pb2.Show.FromString(show_bytes)
    setting = episode_pb2.Setting.FromString(setting_bytes)
    profile = catalog.setting_profile(setting)
    pool, suffixes = catalog.name_pool(profile.name_style)
    surnames_pool = catalog.surname_pool(profile.name_style)
    rng = seeded_rng("cast", show.id, setting.id, setting.description)
    surnames = _explicit_surnames(show)
    forms = {c.name: _forms(c, surnames) for c in show.characters}
    used = {c.name.lower() for c in show.characters}
    for character in show.characters:
        for alias in character.aliases:
            used.update(word.lower() for word in _name_words(alias.split()))
    words: dict[str, str] = {}
    for character in show.characters:
        words[character.name] = echo_name(character.name, pool, suffixes, used, rng)
        used.add(words[character.name].lower())
    first_names = dict(words)
    for surname in dict.fromkeys(s for c in show.characters for s in forms[c.name].surnames):
        if surname in words:  # "Norton" is a name and the Nortons' surname: one new word
            continue
        words[surname] = echo_name(
            surname.replace(" ", ""), surnames_pool, (), used, rng, any_initial=True
        )
        used.add(words[surname].lower())
    for character in show.characters:
        for given in forms[character.name].given:
            if given in words:
                continue
            nickname = _nickname(character.name, first_names[character.name], given)
            if nickname is None or nickname.lower() in used:
                nickname = echo_name(given, pool, suffixes, used, rng)
            words[given] = nickname
            used.add(nickname.lower())
    return _build(words, first_names)


def world_names(show: episode_pb2.Show, setting: episode_pb2.Setting) -> WorldNames:
    """The names of `show`'s cast in `setting` (the same for every episode there)."""
    return _world_names(
        show.SerializeToString(deterministic=True), setting.SerializeToString(deterministic=True)
    )


def name_forms(character: episode_pb2.Character) -> tuple[str, ...]:
    """Every form of the character's name: the name, then each alias."""
    return tuple(dict.fromkeys(n for n in (character.name, *character.aliases) if n))


def renamer(renames: Mapping[str, str]) -> WorldNames:
    """Renames whole names (old -> new), e.g. the cast's new names to the names a writer chose."""
    changed = {old: new for old, new in renames.items() if old and new and old != new}
    return _build(changed, changed)
