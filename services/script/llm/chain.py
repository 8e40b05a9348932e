"""The fallback chain: a Writer that tries its members in order (e.g. anthropic, openai,
procedural) and records who wrote each part and why the others were passed over.

A member is passed over when it raises a WriterError other than BudgetExceeded or DeadlineExceeded
(no member can beat the client's deadline either): the budget is the
episode's, and running out of it stops the episode rather than quietly switching writers. Each
fallback becomes a `doppel.writer.fallback` event on the current span (the pipeline stage) and a
`Fallback` on the part's provenance record.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from opentelemetry import trace

from doppelganger.v1 import episode_pb2
from services.script.llm.provenance import OUTLINE, REVISE, REWRITE, SCENE, Fallback, part_scope
from services.script.writing import (
    BudgetExceeded,
    DeadlineExceeded,
    StoryContext,
    Writer,
    WriterError,
)

log = logging.getLogger(__name__)

MAX_REASON_CHARS = 300
ResultT = TypeVar("ResultT")


class FallbackWriter:
    """Writes with the first member that succeeds."""

    def __init__(self, members: Sequence[Writer]) -> None:
        if not members:
            raise ValueError("a fallback chain needs at least one writer")
        self.members = tuple(members)
        self.name = ">".join(member.name for member in members)
        self.model = ",".join(member.model for member in members if member.model)
        self.prompt_version = "+".join(member.prompt_version for member in members)

    async def write_outline(self, context: StoryContext) -> episode_pb2.Outline:
        return await self._first((OUTLINE,), lambda w: w.write_outline(context))

    async def write_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        index: int,
        earlier: Sequence[str],
    ) -> episode_pb2.Scene:
        return await self._first(
            (SCENE, index), lambda w: w.write_scene(context, outline, index, earlier)
        )

    async def rewrite_line(
        self, context: StoryContext, scene: episode_pb2.Scene, joke: episode_pb2.Joke
    ) -> str:
        return await self._first(
            (REWRITE, scene.index, joke.id), lambda w: w.rewrite_line(context, scene, joke)
        )

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        return await self._first(
            (REVISE, scene.index),
            lambda w: w.revise_scene(context, outline, scene, notes),
        )

    async def _first(
        self,
        part: tuple[str, int, str] | tuple[str, int] | tuple[str],
        call: Callable[[Writer], Awaitable[ResultT]],
    ) -> ResultT:
        span = trace.get_current_span()
        with part_scope(*part) as record:
            for position, member in enumerate(self.members):
                try:
                    result = await call(member)
                except (BudgetExceeded, DeadlineExceeded):
                    raise
                except WriterError as exc:
                    if position == len(self.members) - 1:
                        raise
                    successor = self.members[position + 1].name
                    reason = str(exc)[:MAX_REASON_CHARS]
                    record.fallbacks.append(
                        Fallback(member.name, member.model, exc.error_type, reason)
                    )
                    span.add_event(
                        "doppel.writer.fallback",
                        {"doppel.writer.part": record.label, "doppel.writer.from": member.name,
                         "doppel.writer.to": successor, "error.type": exc.error_type,
                         "doppel.writer.reason": reason},
                    )  # fmt: skip
                    log.warning("%s: %s failed (%s), falling back to %s",
                                record.label, member.name, reason, successor)  # fmt: skip
                    continue
                record.writer, record.model = member.name, member.model
                span.set_attribute("doppel.writer.used", member.name)
                span.set_attribute("doppel.writer.fallbacks", len(record.fallbacks))
                return result
        raise AssertionError("unreachable: the last member returns or raises")

    async def aclose(self) -> None:
        for member in self.members:
            close = getattr(member, "aclose", None)
            if close is not None:
                await close()
