"""The bundled catalog: shows, settings, humour patterns, free-text settings."""

from __future__ import annotations

import pytest

from shared import catalog


def test_catalog_has_at_least_eight_fully_specified_shows() -> None:
    shows = catalog.load_shows()
    assert len(shows) >= 8
    assert len({show.id for show in shows}) == len(shows)
    pattern_ids = {pattern.id for pattern in catalog.load_patterns()}
    for show in shows:
        assert show.title and show.premise and show.era, show.id
        assert len(show.characters) >= 4, show.id
        assert show.structure.acts >= 1, show.id
        assert len(show.locations) >= 3, show.id
        assert set(show.humor_patterns) <= pattern_ids, show.id
        names = {character.name for character in show.characters}
        assert len(names) == len(show.characters), show.id
        for character in show.characters:
            assert character.archetype in catalog.ARCHETYPES, (show.id, character.name)
            assert character.traits and character.verbal_tics and character.catchphrases
        for relationship in show.relationships:
            assert {relationship.from_character, relationship.to_character} <= names
            assert relationship.kind


def test_catalog_has_at_least_eight_settings_with_profiles() -> None:
    settings = catalog.load_settings()
    assert len(settings) >= 8
    for setting in settings:
        assert setting.name and setting.description, setting.id
        assert len(setting.vocabulary) >= 8, setting.id
        assert len(setting.props) >= 8, setting.id
        assert len(setting.locations) >= 6, setting.id
        assert all(location == location.upper() for location in setting.locations)
        profile = catalog.setting_profile(setting)
        assert set(catalog.ARCHETYPES) <= set(profile.roles), setting.id
        assert all(profile.roles[family] for family in catalog.ARCHETYPES)
        assert set(catalog.LEXICON_KEYS) <= set(profile.lexicon), setting.id
        assert profile.ambience, setting.id
        assert profile.exteriors <= set(setting.locations), setting.id


def test_pattern_library_has_twenty_complete_patterns() -> None:
    patterns = catalog.load_patterns()
    assert len(patterns) >= 20
    assert len({pattern.id for pattern in patterns}) == len(patterns)
    for pattern in patterns:
        assert pattern.name, pattern.id
        for text in (pattern.setup, pattern.escalation, pattern.payoff, pattern.timing):
            assert len(text) > 20, pattern.id
        assert pattern.archetypes and set(pattern.archetypes) <= set(catalog.ARCHETYPES)
    assert catalog.get_pattern("rule-of-three") is patterns[0]
    assert catalog.get_pattern("no-such-pattern") is None


@pytest.mark.parametrize(
    ("query", "show_id"),
    [
        ("i love lucy", "i-love-lucy"),
        ("I LOVE LUCY!", "i-love-lucy"),
        ("i-love-lucy", "i-love-lucy"),
        ("The Office", "the-office-us"),
        ("the office (US)", "the-office-us"),
        ("M*A*S*H", "mash"),
        ("mash", "mash"),
        ("Honeymooners", "the-honeymooners"),
        ("  the golden   girls ", "the-golden-girls"),
        ("Seinfeld", "seinfeld"),
    ],
)
def test_find_show_matches_ids_titles_and_aliases(query: str, show_id: str) -> None:
    show = catalog.find_show(query)
    assert show is not None
    assert show.id == show_id


def test_find_show_returns_none_for_unknown_shows() -> None:
    assert catalog.find_show("The Sopranos") is None
    assert catalog.find_show("") is None


def test_loaders_return_copies() -> None:
    show = catalog.load_shows()[0]
    show.title = "Changed"
    show.characters[0].name = "Changed"
    assert catalog.load_shows()[0].title != "Changed"
    found = catalog.find_show(catalog.load_shows()[0].id)
    assert found is not None
    assert found.characters[0].name != "Changed"


@pytest.mark.parametrize(
    ("text", "setting_id"),
    [
        ("a Mars colony in 2157", "mars-colony-2157"),
        ("A Mars colony in 2157.", "mars-colony-2157"),
        ("mars-colony-2157", "mars-colony-2157"),
        ("Victorian London", "victorian-london"),
        ("an enchanted forest", "enchanted-forest"),
        ("The Wild West", "wild-west-town"),
    ],
)
def test_resolve_setting_finds_catalog_settings(text: str, setting_id: str) -> None:
    assert catalog.resolve_setting(text).id == setting_id


def test_free_text_setting_is_derived_from_its_words() -> None:
    text = "a haunted lighthouse off the coast of Maine"
    setting = catalog.resolve_setting(text)
    assert setting.id.startswith("custom-")
    assert len(setting.id) == len("custom-") + 12
    assert setting.name == text
    assert setting.description == text
    assert any(location.startswith("LIGHTHOUSE ") for location in setting.locations)
    assert len(setting.locations) >= 6
    assert all(location == location.upper() for location in setting.locations)
    assert "lighthouse" in setting.vocabulary
    assert "ghost" in setting.vocabulary  # the haunted-house theme matched
    assert setting.props
    assert catalog.resolve_setting(text) == setting
    assert catalog.resolve_setting("a haunted lighthouse off Cape Cod").id != setting.id


def test_free_text_setting_borrows_from_a_matching_catalog_setting() -> None:
    setting = catalog.resolve_setting("a Martian mining outpost")
    assert "OUTPOST COMMAND DECK" in setting.locations
    profile = catalog.setting_profile(setting)
    assert profile.name_style == "future"
    assert profile.lexicon["faraway"] == "Earth"
    assert "MARTIAN MINING OUTPOST" in profile.exteriors


def test_free_text_setting_without_a_theme_falls_back_to_generic_places() -> None:
    setting = catalog.resolve_setting("a bakery")
    assert "BAKERY KITCHEN" in setting.locations
    profile = catalog.setting_profile(setting)
    assert profile.roles["straight man"][0] == "bakery manager"
    assert profile.lexicon["boss"] == "the boss"


def test_free_text_name_is_trimmed() -> None:
    text = "a " + "very " * 40 + "long place"
    setting = catalog.resolve_setting(text)
    assert len(setting.name) <= 80
    assert setting.description == text


def test_blank_setting_text_is_rejected() -> None:
    with pytest.raises(ValueError, match="empty"):
        catalog.resolve_setting("   ")


def test_archetype_family_maps_descriptions() -> None:
    assert catalog.archetype_family("the exasperated straight man") == "straight man"
    assert catalog.archetype_family("SCHEMER") == "schemer"
    assert catalog.archetype_family("unknown") == "straight man"


def test_name_pool_falls_back_to_generic() -> None:
    assert catalog.name_pool("no-such-style") == catalog.name_pool("generic")
    names, suffixes = catalog.name_pool("future")
    assert "Luna" in names and suffixes
