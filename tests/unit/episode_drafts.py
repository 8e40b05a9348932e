"""First drafts for the pipeline's unit tests: the procedural writer through the writer protocol,
as the pipeline drives it (request validation, cast, outline with its runtime target, scenes)."""

from __future__ import annotations

import dataclasses

from doppelganger.v1 import episode_pb2, script_pb2
from services.script.cards import scene_view
from services.script.procedural import ProceduralWriter
from services.script.requests import RuntimeDefaults, validate_generate
from services.script.validation import allocate_targets
from services.script.writing import StoryContext

WRITER = ProceduralWriter()
DEFAULTS = RuntimeDefaults(episode_seconds=22 * 60.0, scene_seconds=120.0)


async def draft_episode(
    show: str, setting: str, seed: int, scene_count: int | None = None, premise: str = ""
) -> tuple[StoryContext, episode_pb2.Episode]:
    """The story context and the first draft of an episode (no comedy pass, no validation).
    Scenes are written last to first, each from its own view of the outline: a scene must not
    depend on the others."""
    request = script_pb2.GenerateEpisodeRequest(
        show=show, setting=setting, seed=seed, scene_count=scene_count, premise=premise
    )
    order = validate_generate(request, DEFAULTS, "procedural", {"procedural"})
    cast, relationships = list(order.cast), list(order.relationships)
    context = StoryContext(
        show=order.show, setting=order.setting, cast=cast, relationships=relationships,
        seed=order.seed, scene_count=order.scene_count, premise=order.world_premise,
    )  # fmt: skip
    outline = await WRITER.write_outline(context)
    allocate_targets(outline, order.target_runtime_seconds)
    context = dataclasses.replace(context, kernel=outline.kernel, premise=outline.premise)
    scenes = [
        await WRITER.write_scene(context, scene_view(outline, index), index, [])
        for index in reversed(range(order.scene_count))
    ]
    episode = episode_pb2.Episode(
        id="ep-" + "0" * 20,
        show=order.show,
        setting=order.setting,
        cast=cast,
        relationships=relationships,
        outline=outline,
        scenes=sorted(scenes, key=lambda scene: scene.index),
        writer=WRITER.name,
        seed=seed,
        premise=premise,
        runtime_seconds=round(sum(scene.duration_seconds for scene in scenes), 1),
    )
    return context, episode


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
