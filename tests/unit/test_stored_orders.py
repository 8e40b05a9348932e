"""A season batch job keeps its episodes' orders as JSON (services/script/stored_orders.py): what
comes back is the order that went in, protos and all, through a JSON round trip."""

from __future__ import annotations

import dataclasses
import json

from doppelganger.v1 import episode_pb2, script_pb2
from services.script.requests import EpisodeOrder, RuntimeDefaults, validate_generate
from services.script.stored_orders import order_from_json, order_to_json

RUNTIME = RuntimeDefaults(episode_seconds=1320.0, scene_seconds=120.0)


def _order() -> EpisodeOrder:
    request = script_pb2.GenerateEpisodeRequest(
        show="I Love Lucy", setting="a Mars colony in 2157", scene_count=3, seed=7,
        writer="anthropic", premise="Lucy sells algae loaf.",
    )  # fmt: skip
    return validate_generate(request, RUNTIME, "procedural", ["procedural", "anthropic"])


def test_an_order_with_its_outline_comes_back_as_it_went_in() -> None:
    order = _order()
    outline = episode_pb2.Outline(title="Algae", kernel="k-07", scene_count=3)
    outline.acts.add(name="Act One").beats.add(scene_index=0, description="Lucy has a plan.")
    order = dataclasses.replace(order, outline=outline, custom_cast=True)
    back = order_from_json(json.loads(json.dumps(order_to_json(order))))
    assert back == order
    assert back.outline is not None and back.outline.acts[0].beats[0].description.startswith("Lucy")
    assert [c.name for c in back.cast] == [c.name for c in order.cast]


def test_an_order_without_an_outline_keeps_none() -> None:
    order = _order()
    back = order_from_json(json.loads(json.dumps(order_to_json(order))))
    assert back.outline is None and back == order
