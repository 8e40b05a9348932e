"""ProposeOutlines: outlines to choose from, one pitch, distinct A plots.

Alternative i is written with the kernels of alternatives 0..i-1 to avoid (StoryContext.
avoid_kernels): the procedural writer takes the next story kernel of the seed's order, an LLM
writer is told which A plots were proposed already. The first alternative is the outline
GenerateEpisode would write for the same request (they share the outline cache). Each proposal
carries the cast it was written for, so a writer can edit both and send them to GenerateEpisode,
and is stored as an outline draft (`save`, the library's) under a content id.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable

from doppelganger.v1 import episode_pb2, script_pb2
from services.script import store
from services.script.llm.provenance import collect_provenance
from services.script.pipeline import PipelineDeps, cached_outline, outline_key
from services.script.requests import OutlineOrder
from services.script.writing import StoryContext

SaveDraft = Callable[[episode_pb2.Episode], Awaitable[episode_pb2.Episode]]


def proposal_id(key: str, outline: episode_pb2.Outline) -> str:
    """The outline draft's id: a content hash of the outline's cache key and the outline."""
    data = outline.SerializeToString(deterministic=True).hex()
    return "ep-" + store.content_key("outline-draft", key, data)[:20]


def outline_draft(
    order: OutlineOrder, draft_id: str, outline: episode_pb2.Outline, writer_name: str, model: str
) -> episode_pb2.Episode:
    """An outline draft: the outline and the cast it was written for, no scenes yet."""
    episode = order.episode
    return episode_pb2.Episode(
        id=draft_id,
        lineage_id=draft_id,
        show=episode.show,
        setting=episode.setting,
        cast=episode.cast,
        relationships=episode.relationships,
        outline=outline,
        writer=writer_name,
        model=model,
        seed=episode.seed,
        premise=episode.premise,
        kind=episode_pb2.DRAFT_KIND_OUTLINE,
    )


async def propose_outlines(
    deps: PipelineDeps, order: OutlineOrder, setting_text: str, save: SaveDraft | None = None
) -> script_pb2.ProposeOutlinesResponse:
    """`order.count` outlines with distinct kernels, each stored (when `save` is given)."""
    episode = order.episode
    writer = deps.writers[episode.writer]
    context = StoryContext(
        show=episode.show, setting=episode.setting, cast=list(episode.cast),
        relationships=list(episode.relationships), seed=episode.seed,
        scene_count=episode.scene_count, premise=episode.world_premise,
    )  # fmt: skip
    response = script_pb2.ProposeOutlinesResponse()
    avoid: list[str] = []
    with collect_provenance():
        for _ in range(order.count):
            alternative = dataclasses.replace(context, avoid_kernels=tuple(avoid))
            outline, _ = await cached_outline(deps, writer, alternative, episode)
            avoid.append(outline.kernel or outline.a_plot)
            key = outline_key(episode, writer, tuple(alternative.avoid_kernels))
            draft = outline_draft(
                order, proposal_id(key, outline), outline, writer.name, writer.model
            )
            if save is not None:
                draft = await save(draft)
            response.proposals.add(
                draft_id=draft.id,
                outline=draft.outline,
                cast=draft.cast,
                relationships=draft.relationships,
                show=episode.show.id,
                setting=setting_text,
                premise=episode.premise,
                seed=episode.seed,
            )
    return response
