"""An accepted EpisodeOrder as JSON, and back: a batch job that writes a season keeps its
episodes' orders in the library (each already has its outline, cast and show resolved, which a
GenerateEpisode request could not carry for a user's show), so the replica that resumes the job
writes exactly the episodes that were planned."""

from __future__ import annotations

import base64
from typing import Any, TypeVar

from google.protobuf.message import Message

from doppelganger.v1 import episode_pb2
from services.script.requests import EpisodeOrder

_M = TypeVar("_M", bound=Message)


def order_to_json(order: EpisodeOrder) -> dict[str, Any]:
    """The order as a JSON-ready dict (protos as base64 of their deterministic bytes)."""
    return {
        "show": _pack(order.show),
        "setting": _pack(order.setting),
        "scene_count": order.scene_count,
        "seed": order.seed,
        "request_id": order.request_id,
        "writer": order.writer,
        "target_runtime_seconds": order.target_runtime_seconds,
        "premise": order.premise,
        "world_premise": order.world_premise,
        "cast": [_pack(character) for character in order.cast],
        "relationships": [_pack(link) for link in order.relationships],
        "custom_cast": order.custom_cast,
        "outline": _pack(order.outline) if order.outline is not None else None,
    }


def order_from_json(data: dict[str, Any]) -> EpisodeOrder:
    """The order `order_to_json` wrote (KeyError or a decode error if it was not)."""
    outline = data["outline"]
    return EpisodeOrder(
        show=_unpack(episode_pb2.Show, data["show"]),
        setting=_unpack(episode_pb2.Setting, data["setting"]),
        scene_count=int(data["scene_count"]),
        seed=int(data["seed"]),
        request_id=str(data["request_id"]),
        writer=str(data["writer"]),
        target_runtime_seconds=float(data["target_runtime_seconds"]),
        premise=str(data["premise"]),
        world_premise=str(data["world_premise"]),
        cast=tuple(_unpack(episode_pb2.Character, c) for c in data["cast"]),
        relationships=tuple(_unpack(episode_pb2.Relationship, r) for r in data["relationships"]),
        custom_cast=bool(data["custom_cast"]),
        outline=_unpack(episode_pb2.Outline, outline) if outline is not None else None,
    )


def _pack(message: Message) -> str:
    return base64.b64encode(message.SerializeToString(deterministic=True)).decode()


def _unpack(kind: type[_M], text: str) -> _M:
    return kind.FromString(base64.b64decode(text))
