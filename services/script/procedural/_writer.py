"""The procedural writer behind the Writer protocol, and the episode plans it keeps.

Every scene of an episode is written from the same EpisodePlan, so `EpisodePlans` builds it once
per (story, outline structure) and keeps the kernels and plans of the last PLANNED_EPISODES
episodes, least recently used out first. A plan is a pure function of its key, so keeping one
changes nothing but the time the next scene takes; the scene reads its own beat and card from the
outline (or the scene's view of it) it is given.
"""

from __future__ import annotations

import asyncio
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Generic, TypeAlias, TypeVar

from doppelganger.v1 import episode_pb2
from services.script.cards import structure
from services.script.procedural._assembly import (
    revise_planned_scene,
    scene_total,
    write_planned_scene,
)
from services.script.procedural._jokes import punch_up
from services.script.procedural._kernel import EpisodeKernel, build_kernel, choose_kernel
from services.script.procedural._outline import write_outline
from services.script.procedural._plan import EpisodePlan, plan_episode
from services.script.writing import StoryContext

WRITER_NAME = "procedural"
PROMPT_VERSION = "3"
PLANNED_EPISODES = 32  # episodes whose kernel and plans an EpisodePlans keeps

_K = TypeVar("_K")
_V = TypeVar("_V")
# (show, setting, cast) serialized deterministically, the seed, the premise and the kernel id:
# what a kernel depends on.
_StoryKey: TypeAlias = tuple[bytes, bytes, tuple[bytes, ...], int, str, str]


class _Recent(Generic[_K, _V]):
    """A mapping of at most `size` entries; the least recently used goes first."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._entries: OrderedDict[_K, _V] = OrderedDict()

    def get(self, key: _K, make: Callable[[], _V]) -> _V:
        """The entry for `key`, made (and kept) when missing."""
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = self._entries[key] = make()
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._entries)


class EpisodePlans:
    """The kernels and plans of the last `size` episodes, by their inputs; safe to share
    between threads (one lock around both maps)."""

    def __init__(self, size: int = PLANNED_EPISODES) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1 (got {size})")
        self._kernels: _Recent[_StoryKey, EpisodeKernel] = _Recent(size)
        self._plans: _Recent[tuple[_StoryKey, bytes, int], EpisodePlan] = _Recent(size)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many plans are kept (at most `size`)."""
        return len(self._plans)

    def kernel(
        self,
        show: episode_pb2.Show,
        setting: episode_pb2.Setting,
        cast: Sequence[episode_pb2.Character],
        seed: int,
        premise: str = "",
        kernel_id: str = "",
    ) -> EpisodeKernel:
        story = _story_key(show, setting, cast, seed, premise, kernel_id)
        with self._lock:
            return self._kernel(story, show, setting, cast, seed)

    def plan(
        self,
        show: episode_pb2.Show,
        setting: episode_pb2.Setting,
        cast: Sequence[episode_pb2.Character],
        seed: int,
        outline: episode_pb2.Outline,
        total: int,
    ) -> EpisodePlan:
        """The plan of `total` scenes (see `scene_total`) of the episode: one for every view of
        the same outline (the plan reads only its structure)."""
        story = _story_key(show, setting, cast, seed, outline.premise, outline.kernel)
        shape = structure(outline)
        key = (story, shape.SerializeToString(deterministic=True), total)

        def make() -> EpisodePlan:
            kernel = self._kernel(story, show, setting, cast, seed)
            return plan_episode(show, setting, cast, seed, shape, total, kernel=kernel)

        with self._lock:
            return self._plans.get(key, make)

    def _kernel(
        self,
        story: _StoryKey,
        show: episode_pb2.Show,
        setting: episode_pb2.Setting,
        cast: Sequence[episode_pb2.Character],
        seed: int,
    ) -> EpisodeKernel:
        premise, kernel_id = story[4], story[5]
        return self._kernels.get(
            story,
            lambda: build_kernel(show, setting, cast, seed, premise=premise, kernel_id=kernel_id),
        )


def _story_key(
    show: episode_pb2.Show,
    setting: episode_pb2.Setting,
    cast: Sequence[episode_pb2.Character],
    seed: int,
    premise: str,
    kernel_id: str,
) -> _StoryKey:
    return (
        show.SerializeToString(deterministic=True),
        setting.SerializeToString(deterministic=True),
        tuple(c.SerializeToString(deterministic=True) for c in cast),
        seed,
        " ".join(premise.split()),
        kernel_id or choose_kernel(show.id, seed, " ".join(premise.split())),
    )


class ProceduralWriter:
    """The offline writer: templates, grammars, the catalog and the humour pattern library."""

    name = WRITER_NAME
    model = ""
    prompt_version = PROMPT_VERSION

    def __init__(self, plans: EpisodePlans | None = None) -> None:
        self.plans = EpisodePlans() if plans is None else plans

    def _kernel(self, context: StoryContext) -> EpisodeKernel:
        """The episode's kernel: the context's (the outline's once written), else the first of
        the seed's kernels the context does not ask to avoid."""
        premise = " ".join(context.premise.split())
        kernel_id = context.kernel or choose_kernel(
            context.show.id, context.seed, premise, context.avoid_kernels
        )
        return self.plans.kernel(
            context.show, context.setting, context.cast, context.seed, premise, kernel_id
        )

    def _plan(self, context: StoryContext, outline: episode_pb2.Outline, index: int) -> EpisodePlan:
        total = scene_total(outline, index)
        return self.plans.plan(
            context.show, context.setting, context.cast, context.seed, outline, total
        )

    async def write_outline(self, context: StoryContext) -> episode_pb2.Outline:
        return write_outline(
            context.show,
            context.setting,
            list(context.cast),
            list(context.relationships),
            context.scene_count,
            context.seed,
            kernel=self._kernel(context),
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
        return write_planned_scene(self._plan(context, outline, index), index, outline=outline)

    async def rewrite_line(
        self,
        context: StoryContext,
        scene: episode_pb2.Scene,
        joke: episode_pb2.Joke,
    ) -> str:
        return punch_up(
            context.show, context.setting, list(context.cast), scene, joke, context.seed,
            kernel=self._kernel(context),
        )  # fmt: skip

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        await asyncio.sleep(0)
        plan = self._plan(context, outline, scene.index)
        return revise_planned_scene(plan, scene.index, list(notes), outline=outline)
