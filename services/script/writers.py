"""What the pipeline asks of a writer, and the writers this replica has.

A writer turns story context into an outline, scenes, better joke lines and revised scenes. The
procedural writer (offline, deterministic by seed) is always there; LLM writers are added by
configuration. The pipeline only ever talks to this protocol.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from doppelganger.v1 import episode_pb2
from services.script import writer as procedural
from services.script.coordination import CoordinationClient
from services.script.llm import build_llm_writers
from shared.config import Settings
from shared.telemetry import Telemetry


@dataclass(frozen=True)
class StoryContext:
    """Everything about the episode that does not change while it is written."""

    show: episode_pb2.Show
    setting: episode_pb2.Setting
    cast: Sequence[episode_pb2.Character]
    relationships: Sequence[episode_pb2.Relationship]
    seed: int
    scene_count: int
    request_id: str = ""
    notes: Sequence[str] = field(default_factory=tuple)


class Writer(Protocol):
    """A source of episodes. Every method may raise WriterError (see services/script/errors)."""

    name: str  # "procedural", "anthropic", "openai", or a chain like "anthropic>procedural"
    model: str  # "" for the procedural writer
    prompt_version: str  # Part of every cache key: bump when the output changes shape.

    async def write_outline(self, context: StoryContext) -> episode_pb2.Outline:
        """Title, logline, A and B plots, acts with one beat per scene."""
        ...

    async def write_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        index: int,
        earlier: Sequence[str],
    ) -> episode_pb2.Scene:
        """Scene `index` (0-based). Must not depend on which other scenes exist yet: scenes are
        written concurrently and cached one by one. `earlier` holds what the outline says
        happens before it."""
        ...

    async def rewrite_line(
        self,
        context: StoryContext,
        scene: episode_pb2.Scene,
        joke: episode_pb2.Joke,
    ) -> str:
        """A new version of the line that carries `joke` (the comedy pass keeps the better)."""
        ...

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        """The scene rewritten to address `notes` (validator issues or a user's notes)."""
        ...


class ProceduralWriter:
    """The offline writer: templates, grammars, the catalog and the humour pattern library."""

    name = procedural.WRITER_NAME
    model = ""
    prompt_version = procedural.PROMPT_VERSION

    async def write_outline(self, context: StoryContext) -> episode_pb2.Outline:
        return procedural.write_outline(
            context.show,
            context.setting,
            list(context.cast),
            list(context.relationships),
            context.scene_count,
            context.seed,
        )

    async def write_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        index: int,
        earlier: Sequence[str],
    ) -> episode_pb2.Scene:
        # Templates are fast (a few ms), but a 20-scene episode should not hold the loop.
        await asyncio.sleep(0)
        return procedural.write_scene(
            context.show,
            context.setting,
            list(context.cast),
            outline,
            index,
            context.seed,
            list(earlier),
        )

    async def rewrite_line(
        self,
        context: StoryContext,
        scene: episode_pb2.Scene,
        joke: episode_pb2.Joke,
    ) -> str:
        return procedural.punch_up(
            context.show, context.setting, list(context.cast), scene, joke, context.seed
        )

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        await asyncio.sleep(0)
        return procedural.revise_scene(
            context.show,
            context.setting,
            list(context.cast),
            outline,
            scene,
            context.seed,
            list(notes),
        )


def build_writers(
    settings: Settings, telemetry: Telemetry, coordination: CoordinationClient | None = None
) -> Mapping[str, Writer]:
    """Every writer this replica can use, by the name requests give: procedural always; the
    LLM writers and the `chain` when configured (services/script/llm/factory.py), sharing rate
    limits and budgets with the other replicas through `coordination` when given."""
    writers: dict[str, Writer] = {ProceduralWriter.name: ProceduralWriter()}
    writers.update(build_llm_writers(settings, telemetry, writers, coordination))
    return writers
