"""The bundled catalog: shows, settings, humour patterns, free-text settings."""

from __future__ import annotations

import re
import string

import pytest

from services.script import catalog


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


# ---------------------------------------------------------------------------------------------
# The procedural writer's grammar (lines.json)

_SLOT_NAMES = (
    "me you other lead partner b1 b2 runner prop b_prop runner_prop want b_issue runner_gag "
    "vocab vocab2 my_role your_role focus other_prop PROP B_PROP DRINK OTHER B_issue Prop "
    "X Y A B show setting_lower role"  # the last three: the logline only
    " elements setup state element"  # the premise's elements and the scene cards' actions
    " memory Memory"  # a season's callback to a fact of the series bible
)
SLOTS = set(catalog.LEXICON_KEYS) | set(_SLOT_NAMES.split(" "))
STAGES = {
    "inciting", "scheme", "complication", "escalation", "climax",
    "spark", "friction", "b-escalation", "cold", "tag",
}  # fmt: skip


def _templates(node: object) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [t for key, value in node.items() if key != "_comment" for t in _templates(value)]
    if isinstance(node, list):
        return [t for item in node for t in _templates(item)]
    return []


def _normalised(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())


def test_every_template_uses_only_known_slots() -> None:
    grammar = catalog.writer_grammar()
    texts = _templates({k: v for k, v in grammar.items() if k != "catchphrase_swaps"})
    assert len(texts) > 500
    for text in texts:
        fields = {name for _, name, _, _ in string.Formatter().parse(text) if name}
        assert fields <= SLOTS, (text, fields - SLOTS)


def test_the_grammar_covers_every_stage_and_archetype() -> None:
    lines = catalog.writer_grammar()["lines"]
    assert set(lines["openers"]) == STAGES and set(lines["develop"]) == STAGES
    assert all(len(options) >= 8 for options in lines["develop"].values())
    assert set(lines["reactions"]) == set(catalog.ARCHETYPES)
    assert all(len(options) >= 10 for options in lines["reactions"].values())
    for pool in ("objections", "banter", "arrivals"):
        assert len(lines[pool]) >= 20, pool


def test_no_dialogue_template_is_in_two_pools() -> None:
    """The line plan deals each pool's templates to scenes; a template in two pools could be
    dealt to two scenes."""
    grammar = catalog.writer_grammar()
    pools = {
        f"{name}:{key}": values
        for name, section in grammar["lines"].items()
        if isinstance(section, dict)
        for key, values in section.items()
    }
    pools.update({name: v for name, v in grammar["lines"].items() if isinstance(v, list)})
    pools["jokes"] = [
        text for pairs in grammar["jokes"].values() for pair in pairs for text in pair
    ]
    seen: dict[str, str] = {}
    for name, texts in pools.items():
        if name in ("lead_ins", "parentheticals", "punch_parentheticals"):
            continue  # lead-ins are the callback pattern's setups; parentheticals are not lines
        for text in dict.fromkeys(texts):
            assert seen.setdefault(text, name) == name, (text, seen[text], name)


def test_scene_marks_are_enough_and_never_a_characters_tic() -> None:
    marks = catalog.writer_grammar()["marks"]
    assert len(marks) >= 2 * 20 and len(set(marks)) == len(marks)
    assert all(mark.endswith(",") for mark in marks)
    tics = {
        _normalised(tic)
        for show in catalog.load_shows()
        for character in show.characters
        for tic in character.verbal_tics
    }
    assert not {_normalised(mark) for mark in marks} & tics


def test_toppers_land_on_a_word_and_fit_any_line() -> None:
    toppers = catalog.writer_grammar()["toppers"]
    assert len(toppers) >= 12
    for topper in toppers:
        assert topper[:1].isupper() and topper.endswith((".", "?", "!")), topper
        assert 1 <= len(topper.split()) <= 9, topper


def test_the_callback_setups_are_the_lead_ins() -> None:
    grammar = catalog.writer_grammar()
    setups = [setup for setup, _ in grammar["jokes"]["callback"]]
    assert setups == grammar["lines"]["lead_ins"]
