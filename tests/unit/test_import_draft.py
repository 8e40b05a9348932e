"""ImportDraft's pure rules: the checks before parsing, speakers mapped onto the cast (and the
parent's own speakers), the line named for one outside it, the parent carried over, and an id
that depends on parent and content only."""

from __future__ import annotations

import pytest

from doppelganger.v1 import episode_pb2, script_pb2
from services.script.import_draft import build_episode, check_import, parse
from services.script.requests import InvalidRequest

FOUNTAIN = """Title: The Airlock

INT. KITCHEN - DAY

LUX
Hello, Rico.

RICO (O.S.)
Not now.

WAITER
More algae?
"""


def _parent() -> episode_pb2.Episode:
    parent = episode_pb2.Episode(id="ep-" + "a" * 20, writer="anthropic", model="m")
    parent.show.id, parent.show.title = "i-love-lucy", "I Love Lucy"
    parent.cast.add(name="Lux")
    parent.cast.add(name="Rico")
    parent.outline.title, parent.outline.scene_count = "The Airlock", 1
    scene = parent.scenes.add(index=0, number=1)
    scene.elements.add().dialogue.CopyFrom(episode_pb2.DialogueLine(character="Waiter", text="Hm"))
    parent.usage.input_tokens = 900
    return parent


def _order(content: str, **fields: str) -> object:
    request = script_pb2.ImportDraftRequest(content=content.encode(), **fields)
    return check_import(request, 1024)


def test_speakers_take_the_casts_spelling_and_the_parents_extras_are_allowed() -> None:
    order = _order(FOUNTAIN, file_name="airlock.fountain")
    parent = _parent()
    episode = build_episode(order, parse(order), parent, "procedural")  # type: ignore[arg-type]
    speakers = [e.dialogue.character for e in episode.scenes[0].elements if e.HasField("dialogue")]
    assert speakers == ["Lux", "Rico", "Waiter"]
    assert episode.scenes[0].elements[1].dialogue.extension == "O.S."
    assert episode.parent_episode_id == parent.id and episode.writer == "anthropic"
    assert episode.kind == episode_pb2.DRAFT_KIND_IMPORTED
    assert episode.notes == "imported from airlock.fountain"
    assert episode.usage.input_tokens == 0  # The import cost nothing.
    again = build_episode(order, parse(order), parent, "procedural")  # type: ignore[arg-type]
    assert again.id == episode.id and episode.id.startswith("ep-") and len(episode.id) == 23
    edited = _order(FOUNTAIN.replace("Not now.", "Later."), file_name="airlock.fountain")
    assert build_episode(edited, parse(edited), parent, "x").id != episode.id  # type: ignore[arg-type]


def test_a_speaker_outside_the_cast_names_the_line() -> None:
    order = _order(FOUNTAIN.replace("WAITER", "MR. MOONEY"), show="I Love Lucy")
    parent = _parent()
    with pytest.raises(InvalidRequest) as caught:
        build_episode(order, parse(order), parent, "procedural")  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("content: line 11 (scene 1): speaker 'MR. MOONEY' is not in the cast")
    assert "(Lux, Rico, Waiter)" in message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"content": b""}, "content is empty"),
        ({"content": b"x" * 1025}, "at most 1024 bytes (DOPPEL_IMPORT_MAX_BYTES); got 1025"),
        ({"content": b"x", "notes": "n" * 2001}, "notes must be at most 2000"),
        ({"content": b"x", "file_name": "f" * 256}, "file_name must be at most 255"),
        ({"content": b"x", "parent_draft_id": "ep-1"}, "parent_draft_id must look like"),
        ({"content": b"x", "show": "s" * 201}, "show must be at most"),
    ],
)
def test_requests_are_checked_before_parsing(fields: dict[str, object], expected: str) -> None:
    with pytest.raises(InvalidRequest, match=expected.replace("(", r"\(").replace(")", r"\)")):
        check_import(script_pb2.ImportDraftRequest(**fields), 1024)
