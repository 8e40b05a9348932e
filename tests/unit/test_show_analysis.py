"""The offline show analysis (show_analysis.py, transcript.py) on scripts written for the test and
on procedural episodes: the speaking cast, catchphrases, tics, forms of address, relationships,
locations, structure and humour patterns; the show it returns passes CreateShow's checks."""

from __future__ import annotations

import pytest

from services.scene.fountain import render_episode
from services.script.script_reader import ReadScript, ScriptReadError, read_fountain
from services.script.show_analysis import analyze_scripts
from services.script.show_input import check_show
from services.script.transcript import looks_like_transcript, read_transcript
from testkit import draft_episode

EPISODE = """Title: The Flour Incident

# COLD OPEN

INT. QUIBBLE BAKERY - SHOP FLOOR - DAY

Bertha kneads dough. Angus McGee leans on the counter.

BERTHA
Now look, Otto, I have a plan!

OTTO
Now look, nothing. Who's paying for the flour, honey?

MCGEE
Is there cake? I came for cake.

# ACT ONE

INT. PRUITT PARLOUR - DAY

BERTHA
Now look, we only need one cake. One perfect cake.

MRS. PRUITT
How vulgar. Frankly, Mr. Quibble, your sister is impossible.

OTTO
Who's paying for the flour, honey? Not me, honey.

BERTHA
Otto, I have a plan!

# ACT TWO

INT. QUIBBLE BAKERY - SHOP FLOOR - NIGHT

Otto trips over the flour sack and falls into the dough.

OTTO
I'm fine. I'm perfectly fine.

MCGEE
Is there cake? I came for cake.

BERTHA
Now look, it is a feature, not a mess.

MRS. PRUITT
Indeed. Frankly, Mr. Quibble, you are covered in flour.

OTTO
It is a feature, Mrs. Pruitt.

# TAG

EXT. QUIBBLE BAKERY - NIGHT

BERTHA
Now look, tomorrow we open on time.

OTTO
Who's paying for the flour, honey?
"""

TRANSCRIPT = """[Scene: Quibble Bakery, morning]
Bertha: Now look, Otto, I have a plan!
Otto: Who's paying for the flour?
(Otto sighs)
Bertha: Now look, trust me.
  It is a good plan.

[Scene: Pruitt Parlour]
Mrs. Pruitt: Frankly, this is vulgar.
Otto: Who's paying for the flour?
Bertha: Now look, Otto, I have a plan!
Bertha: Now look, one more time.
Extra: Delivery!
"""


def read(text: str) -> ReadScript:
    return read_fountain(text)


def test_a_hand_written_show_is_read_back() -> None:
    show, analysis = analyze_scripts([read(EPISODE)], "The Quibbles")
    names = [c.name for c in show.characters]
    assert names == ["Bertha", "Otto", "McGee", "Mrs. Pruitt"]  # most lines first, as spelled
    bertha, otto, mcgee, pruitt = show.characters
    assert "Otto, I have a plan!" in bertha.catchphrases
    assert "Now look," in bertha.verbal_tics
    assert "Who's paying for the flour, honey?" in otto.catchphrases
    assert "Is there cake? I came for cake." in mcgee.catchphrases
    assert "Frankly, Mr. Quibble," in pruitt.verbal_tics or pruitt.verbal_tics == []
    by_name = {c.name: c for c in analysis.characters}
    assert by_name["Bertha"].lines == 5 and by_name["Bertha"].scenes == 4
    assert "Mr. Quibble" in by_name["Otto"].forms_of_address
    assert "Mr. Quibble" in otto.aliases and "Quibble" in otto.aliases
    assert pruitt.archetype == "snob" and otto.archetype == "cynic"
    kinds = {(r.from_character, r.to_character): r.kind for r in show.relationships}
    assert kinds[("Otto", "Bertha")].startswith("romantic partner (calls them 'honey')")
    assert list(show.locations) == [
        "QUIBBLE BAKERY - SHOP FLOOR",
        "PRUITT PARLOUR",
        "QUIBBLE BAKERY",
    ]
    assert (show.structure.cold_open, show.structure.acts, show.structure.tag) == (True, 2, True)
    patterns = {p.pattern: p for p in analysis.humor_patterns}
    assert "slapstick" in patterns and "trips" in patterns["slapstick"].evidence
    assert "running-gag" in patterns
    assert analysis.scripts == 1 and analysis.scenes == 4
    assert check_show(show, "analysed").id == "the-quibbles"


def test_a_speaker_with_one_line_is_not_cast() -> None:
    text = EPISODE + "\nINT. STREET - DAY\n\nMAILMAN\nPackage!\n"
    show, analysis = analyze_scripts([read(text)], "Quibbles")
    assert "Mailman" not in [c.name for c in show.characters]
    assert any("MAILMAN (1)" in warning for warning in analysis.warnings)


def test_a_transcript_is_read_into_scenes() -> None:
    assert looks_like_transcript(TRANSCRIPT) and not looks_like_transcript(EPISODE)
    script = read_transcript(TRANSCRIPT)
    assert [s.slugline.location for s in script.scenes] == ["QUIBBLE BAKERY", "PRUITT PARLOUR"]
    speech = [e.dialogue for e in script.scenes[0].elements if e.HasField("dialogue")]
    assert speech[2].text == "Now look, trust me. It is a good plan."  # runs on
    assert script.scenes[0].elements[2].action.text == "Otto sighs"
    show, analysis = analyze_scripts([script], "Quibbles")
    assert [c.name for c in show.characters] == ["Bertha", "Otto"]
    assert show.characters[0].catchphrases[0] == "Otto, I have a plan!"  # after her tic
    assert show.characters[1].catchphrases == ["Who's paying for the flour?"]
    assert any("no act sections" in warning for warning in analysis.warnings)
    with pytest.raises(ScriptReadError, match="NAME: line"):
        read_transcript("Just some prose.\nNothing said.")


def test_joke_notes_name_the_patterns() -> None:
    noted = EPISODE.replace(
        "Is there cake? I came for cake.\n\n# ACT ONE",
        "Is there cake? I came for cake. [[joke s0-j1: non-sequitur, punchline, score 0.7]]"
        "\n\n# ACT ONE",
    )
    _, analysis = analyze_scripts([read(noted)], "Quibbles")
    assert [(p.pattern, p.score) for p in analysis.humor_patterns] == [("non-sequitur", 1.0)]


async def test_three_procedural_episodes_give_back_their_cast_and_voices() -> None:
    """The offline half of the acceptance (the service test runs it through the stack)."""
    episodes = [
        (await draft_episode("I Love Lucy", "mars-colony-2157", seed))[1] for seed in (1, 2, 3)
    ]
    scripts = [read_fountain(render_episode(episode)) for episode in episodes]
    show, analysis = analyze_scripts(scripts, "Lucy on Mars")
    speakers = {
        e.dialogue.character
        for episode in episodes
        for scene in episode.scenes
        for e in scene.elements
        if e.HasField("dialogue")
    }
    assert {c.name for c in show.characters} == speakers == {c.name for c in episodes[0].cast}
    cast = {c.name: c for c in episodes[0].cast}
    for character in show.characters:
        tics = [t.rstrip(",.!") for t in cast[character.name].verbal_tics]
        assert any(t.rstrip(",.!") in tics for t in character.verbal_tics), character
        assert character.catchphrases, character.name  # lines they say in two scenes or more
        # Signature catchphrases recur from episode to episode: each is found here.
        found = " | ".join(character.catchphrases).lower()
        assert any(p.lower() in found for p in cast[character.name].catchphrases), character.name
    assert (show.structure.cold_open, show.structure.acts, show.structure.tag) == (False, 2, True)
    assert set(show.locations) == {s.slugline.location for e in episodes for s in e.scenes}
    assert analysis.scripts == 3 and analysis.scenes == sum(len(e.scenes) for e in episodes)
    check_show(show, "analysed")
