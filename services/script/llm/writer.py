"""The LLM writer: the Writer protocol on top of one provider and model.

Each part is one structured request: the reply must be a JSON object matching the part's schema
(`schema.py`) and the content checks (speakers in the cast, library patterns, one beat per scene).
An invalid reply gets exactly one repair attempt, the problems sent back to the model; a second
invalid reply raises `InvalidOutputError`. Scenes come back scored with the procedural writer's
`score_joke`, so the comedy pass compares LLM and procedural jokes on the same scale.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import replace
from functools import lru_cache
from typing import Any, TypeVar

from opentelemetry import trace
from pydantic import BaseModel

from doppelganger.v1 import episode_pb2
from services.script import catalog
from services.script.llm import prompts, schema
from services.script.llm import telemetry as genai
from services.script.llm.budget import Budgets, EpisodeKey
from services.script.llm.caller import LLMCaller
from services.script.llm.provenance import OUTLINE, REVISE, REWRITE, SCENE, part_scope
from services.script.llm.providers import ChatRequest
from services.script.llm.quota import SharedLimiter
from services.script.validation import DEFAULT_SCENE_SECONDS
from services.script.writing import InvalidOutputError, StoryContext

log = logging.getLogger(__name__)

ReplyT = TypeVar("ReplyT", bound=BaseModel)
LINE_TOKENS_SHARE = 10  # A rewritten line gets a tenth of the output limit (at least 256).


def episode_key(context: StoryContext) -> EpisodeKey:
    """What identifies an episode for its budget."""
    setting = context.setting
    return (
        context.show.id,
        setting.id,
        setting.description,
        context.seed,
        context.scene_count,
        context.request_id,
    )


def target_runtime(context: StoryContext) -> float:
    """The episode's runtime target: the context's when it has one, else a scene's default
    runtime per scene (as the procedural writer's outline)."""
    explicit = float(getattr(context, "target_runtime_seconds", 0.0) or 0.0)
    return explicit or context.scene_count * DEFAULT_SCENE_SECONDS


@lru_cache(maxsize=64)
def _context_block(
    show: bytes, setting: bytes, cast: tuple[bytes, ...], links: tuple[bytes, ...]
) -> str:
    return prompts.show_context(
        episode_pb2.Show.FromString(show),
        episode_pb2.Setting.FromString(setting),
        [episode_pb2.Character.FromString(c) for c in cast],
        [episode_pb2.Relationship.FromString(r) for r in links],
    )


def context_block(context: StoryContext) -> str:
    """The show context of an episode (built once per episode, byte-identical on every call)."""
    return _context_block(
        context.show.SerializeToString(deterministic=True),
        context.setting.SerializeToString(deterministic=True),
        tuple(c.SerializeToString(deterministic=True) for c in context.cast),
        tuple(r.SerializeToString(deterministic=True) for r in context.relationships),
    )


@lru_cache(maxsize=64)
def _scene_schema_text(names: tuple[str, ...]) -> str:
    patterns = [pattern.id for pattern in catalog.load_patterns()]
    return json.dumps(schema.json_schema(schema.SceneOut, names, patterns))


def scene_schema(names: Sequence[str]) -> dict[str, Any]:
    """A scene's reply schema, speakers and patterns narrowed (built once per cast)."""
    return dict(json.loads(_scene_schema_text(tuple(names))))


class LLMWriter:
    """A Writer backed by one model (`anthropic` or `openai`)."""

    def __init__(
        self,
        name: str,
        caller: LLMCaller,
        budgets: Budgets,
        temperature: float,
        max_output_tokens: int,
    ) -> None:
        self.name = name
        self.model = caller.model
        self.prompt_version = prompts.PROMPT_VERSION
        self._caller = caller
        self._budgets = budgets
        self._temperature = temperature
        self._max_tokens = max_output_tokens

    async def write_outline(self, context: StoryContext) -> episode_pb2.Outline:
        target = target_runtime(context)
        request = prompts.outline_request(
            context.scene_count, context.seed, context.notes, target,
            premise=context.premise, avoid_kernels=context.avoid_kernels, bible=context.bible,
        )  # fmt: skip
        names = [character.name for character in context.cast]
        reply = await self._structured(
            context, (OUTLINE,), request, schema.OutlineOut,
            lambda r: schema.outline_problems(r, context.scene_count, names), self._max_tokens,
            schema.json_schema(schema.OutlineOut),
        )  # fmt: skip
        outline = schema.outline_to_proto(reply, context.scene_count, target)
        outline.premise = context.premise
        return outline

    async def write_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        index: int,
        earlier: Sequence[str],
    ) -> episode_pb2.Scene:
        names = [character.name for character in context.cast]
        request = prompts.scene_request(names, outline, index, earlier, context.seed, context.notes)
        reply = await self._structured(
            context, (SCENE, index), request, schema.SceneOut,
            lambda r: schema.scene_problems(r, names), self._max_tokens, scene_schema(names),
        )  # fmt: skip
        return schema.scene_to_proto(reply, index, outline, context.cast, context.setting)

    async def rewrite_line(
        self, context: StoryContext, scene: episode_pb2.Scene, joke: episode_pb2.Joke
    ) -> str:
        line = scene.elements[joke.element_index].dialogue
        request = prompts.line_request(scene, joke, line.character, line.text, context.seed)
        reply = await self._structured(
            context, (REWRITE, scene.index, joke.id), request, schema.LineOut,
            lambda r: schema.line_problems(r, line.text),
            max(256, self._max_tokens // LINE_TOKENS_SHARE), schema.json_schema(schema.LineOut),
        )  # fmt: skip
        return reply.text.strip()

    async def revise_scene(
        self,
        context: StoryContext,
        outline: episode_pb2.Outline,
        scene: episode_pb2.Scene,
        notes: Sequence[str],
    ) -> episode_pb2.Scene:
        names = [character.name for character in context.cast]
        request = prompts.revision_request(names, outline, scene, notes, context.seed)
        reply = await self._structured(
            context, (REVISE, scene.index), request, schema.SceneOut,
            lambda r: schema.scene_problems(r, names), self._max_tokens, scene_schema(names),
        )  # fmt: skip
        return schema.scene_to_proto(reply, scene.index, outline, context.cast, context.setting)

    @property
    def limiter(self) -> SharedLimiter:
        """The rate limiter of this writer's provider and model (shared with other writers)."""
        return self._caller.limiter

    async def aclose(self) -> None:
        self._caller.tokens.close()
        await self._caller.provider.aclose()

    async def _structured(
        self,
        context: StoryContext,
        part: tuple[str, int, str] | tuple[str, int] | tuple[str],
        request: prompts.Prompt,
        model: type[ReplyT],
        check: Callable[[ReplyT], list[str]],
        max_tokens: int,
        reply_schema: dict[str, Any],
    ) -> ReplyT:
        """The reply as `model`, after at most one repair; raises WriterError subtypes. The
        reply is constrained to `reply_schema` natively, and still checked here."""
        task = part[0]
        instruments = self._caller.instruments
        labels = {**genai.base_attributes(self._caller.provider.name, self.model),
                  "doppel.llm.task": task}  # fmt: skip
        with part_scope(*part) as record:
            budget = self._budgets.for_episode(episode_key(context))
            chat = ChatRequest(
                model=self.model,
                instructions=prompts.universal(),
                context=context_block(context),
                episode=request.episode,
                messages=(("user", request.task),),
                max_tokens=max_tokens,
                temperature=self._temperature,
                reply_schema=reply_schema,
                schema_name=model.__name__,
            )
            result = await self._caller.chat(chat, task, budget)
            reply, problems = schema.parse_reply(model, result.text, check)
            instruments.count_reply(result.truncated, problems.parse_failure, labels)
            if reply is None:
                instruments.repairs.add(1, labels)
                log.info("%s %s: invalid %s reply, one repair: %s", self.name, self.model, task,
                         "; ".join(problems[:3]))  # fmt: skip
                trace.get_current_span().add_event(
                    "doppel.llm.repair",
                    {"doppel.llm.task": task, "doppel.llm.problems": len(problems),
                     "doppel.llm.truncated": result.truncated},
                )  # fmt: skip
                repair = (
                    *chat.messages,
                    ("assistant", result.text or "(empty reply)"),
                    ("user", prompts.repair_request(problems, result.truncated)),
                )
                result = await self._caller.chat(replace(chat, messages=repair), task, budget)
                reply, problems = schema.parse_reply(model, result.text, check)
                instruments.count_reply(result.truncated, problems.parse_failure, labels)
                if reply is None:
                    raise InvalidOutputError(
                        f"{self.name} {self.model}: the {task} reply was still invalid after "
                        f"one repair: {'; '.join(problems[:3])}"
                    )
                record.repaired = True
            record.writer, record.model = self.name, self.model
            return reply
