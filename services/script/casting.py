"""The episode's cast: the show's, transformed for the setting, or the writer's edit of it.

A request may send a cast of its own (`cast`, `relationships`): renamed, re-roled, with characters
added or dropped. A character is linked to the classic show through `original_name`; what it
leaves empty comes from the default transform (procedural.transform_cast), and a rename follows it
everywhere: its catchphrases, tics and aliases, the relationships (the default ones, or those the
request sends under the old name), the outline's text and cards and the premise
(`Casting.to_world`). A character without an
original name is new and is taken as sent. Every error names its field (`cast[2].name`,
`relationships[0].to_character`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from doppelganger.v1 import episode_pb2
from services.script import procedural
from services.script.fields import InvalidRequest, check_text, check_texts

MIN_CAST, MAX_CAST = 2, 12
MAX_NAME_CHARS = 60
MAX_ROLE_CHARS = 120
MAX_ITEMS = 12  # traits, tics, catchphrases, aliases of one character
MAX_TRAIT_CHARS = 80
MAX_LINE_CHARS = 200  # a verbal tic or a catchphrase
MAX_RELATIONSHIPS = 40
MAX_KIND_CHARS = 60


@dataclass(frozen=True)
class Casting:
    """The episode's cast and relationships, and how text reaches their world."""

    cast: tuple[episode_pb2.Character, ...]
    relationships: tuple[episode_pb2.Relationship, ...]
    edited: bool  # the request sent a cast or relationships of its own
    _world: procedural.WorldNames
    _renames: procedural.WorldNames

    def to_world(self, text: str) -> str:
        """`text` with every original name (any form) and every renamed character renamed."""
        return self._renames.apply(self._world.apply(text))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(character.name for character in self.cast)


def _check_character(index: int, character: episode_pb2.Character, show: episode_pb2.Show) -> None:
    field = f"cast[{index}]"
    check_text(f"{field}.name", character.name, MAX_NAME_CHARS)
    if not any(ch.isalpha() for ch in character.name):
        raise InvalidRequest(f"{field}.name must contain a letter")
    check_text(f"{field}.original_name", character.original_name, MAX_NAME_CHARS, required=False)
    originals = {c.name for c in show.characters}
    if character.original_name and character.original_name not in originals:
        raise InvalidRequest(
            f"{field}.original_name {character.original_name[:60]!r} is not a character of "
            f"{show.title} ({', '.join(sorted(originals))}); leave it empty for a new character"
        )
    check_text(f"{field}.archetype", character.archetype, MAX_NAME_CHARS, required=False)
    check_text(f"{field}.role", character.role, MAX_ROLE_CHARS, required=False)
    check_texts(f"{field}.traits", character.traits, MAX_ITEMS, MAX_TRAIT_CHARS)
    check_texts(f"{field}.verbal_tics", character.verbal_tics, MAX_ITEMS, MAX_LINE_CHARS)
    check_texts(f"{field}.catchphrases", character.catchphrases, MAX_ITEMS, MAX_LINE_CHARS)
    check_texts(f"{field}.aliases", character.aliases, MAX_ITEMS, MAX_NAME_CHARS)


def check_cast(cast: Sequence[episode_pb2.Character], show: episode_pb2.Show) -> None:
    """Limits, unique names (case-insensitively), one character per original."""
    if not MIN_CAST <= len(cast) <= MAX_CAST:
        raise InvalidRequest(f"cast must have {MIN_CAST}-{MAX_CAST} characters (got {len(cast)})")
    names: dict[str, int] = {}
    originals: dict[str, int] = {}
    for index, character in enumerate(cast):
        _check_character(index, character, show)
        key = character.name.strip().lower()
        if key in names:
            raise InvalidRequest(
                f"cast[{index}].name {character.name.strip()!r} is already the name of "
                f"cast[{names[key]}]; names must be unique (case-insensitively)"
            )
        names[key] = index
        if character.original_name:
            if character.original_name in originals:
                raise InvalidRequest(
                    f"cast[{index}].original_name {character.original_name!r} is already "
                    f"cast[{originals[character.original_name]}]'s"
                )
            originals[character.original_name] = index


def check_relationships(
    relationships: Sequence[episode_pb2.Relationship], names: Sequence[str]
) -> None:
    """Both ends name a character of the cast; the kind is said."""
    if len(relationships) > MAX_RELATIONSHIPS:
        raise InvalidRequest(
            f"relationships has {len(relationships)} items; at most {MAX_RELATIONSHIPS}"
        )
    known = set(names)
    for index, relationship in enumerate(relationships):
        for end in ("from_character", "to_character"):
            name = getattr(relationship, end)
            if name not in known:
                raise InvalidRequest(
                    f"relationships[{index}].{end} {name[:60]!r} is not a character of the "
                    f"cast ({', '.join(names)})"
                )
        check_text(f"relationships[{index}].kind", relationship.kind, MAX_KIND_CHARS)


def _merge(
    sent: episode_pb2.Character, base: episode_pb2.Character | None
) -> episode_pb2.Character:
    """The sent character over its default (fields it leaves empty are the default's)."""
    merged = episode_pb2.Character()
    if base is not None:
        merged.CopyFrom(base)
    merged.name = sent.name.strip()
    merged.original_name = sent.original_name
    for field in ("archetype", "role"):
        if getattr(sent, field).strip():
            setattr(merged, field, getattr(sent, field).strip())
    for field in ("traits", "verbal_tics", "catchphrases", "aliases"):
        values = [value.strip() for value in getattr(sent, field)]
        if values:
            getattr(merged, field)[:] = values
    return merged


def resolve_cast(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character] = (),
    relationships: Sequence[episode_pb2.Relationship] = (),
) -> Casting:
    """The episode's cast: the default transform, or the request's edit of it (validated)."""
    default_cast, default_links = procedural.transform_cast(show, setting)
    world = procedural.world_names(show, setting)
    if not cast:
        names = [c.name for c in default_cast]
        check_relationships(relationships, names)
        links = list(relationships) or default_links
        return Casting(tuple(default_cast), tuple(links), bool(relationships), world, _none())
    check_cast(cast, show)
    by_original = {c.original_name: c for c in default_cast}
    renames = {
        by_original[c.original_name].name: c.name.strip()
        for c in cast
        if c.original_name in by_original
    }
    renamer = procedural.renamer(renames)
    merged = []
    for sent in cast:
        character = _merge(sent, by_original.get(sent.original_name))
        for field in ("verbal_tics", "catchphrases", "aliases"):
            values = [renamer.apply(world.apply(v)) for v in getattr(character, field)]
            getattr(character, field)[:] = values
        merged.append(character)
    names = [c.name for c in merged]
    # A rename follows the character into the relationships, sent ones too (an edited proposal
    # renames the cast and leaves its relationships naming the old names).
    links = [
        episode_pb2.Relationship(
            from_character=renames.get(r.from_character, r.from_character),
            to_character=renames.get(r.to_character, r.to_character),
            kind=r.kind,
        )
        for r in (relationships or default_links)
    ]
    if relationships:
        check_relationships(links, names)
    else:
        links = [r for r in links if r.from_character in names and r.to_character in names]
    return Casting(tuple(merged), tuple(links), True, world, renamer)


def _none() -> procedural.WorldNames:
    return procedural.renamer({})
