"""First drafts for the pipeline's unit tests: the procedural writer through the writer protocol,
as the pipeline drives it (request validation, cast, outline with its runtime target, scenes)."""

from __future__ import annotations

from doppelganger.v1 import episode_pb2
from services.script.procedural import ProceduralWriter

WRITER = ProceduralWriter()


def dialogue(episode: episode_pb2.Episode) -> list[episode_pb2.DialogueLine]:
    return [
        element.dialogue
        for scene in episode.scenes
        for element in scene.elements
        if element.WhichOneof("element") == "dialogue"
    ]


def copy(episode: episode_pb2.Episode) -> episode_pb2.Episode:
    duplicate = episode_pb2.Episode()
    duplicate.CopyFrom(episode)
    return duplicate
