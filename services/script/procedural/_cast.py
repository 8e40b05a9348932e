"""The cast transform: the show's characters renamed and re-roled for the setting.

Every form of a name is renamed (_names.py); roles come from the setting's profile by archetype
(never a role with an original name in it: no "rose-garden sprite" for Rose's successor);
catchphrases swap their words for the setting's lexicon. The cast depends on the show and the
setting only, so Lucy is the same person in every Mars episode.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.catalog import SettingProfile
from services.script.procedural._grammar import CATCHPHRASE_SWAPS
from services.script.procedural._names import WorldNames, world_names


def _mentions_any(text: str, words: Collection[str]) -> bool:
    lowered = text.lower()
    return any(re.search(rf"(?<!\w){re.escape(w.lower())}(?!\w)", lowered) for w in words)


def _assign_roles(
    show: episode_pb2.Show, profile: SettingProfile, forbidden: Collection[str]
) -> list[str]:
    taken: set[str] = set()
    roles = []
    for character in show.characters:
        family = catalog.archetype_family(character.archetype)
        options = [
            r
            for r in (*profile.roles.get(family, ()), *profile.spare_roles)
            if not _mentions_any(r, forbidden)
        ]
        role = next((r for r in options if r not in taken), None)
        if role is None:
            role = f"assistant {options[0]}" if options else "regular"
        taken.add(role)
        roles.append(role)
    return roles


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
    show: episode_pb2.Show, setting: episode_pb2.Setting, seed: int = 0
) -> tuple[list[episode_pb2.Character], list[episode_pb2.Relationship]]:
    """The show's characters renamed and re-roled for the setting, with their relationships.

    The cast depends on the show and the setting only, not on the seed (kept for callers that
    pass it): Lucy is the same person in every Mars episode.
    """
    profile = catalog.setting_profile(setting)
    names = world_names(show, setting)
    cast = [
        episode_pb2.Character(
            name=names.first_names[c.name],
            original_name=c.name,
            archetype=c.archetype,
            role=role,
            traits=list(c.traits),
            verbal_tics=[names.apply(tic) for tic in c.verbal_tics],
            catchphrases=[names.apply(_swap_words(p, profile.lexicon)) for p in c.catchphrases],
            aliases=[names.apply(alias) for alias in c.aliases],
        )
        for c, role in zip(
            show.characters, _assign_roles(show, profile, _forbidden(show, names)), strict=True
        )
    ]
    relationships = [
        episode_pb2.Relationship(
            from_character=names.first_names.get(r.from_character, r.from_character),
            to_character=names.first_names.get(r.to_character, r.to_character),
            kind=r.kind,
        )
        for r in show.relationships
    ]
    return cast, relationships


def _forbidden(show: episode_pb2.Show, names: WorldNames) -> set[str]:
    """Every original name and alias (what no role may contain)."""
    words = set(names.originals)
    for character in show.characters:
        words.add(character.name)
        words.update(character.aliases)
    return words
