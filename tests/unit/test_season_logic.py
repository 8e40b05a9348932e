"""The season runner's pure parts (services/script/season.py): request checks naming the field
and the limit, an LLM kernel that repeats the series' asked for again, the callbacks a script
actually plays."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence
from typing import Any

import pytest

from doppelganger.v1 import episode_pb2, script_pb2
from services.script.fields import InvalidRequest
from services.script.season import SeasonService, check_season
from services.script.season_store import played_callbacks
from services.script.writing import StoryContext

WRITERS = ("procedural", "anthropic")


def check(**fields: Any) -> Any:
    values: dict[str, Any] = {"show": "I Love Lucy", "setting": "Mars", "episodes": 2, **fields}
    return check_season(script_pb2.WriteSeasonRequest(**values), "procedural", WRITERS)


def test_a_good_request_is_kept_as_sent() -> None:
    order = check(scene_count=3, premises=["Lucy sings."], seed=4, writer="anthropic")
    assert (order.episodes, order.scene_count, order.seed, order.writer) == (2, 3, 4, "anthropic")
    assert order.premises == ("Lucy sings.",)
    assert check().writer == "procedural" and check().scene_count is None
    assert check(show="", setting="", series_id="se-1").series_id == "se-1"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"episodes": 0}, "episodes must be between 1 and 26 (got 0)"),
        ({"episodes": -3}, "episodes must be between 1 and 26 (got -3)"),
        ({"episodes": 27}, "episodes must be between 1 and 26 (got 27)"),
        ({"scene_count": 0}, "scene_count must be between 1 and 20 (got 0)"),
        ({"premises": ["a", "b", "c"]}, "premises has 3 items; at most one per episode (2)"),
        ({"premises": ["x" * 2001]}, "premises[0]"),
        ({"writer": "gpt"}, "writer must be one of: anthropic, procedural"),
        ({"batch": True}, "batch: "),
        ({"series_id": "se-1"}, "not both"),
        ({"show": ""}, "series_id, or show and setting, are required"),
        ({"show": "", "setting": "", "series_id": "x" * 65}, "series_id must be 1-64"),
    ],
)
def test_bad_fields_are_named_with_their_limits(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        check(**fields)


class _Writer:
    """Outlines whose kernels come from a list, recording what each request avoided."""

    name = "anthropic"
    model = "m"
    prompt_version = "1"

    def __init__(self, kernels: Sequence[str]) -> None:
        self.kernels = list(kernels)
        self.avoided: list[tuple[str, ...]] = []

    async def write_outline(self, context: StoryContext) -> episode_pb2.Outline:
        self.avoided.append(tuple(context.avoid_kernels))
        return episode_pb2.Outline(kernel=self.kernels.pop(0))


def _context() -> StoryContext:
    return StoryContext(
        show=episode_pb2.Show(), setting=episode_pb2.Setting(), cast=(), relationships=(),
        seed=1, scene_count=1, avoid_kernels=("fake-an-heirloom",),
    )  # fmt: skip


async def test_an_llm_kernel_the_series_used_is_asked_for_again_avoiding_it() -> None:
    service = SeasonService.__new__(SeasonService)
    writer = _Writer(["Fake an heirloom", "Run for mayor"])
    outline = await service._outline(writer, _context(), ["fake-an-heirloom"])  # type: ignore[arg-type]
    assert outline.kernel == "Run for mayor"
    assert writer.avoided == [("fake-an-heirloom",), ("fake-an-heirloom", "Fake an heirloom")]
    fresh = _Writer(["Open a bakery"])
    assert (await service._outline(fresh, _context(), ["fake-an-heirloom"])).kernel  # type: ignore[arg-type]
    assert len(fresh.avoided) == 1
    assert dataclasses.replace(_context()).avoid_kernels == ("fake-an-heirloom",)


def _episode(line: str) -> episode_pb2.Episode:
    episode = episode_pb2.Episode()
    beat = episode.outline.acts.add().beats.add()
    beat.callbacks.add(fact_id="e1-f1", episode_number=1, text="Lux tried to sell algae loaf.")
    beat.callbacks.add(fact_id="e1-f2", episode_number=1, text="Echo and Fenn fall out")
    scene = episode.scenes.add()
    scene.elements.add(dialogue=episode_pb2.DialogueLine(character="Rico", text=line))
    return episode


def test_only_the_callbacks_a_script_plays_are_recorded() -> None:
    assert played_callbacks(_episode("Remember? Lux tried to sell ALGAE loaf! Never again.")) == [
        "e1-f1"
    ]
    assert played_callbacks(_episode("Nothing to see here.")) == []


def test_an_outline_sent_back_keeps_its_callbacks_within_limits() -> None:
    from services.script.outline_input import check_outline

    outline = episode_pb2.Outline(scene_count=1)
    beat = outline.acts.add(name="Act One").beats.add(
        plot=episode_pb2.PLOT_LINE_A, description="Lux plans."
    )
    beat.callbacks.add(fact_id="e1-f1", episode_number=1, text="Lucy tried to sell algae loaf")
    checked = check_outline(outline, ["Lux"], lambda text: text.replace("Lucy", "Lux"), None)
    assert checked.acts[0].beats[0].callbacks[0].text == "Lux tried to sell algae loaf"
    for _ in range(4):
        beat.callbacks.add(fact_id="e1-f2", text="more")
    with pytest.raises(InvalidRequest, match=re.escape("callbacks has 5 items; at most 4")):
        check_outline(outline, ["Lux"], lambda text: text, None)
    del beat.callbacks[1:]
    beat.callbacks[0].fact_id = "bad id!"
    with pytest.raises(InvalidRequest, match=re.escape("callbacks[0].fact_id must be 1-64")):
        check_outline(outline, ["Lux"], lambda text: text, None)
