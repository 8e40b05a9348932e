"""CreateShow's checks (show_input.py): a made-up show passes and is normalised; every broken
field is refused with its path named; the show file format round-trips through JSON and YAML."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import json_format

from doppel.show import ShowFileError, read_show, show_from_text, show_to_text
from doppelganger.v1 import episode_pb2
from services.script.fields import InvalidRequest
from services.script.show_input import MAX_SHOW_BYTES, check_show, show_slug


def made_up_show() -> episode_pb2.Show:
    return episode_pb2.Show(
        title="The Quibbles of Quarry Lane",
        premise="Bertha Quibble runs a failing bakery with her brother Otto.",
        era="1962-1968",
        characters=[
            episode_pb2.Character(
                name="Bertha",
                archetype="schemer",
                aliases=["Bertha Quibble", "Quibble"],
                catchphrases=["Otto, I have a plan!"],
                verbal_tics=["Now look,"],
            ),
            episode_pb2.Character(
                name="Otto",
                archetype="Straight Man ",
                aliases=["Otto Quibble", "Mr. Quibble"],
            ),
            episode_pb2.Character(name="Mrs. Pruitt", archetype="snob"),
        ],
        relationships=[
            episode_pb2.Relationship(from_character="bertha", to_character="Otto", kind="sister"),
        ],
        locations=["QUIBBLE BAKERY - SHOP FLOOR", "PRUITT PARLOUR"],
        humor_patterns=["scheme-backfire", "Slapstick"],
        structure=episode_pb2.EpisodeStructure(cold_open=True, acts=2, tag=True),
    )


def test_a_made_up_show_passes_and_is_normalised() -> None:
    show = check_show(made_up_show())
    assert show.id == "the-quibbles-of-quarry-lane" and show.source == "user"
    assert show.characters[1].archetype == "straight man"
    assert list(show.humor_patterns) == ["scheme-backfire", "slapstick"]
    assert show.relationships[0].from_character == "Bertha"  # spelled as the character is


def broken(change: str) -> episode_pb2.Show:
    show = made_up_show()
    exec(change, {"show": show, "episode_pb2": episode_pb2})
    return show


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ("show.characters[2].archetype = 'wizard'", "show.characters[2].archetype"),
        ("show.characters[0].archetype = ''", "show.characters[0].archetype is required"),
        ("del show.characters[1:]", "show.characters must have 2-12"),
        ("show.characters[2].name = 'otto'", "show.characters[2].name"),
        ("show.characters[2].name = '!!'", "show.characters[2].name must contain a letter"),
        ("show.characters[1].aliases.append('Bertha')", "show.characters[1].aliases[2]"),
        ("show.characters[0].original_name = 'Lucy'", "show.characters[0].original_name"),
        ("show.characters[0].catchphrases.append('x' * 201)", "characters[0].catchphrases[1]"),
        ("show.relationships[0].to_character = 'Nobody'", "show.relationships[0].to_character"),
        ("show.relationships[0].to_character = 'Bertha'", "show.relationships[0]"),
        ("show.relationships[0].kind = ''", "show.relationships[0].kind"),
        ("show.humor_patterns.append('pratfall')", "show.humor_patterns[2]"),
        ("show.humor_patterns.append('slapstick')", "show.humor_patterns[2]"),
        ("del show.humor_patterns[:]", "show.humor_patterns must have 1-12"),
        ("show.structure.acts = 0", "show.structure.acts"),
        ("show.structure.acts = 6", "show.structure.acts"),
        ("show.title = ''", "show.title is required"),
        ("show.title = 'I Love Lucy'", "show.title"),
        ("show.id = 'seinfeld'", "show.id"),
        ("show.id = 'Not A Slug'", "show.id must be a slug"),
        ("show.premise = 'p' * 2001", "show.premise must be at most 2000"),
        ("show.locations.extend(['X'] * 20)", "show.locations has 22 items"),
        (
            "show.characters.extend([episode_pb2.Character(name=f'C{i}', archetype='cynic') "
            "for i in range(10)])",
            "show.characters must have 2-12",
        ),
    ],
)
def test_a_broken_field_is_named(change: str, named: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        check_show(broken(change))
    assert named in str(refused.value)


def test_the_whole_show_is_bounded() -> None:
    """Every field has its limit; the whole message too (fields this release does not know
    count, and are dropped from what is stored)."""
    show = made_up_show()
    payload = b"u" * (MAX_SHOW_BYTES + 1)
    unknown = bytes([0xFA, 0x06]) + _varint(len(payload)) + payload  # field 111, bytes
    show.MergeFromString(unknown)
    assert show.ByteSize() > MAX_SHOW_BYTES
    with pytest.raises(InvalidRequest, match=f"at most {MAX_SHOW_BYTES} bytes"):
        check_show(show)
    small = made_up_show()
    small.MergeFromString(bytes([0xFA, 0x06, 3]) + b"abc")
    assert check_show(small).ByteSize() == check_show(made_up_show()).ByteSize()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def test_slugs() -> None:
    assert show_slug("The Quibbles of Quarry Lane!") == "the-quibbles-of-quarry-lane"
    assert show_slug("  Ça va? ") == "a-va"


@pytest.mark.parametrize("suffix", [".json", ".yaml", ".yml"])
def test_the_show_file_round_trips(tmp_path: Path, suffix: str) -> None:
    show = check_show(made_up_show())
    path = tmp_path / f"show{suffix}"
    text = show_to_text(show, path)
    assert ("humor_patterns" in text) and ("humorPatterns" not in text)
    path.write_text(text, encoding="utf-8")
    assert read_show(path) == show


def test_proto3_json_names_are_read_too() -> None:
    show = check_show(made_up_show())
    camel = json_format.MessageToJson(show)  # lowerCamelCase: humorPatterns, verbalTics
    assert "humorPatterns" in camel
    assert show_from_text(camel, "show.json") == show


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("title: [unclosed", "neither JSON nor YAML"),
        ("- a list", "must hold one show"),
        ("title: T\nwizards: 3\n", "is not a Show"),
    ],
)
def test_a_file_that_is_no_show_is_refused(text: str, message: str) -> None:
    with pytest.raises(ShowFileError, match=message):
        show_from_text(text, "show.yaml")
