"""The cast transform: the show's characters renamed and re-roled for the setting.

A new name keeps an echo of the old one (same initial, similar sound); roles come from the
setting's profile by archetype; catchphrases swap their words for the setting's lexicon. The cast
depends on the show and the setting only, so Lucy is the same person in every Mars episode.
"""

from __future__ import annotations

import difflib
import random
import re
from collections.abc import Mapping, Sequence

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.catalog import SettingProfile
from services.script.procedural._grammar import CATCHPHRASE_SWAPS
from services.script.procedural._text import seeded_rng, sentence


def _name_score(original: str, candidate: str) -> float:
    a, b = original.lower(), candidate.lower()
    score = difflib.SequenceMatcher(None, a, b).ratio()
    return score + 0.15 * (a[-1:] == b[-1:]) + 0.1 * (a[:2] == b[:2])


def _echo_name(
    original: str, pool: Sequence[str], suffixes: Sequence[str], used: set[str], rng: random.Random
) -> str:
    """An in-world name that keeps an echo of the original (same initial, similar sound)."""
    initial = original[:1].lower()
    candidates = [n for n in pool if n[:1].lower() == initial and n.lower() not in used]
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


def _assign_roles(show: episode_pb2.Show, profile: SettingProfile) -> list[str]:
    taken: set[str] = set()
    roles = []
    for character in show.characters:
        family = catalog.archetype_family(character.archetype)
        options = [*profile.roles.get(family, ()), *profile.spare_roles]
        role = next((r for r in options if r not in taken), None)
        if role is None:
            role = f"assistant {options[0]}" if options else "regular"
        taken.add(role)
        roles.append(role)
    return roles


def _rename(text: str, renames: Mapping[str, str]) -> str:
    for original, new in renames.items():
        text = re.sub(rf"\b{re.escape(original)}(?:ie|y)?\b", new, text)
    return text


def _swap_words(text: str, lexicon: Mapping[str, str]) -> str:
    """'To the moon, Alice!' on Mars -> 'To Earth, Alice!' (before renaming)."""
    for word, key in CATCHPHRASE_SWAPS.items():
        value = lexicon.get(key)
        if not value:
            continue
        owns_article = value.split()[0].lower() in ("the", "a", "an") or value[:1].isupper()
        pattern = rf"\b(?:(the|this|a|an)\s+)?{re.escape(word)}\b"

        def replace(match: re.Match[str], value: str = value, owns: bool = owns_article) -> str:
            article = match.group(1)
            return value if owns or not article else f"{article} {value}"

        text = re.sub(pattern, replace, text, flags=re.IGNORECASE)
    return text


def transform_cast(
    show: episode_pb2.Show, setting: episode_pb2.Setting, seed: int
) -> tuple[list[episode_pb2.Character], list[episode_pb2.Relationship]]:
    """The show's characters renamed and re-roled for the setting, with their relationships.

    The cast depends on the show and the setting only, not on the seed: Lucy is the same person in
    every Mars episode.
    """
    profile = catalog.setting_profile(setting)
    pool, suffixes = catalog.name_pool(profile.name_style)
    rng = seeded_rng("cast", show.id, setting.id, setting.description)
    used = {character.name.lower() for character in show.characters}
    renames: dict[str, str] = {}
    for character in show.characters:
        renames[character.name] = _echo_name(character.name, pool, suffixes, used, rng)
        used.add(renames[character.name].lower())
    cast = [
        episode_pb2.Character(
            name=renames[c.name],
            original_name=c.name,
            archetype=c.archetype,
            role=role,
            traits=list(c.traits),
            verbal_tics=[_rename(tic, renames) for tic in c.verbal_tics],
            catchphrases=[
                _rename(_swap_words(p, profile.lexicon), renames) for p in c.catchphrases
            ],
        )
        for c, role in zip(show.characters, _assign_roles(show, profile), strict=True)
    ]
    relationships = [
        episode_pb2.Relationship(
            from_character=renames.get(r.from_character, r.from_character),
            to_character=renames.get(r.to_character, r.to_character),
            kind=r.kind,
        )
        for r in show.relationships
    ]
    return cast, relationships
