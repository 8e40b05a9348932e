"""Every form of a classic name renamed: first names, family surnames, titles, nicknames."""

from __future__ import annotations

import re

import pytest

from doppelganger.v1 import episode_pb2
from services.script import catalog, procedural


def _cast(show_id: str, setting: str) -> dict[str, episode_pb2.Character]:
    show = catalog.find_show(show_id)
    assert show is not None
    cast, _ = procedural.transform_cast(show, catalog.resolve_setting(setting))
    return {character.original_name: character for character in cast}


def test_every_catalog_character_lists_the_other_forms_of_its_name() -> None:
    for show in catalog.load_shows():
        for character in show.characters:
            assert character.aliases, (show.id, character.name)
            assert len(set(character.aliases)) == len(character.aliases)
            assert character.name not in character.aliases


def test_a_family_keeps_one_new_surname_and_titles_stay() -> None:
    cast = _cast("i-love-lucy", "mars-colony-2157")
    lucy, ricky, ethel, fred = (cast[name] for name in ("Lucy", "Ricky", "Ethel", "Fred"))
    surname = ricky.aliases[1]
    assert lucy.aliases[:3] == [f"{lucy.name} {surname}", surname, f"Mrs. {surname}"]
    assert ricky.aliases == [f"{ricky.name} {surname}", surname, f"Mr. {surname}"]
    mertz = ethel.aliases[1]
    assert fred.aliases[:3] == [f"{fred.name} {mertz}", mertz, f"Mr. {mertz}"]
    assert f"{fred.name} {mertz}, you old cheapskate!" in ethel.catchphrases
    assert surname != mertz


def test_title_and_surname_forms_in_tics_are_renamed() -> None:
    cast = _cast("frasier", "victorian-london")
    crane = cast["Frasier"].aliases[1]  # "Dr. <new surname>"
    assert crane.startswith("Dr. ") and crane != "Dr. Crane"
    assert f"Oh, {crane}." in cast["Daphne"].verbal_tics
    assert cast["Niles"].aliases[1] == crane  # brothers: one surname


def test_a_name_that_is_a_surname_is_one_word_for_the_family() -> None:
    cast = _cast("the-honeymooners", "a 1920s speakeasy")
    norton, trixie = cast["Norton"], cast["Trixie"]
    assert trixie.aliases == [f"{trixie.name} {norton.name}", f"Mrs. {norton.name}"]
    assert norton.aliases[0].endswith(f" {norton.name}")


def test_nicknames_keep_their_shape() -> None:
    cast = _cast("cheers", "enchanted-forest")
    sam = cast["Sam"]
    assert sam.aliases[-1].endswith("ie") and sam.aliases[-1][:3] == sam.name[:3]
    ralph = _cast("the-honeymooners", "wild-west-town")["Ralph"]
    assert ralph.aliases[-1].endswith(" boy")


@pytest.mark.parametrize("setting", ["mars-colony-2157", "enchanted-forest", "a rose garden"])
def test_no_original_name_in_the_cast_data(setting: str) -> None:
    for show in catalog.load_shows():
        originals = [form for c in show.characters for form in (c.name, *c.aliases)]
        cast, relationships = procedural.transform_cast(show, catalog.resolve_setting(setting))
        text = "\n".join(
            [
                *(
                    f"{c.name} {c.role} {' '.join([*c.catchphrases, *c.verbal_tics, *c.aliases])}"
                    for c in cast
                ),
                *(f"{r.from_character} {r.to_character}" for r in relationships),
            ]
        )
        leaks = [n for n in originals if re.search(rf"(?<!\w){re.escape(n)}(?!\w)", text, re.I)]
        assert not leaks, (show.id, setting, leaks)


def test_no_role_carries_an_original_name() -> None:
    """The enchanted forest has a rose-garden sprite; Rose's successor is never given it."""
    show = catalog.find_show("the-golden-girls")
    assert show is not None
    cast, _ = procedural.transform_cast(show, catalog.resolve_setting("enchanted-forest"))
    assert all("rose" not in character.role.lower() for character in cast)


def test_world_names_rename_text_in_any_case_and_the_renamer_follows_edits() -> None:
    show = catalog.find_show("seinfeld")
    assert show is not None
    setting = catalog.resolve_setting("ancient-rome")
    names = procedural.world_names(show, setting)
    jerry = names.first_names["Jerry"]
    text = names.apply("JERRY! Jerry Seinfeld and Cosmo Kramer owe Costanza.")
    assert "Jerry" not in text and "JERRY" not in text and "Kramer" not in text
    assert text.startswith(f"{jerry.upper()}!")
    renamed = procedural.renamer({jerry: "Maximus"}).apply(text)
    assert renamed.startswith("MAXIMUS!") and f"Maximus {names.words['Seinfeld']}" in renamed
    assert procedural.world_names(show, setting) is names  # kept, not rebuilt
