"""The continuity pass on the LLM path: the real SDK writer against the loopback provider, whose
scene reply drops a due payoff; the pass notes it, the revise request reaches the provider with
the note, and the note is recorded with its outcome. Scenes without a note keep their bytes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script.checks.threads import content_stems
from services.script.continuity import continuity_pass
from services.script.script_text import read_scene
from services.script.writers import build_writers
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
from tests.fakes.llm_support import captured_telemetry, llm_settings, story


@pytest.fixture
def server() -> Iterator[LLMServer]:
    with LLMServer() as running:
        yield running


def _unique_line(scene: episode_pb2.Scene, other: episode_pb2.Scene) -> str:
    """A line of `scene` none of whose content words `other` says: the setup the test plants."""
    elsewhere = content_stems(read_scene(other).text)
    for element in scene.elements:
        text = element.dialogue.text if element.HasField("dialogue") else ""
        stems = content_stems(text)
        if len(stems) >= 3 and not stems & elsewhere:
            return text
    raise AssertionError("no line of the scene is its own")


async def test_a_dropped_payoff_is_noted_revised_and_recorded(server: LLMServer) -> None:
    settings = llm_settings(server)
    writer = build_writers(settings, captured_telemetry(settings).telemetry)["anthropic"]
    context = story(scene_count=3)
    outline = await writer.write_outline(context)
    first = await writer.write_scene(context, outline, 0, [])
    server.inject("drop_payoff", path=ANTHROPIC_PATH)
    third = await writer.write_scene(context, outline, 2, [])
    second = await writer.write_scene(context, outline, 1, [])
    # The cards: scene 1 plants what one of its own lines says, scene 3 must pay it off.
    planted = _unique_line(first, third)
    beats = {beat.scene_index: beat for act in outline.acts for beat in act.beats}
    for beat in beats.values():  # Only the test's own thread: the writer's cards are cleared.
        del beat.setups[:]
        del beat.payoffs[:]
    beats[0].setups.add(id="s1-secret", description=planted)
    beats[2].payoffs.append("s1-secret")
    episode = episode_pb2.Episode(
        show=context.show,
        setting=context.setting,
        cast=context.cast,
        relationships=context.relationships,
        outline=outline,
        scenes=[first, second, third],
    )
    untouched = [s.SerializeToString(deterministic=True) for s in episode.scenes[:2]]

    notes = await continuity_pass(writer, context, episode, 2, trace.NoOpTracer())

    scene_calls = [r for r in server.calls(ANTHROPIC_PATH) if r.task == "scene"]
    assert [r.fault for r in scene_calls] == ["", "drop_payoff", ""]
    [note] = notes
    assert (note.scene_index, note.kind, note.outcome) == (2, "missing_payoff", "revised")
    assert "s1-secret" in note.message and planted in note.message
    assert list(episode.continuity_notes) == [note]
    revisions = [r for r in server.calls(ANTHROPIC_PATH) if r.task == "revise"]
    assert [r.scene_index for r in revisions] == [2] and revisions[0].status == 200
    assert revisions[0].notes == (note.message,)
    text = read_scene(episode.scenes[2]).text
    assert planted.rstrip(".!?") in text
    assert [s.SerializeToString(deterministic=True) for s in episode.scenes[:2]] == untouched
