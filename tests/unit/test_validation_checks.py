"""The validator's craft checks, one by one: what each flags (scene, element, check id,
severity, the sub-score it lowers) and what it must leave alone."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2
from services.script.checks import SPECS, run_checks
from services.script.checks.address import pet_name
from services.script.checks.names import names_self, original_names
from services.script.checks.places import clashes
from services.script.checks.presence import movements
from services.script.validation import validate_episode
from tests.unit.craft_scripts import (
    CAST,
    EXT,
    INT,
    SETTING,
    SHOW,
    act,
    card,
    checks_of,
    episode,
    say,
    scene,
)

Severity = episode_pb2.Severity


def _found(ep: episode_pb2.Episode, check: str) -> list[tuple[int, int]]:
    return [(f.scene_index, f.element_index) for f in run_checks(ep) if f.check == check]


def _plain(*elements: episode_pb2.ScriptElement, **options: object) -> episode_pb2.Episode:
    return episode([scene(0, elements, **options)])  # type: ignore[arg-type]


def test_every_check_has_a_stable_id_and_a_documented_severity() -> None:
    severities = {spec.check: spec.severity for spec in SPECS}
    assert severities == {
        "self_naming": Severity.SEVERITY_WARNING,
        "original_name": Severity.SEVERITY_ERROR,
        "form_of_address": Severity.SEVERITY_WARNING,
        "speaks_before_entering": Severity.SEVERITY_WARNING,
        "speaks_after_leaving": Severity.SEVERITY_WARNING,
        "silent_presence": Severity.SEVERITY_WARNING,
        "heading_action": Severity.SEVERITY_WARNING,
        "time_of_day": Severity.SEVERITY_WARNING,
        "orphan_payoff": Severity.SEVERITY_WARNING,
        "missing_payoff": Severity.SEVERITY_WARNING,
    }
    assert all(0 < spec.penalty <= 0.1 for spec in SPECS)


# -- self-naming -------------------------------------------------------------------------------


def test_a_speaker_naming_themself_is_flagged_at_the_line() -> None:
    ep = _plain(
        say("Luna", "Ready?"),
        say("Echo", "The show starts in five minutes, and Echo and Fenn are still at war."),
    )
    assert _found(ep, "self_naming") == [(0, 1)]
    report = validate_episode(ep)
    issue = next(i for i in report.issues if i.check == "self_naming")
    assert issue.severity == Severity.SEVERITY_WARNING and issue.category == "character"
    assert issue.scene_index == 0 and issue.element_index == 1 and "Echo" in issue.message


@pytest.mark.parametrize(
    "text",
    [
        "I'm Echo, and I'll be your guide.",
        "Hi. My name is Echo.",
        "Call me Echo. Everyone does.",
        "Hello? This is Echo.",
        "Echo here. Who's this?",
        "She said 'Echo, you're fired' and walked off.",
        'The sign says "Echo was here".',
        "I can hear an echo in here.",
        "Rex, you and Luna are still at war.",
    ],
)
def test_introductions_quotes_and_other_names_are_not_self_naming(text: str) -> None:
    assert _found(_plain(say("Echo", text)), "self_naming") == []


def test_aliases_count_as_the_speakers_own_name() -> None:
    assert names_self("Rex Rocco does not do windows.", ["Rex Rocco", "Rex"]) == "Rex Rocco"
    assert _found(_plain(say("Rex", "Nobody tells Rex Rocco what to do.")), "self_naming")


# -- original names ----------------------------------------------------------------------------


def test_original_names_come_from_names_aliases_and_the_shows_own_text() -> None:
    names = original_names(SHOW, CAST, SETTING)
    assert {"Lucy", "Ricky", "Ethel", "Fred", "Ricardo", "Mertz", "Crane"} <= set(names)
    assert {"Mrs. Ricardo", "Dr. Crane", "Fred Mertz"} & set(names) == {
        "Mrs. Ricardo",
        "Dr. Crane",
    }
    assert "Mrs" not in names and "Dr" not in names
    assert names["Mertz"] == "Ethel"


def test_an_original_surname_in_a_line_is_an_error_at_the_line() -> None:
    ep = _plain(say("Luna", "Hi."), say("Echo", "Fenn Mertz, you old cheapskate!"))
    assert _found(ep, "original_name") == [(0, 1)]
    report = validate_episode(ep)
    issue = next(i for i in report.issues if i.check == "original_name")
    assert issue.severity == Severity.SEVERITY_ERROR and "'Mertz'" in issue.message
    assert not report.passed


def test_original_names_in_action_parenthetical_and_heading_are_flagged() -> None:
    ep = _plain(
        act("LUCY bursts in."),
        say("Rex", "Fine.", parenthetical="to Dr. Crane"),
        location="MERTZ APARTMENT",
    )
    assert sorted(_found(ep, "original_name")) == [(0, -1), (0, 0), (0, 1)]


def test_common_words_the_new_worlds_words_and_a_kept_name_are_not_original_names() -> None:
    ep = _plain(say("Luna", "The fred-o-matic is broken, and so is the crane."))
    assert _found(ep, "original_name") == []
    kept = [*CAST[:3], episode_pb2.Character(name="Fred", original_name="Fred")]
    ep = episode([scene(0, [say("Fred", "Fred's here, and Fred is staying.")])], cast=kept)
    assert "original_name" not in checks_of(run_checks(ep))
    domed = episode_pb2.Setting(name="Crane City", description="A city of cranes.")
    assert "Crane" not in original_names(SHOW, CAST, domed)


# -- forms of address --------------------------------------------------------------------------


def test_a_spouse_called_by_title_is_flagged() -> None:
    ep = _plain(say("Rex", "Dinner?"), say("Luna", "Whatever you say, Mr. Rocco."))
    assert _found(ep, "form_of_address") == [(0, 1)]
    ep = _plain(say("Rex", "Dinner?"), say("Luna", "Mr. Whipple called about the rent."))
    assert _found(ep, "form_of_address") == []


def test_a_boss_called_by_a_pet_name_is_flagged() -> None:
    ep = _plain(say("Fenn", "Overtime tonight."), say("Echo", "Whatever you say, honey."))
    assert _found(ep, "form_of_address") == [(0, 1)]
    ep = _plain(say("Fenn", "Overtime tonight."), say("Echo", "Oh dear. Again?"))
    assert _found(ep, "form_of_address") == []
    ep = _plain(say("Luna", "Overtime tonight."), say("Echo", "Whatever you say, honey."))
    assert _found(ep, "form_of_address") == []
    assert pet_name("Sweetie, sit down.") == "Sweetie" and pet_name("Oh, dear.") is None


# -- presence ----------------------------------------------------------------------------------


def test_entrances_and_exits_are_read_from_action_lines() -> None:
    names = ["Luna", "Rex", "Echo"]
    assert movements("LUNA and REX burst in, arguing.", names) == (["Luna", "Rex"], [])
    assert movements("The door opens: Echo, who has been listening.", names) == (["Echo"], [])
    assert movements("Rex quietly exits.", names) == ([], ["Rex"])
    assert movements("Rex leaves the note on the table.", names) == ([], [])
    assert movements("Everyone leaves.", names) == ([], ["*"])


def test_without_a_card_a_line_before_the_speakers_entrance_is_flagged() -> None:
    ep = _plain(
        say("Luna", "Where is everyone?"),
        say("Rex", "Right here."),
        act("Rex enters, dripping."),
        say("Luna", "You're wet."),
    )
    assert _found(ep, "speaks_before_entering") == [(0, 1)]


def test_heard_before_seen_is_fine() -> None:
    ep = _plain(
        say("Luna", "Where is everyone?"),
        say("Rex", "Coming!", extension="O.S."),
        act("Rex enters, dripping."),
        say("Rex", "Right here."),
        say("Luna", "On the phone.", parenthetical="into the phone"),
    )
    assert _found(ep, "speaks_before_entering") == []


def test_a_line_after_the_speakers_exit_is_flagged_until_they_come_back() -> None:
    ep = _plain(
        say("Luna", "Out."),
        act("Rex storms out."),
        say("Rex", "And another thing!"),
        act("Rex comes back in."),
        say("Rex", "I forgot my hat."),
    )
    assert _found(ep, "speaks_after_leaving") == [(0, 2)]
    report = validate_episode(ep)
    issue = next(i for i in report.issues if i.check == "speaks_after_leaving")
    assert "at 0:0" in issue.message and "left at" in issue.message


def test_with_a_card_a_speaker_who_never_entered_is_flagged() -> None:
    lines = [say("Luna", "Ready?"), say("Rex", "No."), say("Echo", "I am!")]
    ep = episode([scene(0, lines)], [card(0, ["Luna", "Rex"])])
    assert _found(ep, "speaks_before_entering") == [(0, 2)]
    planned = episode([scene(0, lines)], [card(0, ["Luna", "Rex"], entrances=["Echo"])])
    assert _found(planned, "speaks_before_entering") == []
    staged = [*lines[:2], act("Echo enters."), lines[2]]
    ep = episode([scene(0, staged)], [card(0, ["Luna", "Rex"], entrances=["Echo"])])
    assert _found(ep, "speaks_before_entering") == []
    late = [*lines, act("Echo enters.")]
    ep = episode([scene(0, late)], [card(0, ["Luna", "Rex"], entrances=["Echo"])])
    assert _found(ep, "speaks_before_entering") == [(0, 2)]


def test_a_present_character_who_never_speaks_and_is_never_mentioned_is_flagged() -> None:
    lines = [say("Luna", "Ready?"), say("Rex", "No.")]
    ep = episode([scene(0, lines)], [card(0, ["Luna", "Rex", "Fenn"])])
    assert _found(ep, "silent_presence") == [(0, -1)]
    mentioned = [*lines, act("Fenn snores in the corner.")]
    ep = episode([scene(0, mentioned)], [card(0, ["Luna", "Rex", "Fenn"])])
    assert _found(ep, "silent_presence") == []
    assert _found(_plain(*lines), "silent_presence") == []  # no card, no presence to check


# -- heading against action ----------------------------------------------------------------------


def test_an_exterior_heading_with_indoor_action_is_flagged() -> None:
    ep = _plain(
        act("Through the window, Phobos crawls across a butterscotch sky."),
        say("Luna", "Pretty."),
        placement=EXT,
        location="MARTIAN SURFACE - CRATER RIDGE",
    )
    assert _found(ep, "heading_action") == [(0, 0)]
    report = validate_episode(ep)
    clean = validate_episode(_plain(act("Dust blows across the ridge."), say("Luna", "Pretty.")))
    assert report.production < clean.production


@pytest.mark.parametrize(
    ("placement", "text", "flagged"),
    [
        (EXT, "Dust blows across the ridge. Luna squints.", False),
        (EXT, "A recycler gurgles somewhere inside the walls.", True),
        (EXT, "Smoke hangs under the low ceiling.", True),
        (EXT, "Somewhere down the corridor, a trumpet lesson goes badly.", True),
        (INT, "The sun beats down on them.", True),
        (INT, "Through the window, the sun beats down on the dunes.", False),
        (INT, "Luna sinks into a chair.", False),
        (episode_pb2.PLACEMENT_INT_EXT, "Through the window, the sun beats down.", False),
    ],
)
def test_heading_cues(placement: int, text: str, flagged: bool) -> None:
    assert (clashes(placement, text) is not None) is flagged


# -- time of day ---------------------------------------------------------------------------------


def _two(first: str, second: str, second_place: str = "MESS HALL", act2: str = "Act One"):
    lines = [say("Luna", "Hi."), say("Rex", "Hi.")]
    return episode(
        [
            scene(0, lines, time_of_day=first),
            scene(1, lines, time_of_day=second, location=second_place, act_name=act2),
        ]
    )


def test_the_clock_running_backwards_in_one_place_is_flagged() -> None:
    assert _found(_two("NIGHT", "MORNING"), "time_of_day") == [(1, -1)]
    assert _found(_two("NIGHT", "NEXT MORNING"), "time_of_day") == []
    assert _found(_two("MORNING", "NIGHT"), "time_of_day") == []
    assert _found(_two("NIGHT", "MORNING", act2="Act Two"), "time_of_day") == []
    assert _found(_two("NIGHT", "MORNING", "AIRLOCK"), "time_of_day") == []


def test_continuous_after_another_place_is_flagged() -> None:
    assert _found(_two("DAY", "CONTINUOUS", "AIRLOCK"), "time_of_day") == [(1, -1)]
    assert _found(_two("DAY", "CONTINUOUS"), "time_of_day") == []
    lines = [say("Luna", "Hi."), say("Rex", "Hi.")]
    same_set = episode(
        [
            scene(0, lines, location="HAB 7 - KITCHEN"),
            scene(1, lines, location="HAB 7 - LIVING ROOM", time_of_day="CONTINUOUS"),
        ]
    )
    assert _found(same_set, "time_of_day") == []


# -- setups and payoffs --------------------------------------------------------------------------


def _threads(first_text: str, second_text: str, payoff: str = "s0-valve") -> episode_pb2.Episode:
    scenes = [
        scene(0, [say("Luna", first_text), say("Rex", "Noted.")]),
        scene(1, [say("Rex", second_text), say("Luna", "Told you.")]),
    ]
    cards = [
        card(0, ["Luna", "Rex"], setups=[("s0-valve", "the airlock valve sticks")]),
        card(1, ["Luna", "Rex"], payoffs=[payoff]),
    ]
    return episode(scenes, cards)


def test_a_payoff_of_a_setup_nobody_planted_is_flagged() -> None:
    ep = _threads("The airlock valve sticks.", "That valve again.", payoff="s9-ghost")
    assert _found(ep, "orphan_payoff") == [(1, -1)]


def test_a_payoff_whose_setup_never_made_it_into_the_text_is_flagged() -> None:
    ep = _threads("Lovely weather.", "The airlock valve is sticky again.")
    assert _found(ep, "orphan_payoff") == [(1, -1)]
    assert _found(ep, "missing_payoff") == []


def test_a_due_payoff_missing_from_its_scene_is_flagged() -> None:
    ep = _threads("The airlock valve sticks.", "Lovely weather.")
    assert _found(ep, "missing_payoff") == [(1, -1)]
    assert _found(ep, "orphan_payoff") == []
    paid = _threads("The airlock valve sticks.", "Who fixed the sticky airlock valves?")
    assert run_checks(paid) == []
    report = validate_episode(ep)
    assert report.plot_coherence < validate_episode(paid).plot_coherence


def test_every_issue_of_the_report_has_a_check_id() -> None:
    ep = _plain(say("Mysterious Stranger", "Boo."), say("Luna", "Eek."))
    report = validate_episode(ep)
    assert report.issues and all(issue.check for issue in report.issues)
    stranger = next(i for i in report.issues if i.check == "stranger")
    assert stranger.element_index == 0 and stranger.scene_index == 0


def test_messages_name_a_scene_as_it_prints_on_a_revised_draft() -> None:
    """An inserted scene locked as 3A is "scene 3A" in every message, not its position."""
    ep = _plain(say("Mysterious Stranger", "Boo."), say("Luna", "Eek."))
    ep.scenes[0].number_label = "3A"
    report = validate_episode(ep)
    stranger = next(i for i in report.issues if i.check == "stranger")
    assert stranger.message.startswith("scene 3A:"), stranger.message
    ep.outline.acts[0].beats[0].characters.extend(["Luna", "Rex"])
    assert any(f.message.startswith("scene 3A") for f in run_checks(ep)), run_checks(ep)


def test_a_cast_member_named_with_a_classic_name_is_flagged_as_a_speaker() -> None:
    leaked = [*CAST[:3], episode_pb2.Character(name="Fred", archetype="cynic")]
    ep = episode([scene(0, [say("Luna", "Hi."), say("Fred", "Hello.")])], cast=leaked)
    assert _found(ep, "original_name") == [(0, 1)]
    report = validate_episode(ep)
    issue = next(i for i in report.issues if i.check == "original_name")
    assert "a speaker" in issue.message and "'Fred'" in issue.message
