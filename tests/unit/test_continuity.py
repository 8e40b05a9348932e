"""The continuity ledger and pass: notes in the scene's own time base, revisions through the
writer's revise_scene, outcomes recorded, and scenes without a note left byte for byte."""

from __future__ import annotations

from collections.abc import Sequence

from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script.checks.presence import silent
from services.script.continuity import continuity_pass, read_notes
from services.script.ledger import build_ledger
from services.script.script_text import read_scene
from services.script.writing import StoryContext
from testkit import draft_episode
from tests.unit.craft_scripts import (
    CAST,
    EXT,
    RELATIONSHIPS,
    SETTING,
    SHOW,
    act,
    card,
    episode,
    say,
    scene,
)
from tests.unit.episode_drafts import WRITER, copy

TRACER = trace.NoOpTracer()
CONTEXT = StoryContext(
    show=SHOW, setting=SETTING, cast=CAST, relationships=RELATIONSHIPS, seed=1, scene_count=3
)


class ScriptedReviser:
    """A writer whose revisions are given in advance, scene by scene; it records the notes."""

    name, model, prompt_version = "scripted", "", "test"

    def __init__(self, revisions: dict[int, episode_pb2.Scene | Exception]) -> None:
        self.revisions = revisions
        self.notes: dict[int, list[str]] = {}

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        self.notes[scene.index] = list(notes)
        revision = self.revisions[scene.index]
        if isinstance(revision, Exception):
            raise revision
        revised = episode_pb2.Scene()
        revised.CopyFrom(revision)
        return revised


def _threads(payoff_text: str) -> episode_pb2.Episode:
    scenes = [
        scene(0, [say("Luna", "The airlock valve sticks again."), say("Rex", "Noted.")]),
        scene(1, [say("Echo", "Lunch?"), say("Fenn", "Later.")], location="GARAGE"),
        scene(2, [say("Rex", payoff_text), say("Luna", "Told you.")]),
    ]
    cards = [
        card(0, ["Luna", "Rex"], setups=[("s0-valve", "the airlock valve sticks")]),
        card(1, ["Echo", "Fenn"], location="GARAGE"),
        card(2, ["Luna", "Rex"], payoffs=["s0-valve"]),
    ]
    return episode(scenes, cards)


def test_the_ledger_knows_who_heard_a_setup_and_where_props_were() -> None:
    ep = _threads("Lovely weather.")
    ledger = build_ledger(ep)
    planted = ledger.setups["s0-valve"]
    assert planted.scene_index == 0 and planted.heard_by == ("Luna", "Rex") and planted.carried
    assert [entry.present_end for entry in ledger.scenes][1] == {"Echo", "Fenn"}
    [note] = ledger.notes
    assert note.kind == "missing_payoff" and note.scene_index == 2
    assert "s0-valve" in note.message and "heard by Luna, Rex" in note.message


async def test_a_missing_payoff_is_revised_and_recorded_and_other_scenes_keep_their_bytes() -> None:
    ep = _threads("Lovely weather.")
    before = [s.SerializeToString(deterministic=True) for s in ep.scenes]
    fixed = scene(2, [say("Rex", "That airlock valve is sticking again."), say("Luna", "Ha.")])
    writer = ScriptedReviser({2: fixed})
    notes = await continuity_pass(writer, CONTEXT, ep, 2, TRACER)  # type: ignore[arg-type]
    assert [(n.scene_index, n.kind, n.outcome) for n in notes] == [(2, "missing_payoff", "revised")]
    assert list(ep.continuity_notes) == notes
    assert "the payoff of setup s0-valve" in writer.notes[2][0]
    assert ep.scenes[2].elements[0].dialogue.text == "That airlock valve is sticking again."
    assert ep.scenes[2].index == 2 and ep.scenes[2].number == 3
    after = [s.SerializeToString(deterministic=True) for s in ep.scenes]
    assert after[:2] == before[:2] and after[2] != before[2]


async def test_a_revision_that_does_not_help_is_not_kept() -> None:
    ep = _threads("Lovely weather.")
    original = copy(ep)
    still_wrong = scene(2, [say("Rex", "Lovelier weather."), say("Luna", "Ha.")])
    notes = await continuity_pass(
        ScriptedReviser({2: still_wrong}),  # type: ignore[arg-type]
        CONTEXT,
        ep,
        2,
        TRACER,
    )
    assert [n.outcome for n in notes] == ["unresolved"]
    assert list(ep.scenes) == list(original.scenes)


async def test_a_failed_revision_leaves_the_draft_and_the_note_unresolved() -> None:
    ep = _threads("Lovely weather.")
    original = copy(ep)
    writer = ScriptedReviser({2: RuntimeError("provider down")})
    notes = await continuity_pass(writer, CONTEXT, ep, 1, TRACER)  # type: ignore[arg-type]
    assert [n.outcome for n in notes] == ["unresolved"]
    assert list(ep.scenes) == list(original.scenes)


def test_a_speaker_who_left_an_earlier_continued_scene_gets_a_note_in_scene_time() -> None:
    scenes = [
        scene(0, [say("Luna", "Bye."), act("Luna storms out."), say("Rex", "Good.")]),
        scene(
            1,
            [say("Rex", "Finally, quiet."), say("Luna", "I heard that.")],
            time_of_day="CONTINUOUS",
        ),
    ]
    by_scene, _ = read_notes(episode(scenes))
    [note] = by_scene[1]
    assert note.kind == "absent_speaker" and note.subject == "Luna"
    assert note.message == "at 0:01, Luna speaks but left in scene 1 and has not re-entered"


def test_a_speaker_who_left_within_the_scene_gets_a_note_at_the_line() -> None:
    lines = [say("Luna", "Bye."), act("Luna storms out."), say("Rex", "Good."), say("Luna", "And!")]
    by_scene, _ = read_notes(episode([scene(0, lines)]))
    [note] = by_scene[0]
    assert note.message == "at 0:03, Luna speaks but left at 0:00 and has not re-entered"


def test_a_heading_that_is_not_the_cards_place_gets_a_location_note() -> None:
    ep = episode(
        [scene(0, [say("Luna", "Hi."), say("Rex", "Hi.")], placement=EXT, location="RIDGE")],
        [card(0, ["Luna", "Rex"], location="HYDROPONICS BAY")],
    )
    by_scene, _ = read_notes(ep)
    [note] = by_scene[0]
    assert note.kind == "location" and "INT. HYDROPONICS BAY" in note.message
    assert "EXT. RIDGE" in note.message


async def test_a_clean_generated_episode_gets_no_note_and_keeps_every_byte() -> None:
    for show in ("i-love-lucy", "frasier", "mash"):
        context, ep = await draft_episode(show, "mars-colony-2157", 3)
        before = ep.SerializeToString(deterministic=True)
        notes = await continuity_pass(WRITER, context, ep, 2, TRACER)
        assert notes == [] and not ep.continuity_notes
        assert ep.SerializeToString(deterministic=True) == before


async def test_a_revision_s_pass_acts_on_the_scenes_it_is_given_only() -> None:
    """ReviseEpisode hands the pass its changed scenes: a note on any other scene is neither
    acted on nor recorded, and every other scene keeps its bytes."""
    ep = _threads("Lovely weather.")
    original = copy(ep)
    writer = ScriptedReviser({})
    notes = await continuity_pass(writer, CONTEXT, ep, 2, TRACER, scene_indices={0, 1})  # type: ignore[arg-type]
    assert notes == [] and not ep.continuity_notes and not writer.notes
    assert list(ep.scenes) == list(original.scenes)
    fixed = scene(2, [say("Rex", "That airlock valve is sticking again."), say("Luna", "Ha.")])
    notes = await continuity_pass(ScriptedReviser({2: fixed}), CONTEXT, ep, 2, TRACER, {2})  # type: ignore[arg-type]
    assert [(n.scene_index, n.outcome) for n in notes] == [(2, "revised")]


async def test_an_orphan_payoff_is_dropped_from_the_plan_and_recorded() -> None:
    ep = _threads("That airlock valve is sticking again.")
    ep.outline.acts[0].beats[2].payoffs.append("s9-never-planted")
    before = [s.SerializeToString(deterministic=True) for s in ep.scenes]
    notes = await continuity_pass(ScriptedReviser({}), CONTEXT, ep, 2, TRACER)  # type: ignore[arg-type]
    assert [(n.scene_index, n.kind, n.outcome) for n in notes] == [(2, "orphan_payoff", "revised")]
    assert "s9-never-planted" in notes[0].message
    assert list(ep.outline.acts[0].beats[2].payoffs) == ["s0-valve"]
    assert [s.SerializeToString(deterministic=True) for s in ep.scenes] == before


def test_a_continuous_heading_after_another_place_gets_a_time_note() -> None:
    scenes = [
        scene(0, [say("Luna", "Hi."), say("Rex", "Hi.")]),
        scene(1, [say("Echo", "Lunch?"), say("Fenn", "Later.")], location="GARAGE"),
    ]
    cards = [card(0, ["Luna", "Rex"]), card(1, ["Echo", "Fenn"], location="GARAGE")]
    cards[1].time_of_day = "Night"
    clean, _ = read_notes(episode(scenes, cards))
    assert clean == {}
    scenes[1].slugline.time_of_day = "CONTINUOUS"
    by_scene, _ = read_notes(episode(scenes, cards))
    [note] = by_scene[1]
    assert note.kind == "time" and "play it at NIGHT" in note.message
    assert "MESS HALL" in note.message


async def test_the_characters_the_card_puts_in_the_room_are_on_the_page_after_a_rewrite() -> None:
    """Two more of the cast on each card: the rewrite has them speak or names them (the
    validator's silent_presence finds nobody)."""
    for show in ("cheers", "taxi", "i-love-lucy"):
        context, ep = await draft_episode(show, "mars-colony-2157", 3)
        for index in range(3):
            beat = next(b for a in ep.outline.acts for b in a.beats if b.scene_index == index)
            names = [c.name for c in ep.cast]
            added = [n for n in names if n not in beat.characters and n not in beat.entrances]
            beat.characters.extend(added[:2])
            revised = await WRITER.revise_scene(context, ep.outline, ep.scenes[index], [])
            assert silent(read_scene(revised, beat)) == [], (show, index)
