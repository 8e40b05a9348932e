"""What every writer shares: the story context, the Writer protocol and the errors writers raise.

A leaf on purpose: it imports no writer, so the procedural package, the LLM writers and the
registry that builds them (writers.py) all depend on it and never on each other in a circle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from doppelganger.v1 import episode_pb2

__all__ = [
    "BudgetExceeded",
    "DeadlineExceeded",
    "InvalidOutputError",
    "ProviderError",
    "RateLimitQueueFull",
    "SpendingCapExceeded",
    "StoryContext",
    "Writer",
    "WriterError",
]


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
    premise: str = ""  # the writer's pitch, in the new world (original names renamed)
    kernel: str = ""  # the A plot's story kernel: the outline's once it is written
    avoid_kernels: Sequence[str] = field(default_factory=tuple)  # an outline must pick another
    # A season's series bible as the outline reads it (bible.bible_lines): earlier episodes'
    # facts, gags, relationships; the outline calls back to them and repeats no used kernel.
    bible: Sequence[str] = field(default_factory=tuple)


class Writer(Protocol):
    """A source of episodes. Every method may raise WriterError (below)."""

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
        """Scene `index` (0-based), from `outline`: the scene's view of the outline (cards.py:
        its own beat and card, the cards that feed it, every beat's structure). Must not depend
        on which other scenes exist yet: scenes are written concurrently and cached one by one,
        under a key that hashes the view. `earlier` summarises the cards that feed it."""
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


# ---------------------------------------------------------------------------------------------
# Errors: `WriterError` is the base the pipeline catches; `grpc_code` tells it how to answer the
# client (`await context.abort(exc.grpc_code, str(exc))`). Messages name the writer and the cause,
# never a key or a prompt.


class WriterError(Exception):
    """A writer could not produce a part of the episode."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    error_type = "writer_error"  # Low-cardinality name for `error.type` and fallback records.


class ProviderError(WriterError):
    """The provider failed: a status we do not retry, retries exhausted, or a wait too long."""

    def __init__(self, message: str, *, error_type: str, status: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status


class RateLimitQueueFull(ProviderError):
    """No client-side rate-limit slot within DOPPEL_LLM_MAX_QUEUE_SECONDS: the replica is
    asking more of the provider than its limits allow. The chain may fall back on it."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class InvalidOutputError(WriterError):
    """The model's reply did not match the schema, even after the one repair attempt."""

    grpc_code = grpc.StatusCode.INTERNAL
    error_type = "invalid_output"


class BudgetExceeded(WriterError):
    """The episode's token or cost budget would be exceeded; the chain does not fall back on it."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    error_type = "budget_exceeded"


class SpendingCapExceeded(BudgetExceeded):
    """The caller's hourly or daily cap (DOPPEL_LLM_CALLER_*) would be exceeded; `retry_after_ms`
    is when its period ends. The chain does not fall back on it either."""

    error_type = "spending_cap"

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExceeded(WriterError):
    """The client's deadline leaves no time for the call; the chain does not fall back on it."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    error_type = "deadline_exceeded"
