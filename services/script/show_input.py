"""A show of the user's own, checked before it is stored (CreateShow).

A `Show` here is the classic show's DNA, as the bundled ones in the catalog are: its cast with
archetypes from the catalog's vocabulary (catalog.ARCHETYPES), humour patterns from the pattern
library, relationships between its own characters, locations and the episode structure. Every
limit is one of the constants below, and every error names the field the way CreateShow's
request spells it (`show.characters[2].archetype`), so a writer can fix the file.

`check_show` returns the show as it is stored: text stripped, an empty id derived from the title,
`source` set. It is pure (no database): whether an id or title is already a user's show is the
library's question; whether it is a bundled show's is answered here.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.fields import InvalidRequest, check_text, check_texts

__all__ = [
    "MAX_CHARACTERS",
    "MAX_SHOW_BYTES",
    "MIN_CHARACTERS",
    "check_show",
    "show_slug",
]

MIN_CHARACTERS, MAX_CHARACTERS = 2, 12
MAX_ID_CHARS = 100
MAX_TITLE_CHARS = 200
MAX_PREMISE_CHARS = 2000
MAX_ERA_CHARS = 60
MAX_NAME_CHARS = 60
MAX_ROLE_CHARS = 120
MAX_ITEMS = 12  # traits, tics, catchphrases, aliases of one character
MAX_TRAIT_CHARS = 80
MAX_LINE_CHARS = 200  # a verbal tic or a catchphrase
MAX_RELATIONSHIPS = 40
MAX_KIND_CHARS = 60
MAX_LOCATIONS = 20
MAX_LOCATION_CHARS = 100
MIN_PATTERNS, MAX_PATTERNS = 1, 12
MIN_ACTS, MAX_ACTS = 1, 5
MAX_SHOW_BYTES = 64 * 1024  # the serialized Show
SOURCES = ("user", "analysed")

_SLUG_NOISE = re.compile(r"[^a-z0-9]+")
_SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,99}")


def show_slug(title: str) -> str:
    """The id a title gives: 'The Quibbles of Quarry Lane!' -> 'the-quibbles-of-quarry-lane'."""
    slug = _SLUG_NOISE.sub("-", title.lower()).strip("-")
    return slug[:MAX_ID_CHARS].rstrip("-")


def _check_character(index: int, character: episode_pb2.Character) -> None:
    field = f"show.characters[{index}]"
    name = check_text(f"{field}.name", character.name, MAX_NAME_CHARS)
    if not any(ch.isalpha() for ch in name):
        raise InvalidRequest(f"{field}.name must contain a letter")
    if character.original_name:
        raise InvalidRequest(
            f"{field}.original_name must be empty: a show's characters are the originals (the "
            "episode's cast links back to them)"
        )
    archetype = check_text(f"{field}.archetype", character.archetype, MAX_NAME_CHARS)
    if archetype.lower() not in catalog.ARCHETYPES:
        raise InvalidRequest(
            f"{field}.archetype {archetype[:40]!r} is not an archetype of the library; one of: "
            f"{', '.join(catalog.ARCHETYPES)}"
        )
    check_text(f"{field}.role", character.role, MAX_ROLE_CHARS, required=False)
    check_texts(f"{field}.traits", character.traits, MAX_ITEMS, MAX_TRAIT_CHARS)
    check_texts(f"{field}.verbal_tics", character.verbal_tics, MAX_ITEMS, MAX_LINE_CHARS)
    check_texts(f"{field}.catchphrases", character.catchphrases, MAX_ITEMS, MAX_LINE_CHARS)
    check_texts(f"{field}.aliases", character.aliases, MAX_ITEMS, MAX_NAME_CHARS)


def _check_cast(characters: Sequence[episode_pb2.Character]) -> dict[str, str]:
    """Limits and unique names; returns every name and alias (lower case) -> whose it is."""
    if not MIN_CHARACTERS <= len(characters) <= MAX_CHARACTERS:
        raise InvalidRequest(
            f"show.characters must have {MIN_CHARACTERS}-{MAX_CHARACTERS} characters "
            f"(got {len(characters)})"
        )
    names: dict[str, int] = {}
    for index, character in enumerate(characters):
        _check_character(index, character)
        key = character.name.strip().lower()
        if key in names:
            raise InvalidRequest(
                f"show.characters[{index}].name {character.name.strip()!r} is already the name "
                f"of show.characters[{names[key]}]; names must be unique"
            )
        names[key] = index
    owners: dict[str, str] = {key: characters[i].name.strip() for key, i in names.items()}
    for index, character in enumerate(characters):
        for position, alias in enumerate(character.aliases):
            key = alias.strip().lower()
            if key in names and names[key] != index:
                raise InvalidRequest(
                    f"show.characters[{index}].aliases[{position}] {alias.strip()!r} is the name "
                    f"of show.characters[{names[key]}]"
                )
    return owners


def _check_relationships(
    relationships: Sequence[episode_pb2.Relationship], owners: dict[str, str]
) -> None:
    if len(relationships) > MAX_RELATIONSHIPS:
        raise InvalidRequest(
            f"show.relationships has {len(relationships)} items; at most {MAX_RELATIONSHIPS}"
        )
    known = ", ".join(sorted(owners.values()))
    for index, relationship in enumerate(relationships):
        field = f"show.relationships[{index}]"
        ends = []
        for end in ("from_character", "to_character"):
            value = check_text(f"{field}.{end}", getattr(relationship, end), MAX_NAME_CHARS)
            if value.lower() not in owners:
                raise InvalidRequest(
                    f"{field}.{end} {value[:60]!r} is not a character of the show ({known})"
                )
            ends.append(value.lower())
        if ends[0] == ends[1]:
            raise InvalidRequest(f"{field}: a character cannot have a relationship with itself")
        check_text(f"{field}.kind", relationship.kind, MAX_KIND_CHARS)


def _check_patterns(patterns: Sequence[str]) -> list[str]:
    if not MIN_PATTERNS <= len(patterns) <= MAX_PATTERNS:
        raise InvalidRequest(
            f"show.humor_patterns must have {MIN_PATTERNS}-{MAX_PATTERNS} pattern ids "
            f"(got {len(patterns)})"
        )
    library = [pattern.id for pattern in catalog.load_patterns()]
    seen: set[str] = set()
    checked = []
    for index, raw in enumerate(patterns):
        pattern = raw.strip().lower()
        if pattern not in library:
            raise InvalidRequest(
                f"show.humor_patterns[{index}] {raw[:40]!r} is not a pattern of the library; "
                f"one of: {', '.join(library)}"
            )
        if pattern in seen:
            raise InvalidRequest(f"show.humor_patterns[{index}] {pattern!r} is listed twice")
        seen.add(pattern)
        checked.append(pattern)
    return checked


def _check_identity(show: episode_pb2.Show) -> tuple[str, str]:
    """(id, title): the title required, the id a slug (derived from the title when empty), and
    neither naming a bundled show."""
    title = check_text("show.title", show.title, MAX_TITLE_CHARS)
    show_id = show.id.strip() or show_slug(title)
    if len(show_id) > MAX_ID_CHARS or not _SLUG.fullmatch(show_id):
        raise InvalidRequest(
            f"show.id must be a slug of lowercase letters, digits and '-' (at most "
            f"{MAX_ID_CHARS}; got {show.id[:MAX_ID_CHARS]!r})"
        )
    for field, value in (("show.title", title), ("show.id", show_id)):
        bundled = catalog.find_show(value)
        if bundled is not None:
            raise InvalidRequest(
                f"{field} {value[:80]!r} names the bundled show {bundled.title!r}; choose "
                "another (bundled shows cannot be replaced)"
            )
    return show_id, title


def check_show(show: episode_pb2.Show, source: str = "user") -> episode_pb2.Show:
    """The show as stored, or InvalidRequest naming the field (see the module docstring)."""
    if show.ByteSize() > MAX_SHOW_BYTES:
        raise InvalidRequest(
            f"show must be at most {MAX_SHOW_BYTES} bytes serialized (got {show.ByteSize()})"
        )
    show_id, title = _check_identity(show)
    check_text("show.premise", show.premise, MAX_PREMISE_CHARS, required=False)
    check_text("show.era", show.era, MAX_ERA_CHARS, required=False)
    owners = _check_cast(show.characters)
    _check_relationships(show.relationships, owners)
    check_texts("show.locations", show.locations, MAX_LOCATIONS, MAX_LOCATION_CHARS)
    patterns = _check_patterns(show.humor_patterns)
    acts = show.structure.acts
    if not MIN_ACTS <= acts <= MAX_ACTS:
        raise InvalidRequest(f"show.structure.acts must be {MIN_ACTS}-{MAX_ACTS} (got {acts})")
    if source not in SOURCES:
        raise InvalidRequest(f"show.source must be one of {', '.join(SOURCES)} (got {source!r})")
    return _normalised(show, show_id, title, patterns, owners, source)


def _normalised(
    show: episode_pb2.Show,
    show_id: str,
    title: str,
    patterns: list[str],
    owners: dict[str, str],
    source: str,
) -> episode_pb2.Show:
    """Text stripped, archetypes lower case, relationships spelled as the characters are."""
    stored = episode_pb2.Show()
    stored.CopyFrom(show)
    stored.DiscardUnknownFields()  # what a newer client sent that this release cannot check
    stored.id, stored.title, stored.source = show_id, title, source
    stored.premise, stored.era = show.premise.strip(), show.era.strip()
    del stored.humor_patterns[:]
    stored.humor_patterns.extend(patterns)
    for character in stored.characters:
        character.name = character.name.strip()
        character.archetype = character.archetype.strip().lower()
        character.role = character.role.strip()
        for repeated in ("traits", "verbal_tics", "catchphrases", "aliases"):
            values = [value.strip() for value in getattr(character, repeated)]
            del getattr(character, repeated)[:]
            getattr(character, repeated).extend(values)
    for relationship in stored.relationships:
        relationship.from_character = owners[relationship.from_character.strip().lower()]
        relationship.to_character = owners[relationship.to_character.strip().lower()]
        relationship.kind = relationship.kind.strip()
    locations = [location.strip() for location in stored.locations]
    del stored.locations[:]
    stored.locations.extend(locations)
    return stored
