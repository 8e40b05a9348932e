"""Input tokens of a request, for reservations and for the prompt-cache breakpoints.

Reservations (the episode budget, the caller's caps, the shared token limits) need a request's
input tokens before it is sent. The three cached blocks of prompts.py (universal, show, episode
constants) are counted by the provider's count endpoint once per distinct prefix (Anthropic
`/v1/messages/count_tokens`; counted in the background, so no call waits for it), and everything
else is estimated with a characters-per-token ratio calibrated from the usage providers report
(starting at 4 characters a token; OpenAI has no count endpoint, so calibration is all it gets).

A cache breakpoint only caches when the prefix up to it reaches the model's minimum cacheable
length (`min_cacheable_tokens`, the table below and docs/llm.md); a block whose prefix is shorter
is sent without a breakpoint.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Protocol

from services.script.llm.budget import Usage
from services.script.llm.providers import ChatRequest

log = logging.getLogger(__name__)

# (provider, model prefix, minimum cacheable prefix in tokens), first match wins. Published by
# the providers (Anthropic prompt caching docs; OpenAI: 1,024 tokens for every model that caches).
MIN_CACHEABLE_TOKENS: tuple[tuple[str, str, int], ...] = (
    ("anthropic", "claude-opus-4-5", 4096),
    ("anthropic", "claude-haiku-4-5", 4096),
    ("anthropic", "claude-3-5-haiku", 2048),
    ("anthropic", "claude-3-haiku", 2048),
    ("anthropic", "claude-", 1024),
    ("openai", "", 1024),
)
DEFAULT_MIN_CACHEABLE_TOKENS = 1024
INITIAL_TOKENS_PER_CHAR = 0.25
CALIBRATION_WEIGHT = 0.3  # of the newest observation in the moving average
MAX_COUNTED_PREFIXES = 4096


def min_cacheable_tokens(provider: str, model: str) -> int:
    for name, prefix, tokens in MIN_CACHEABLE_TOKENS:
        if name == provider and model.startswith(prefix):
            return tokens
    return DEFAULT_MIN_CACHEABLE_TOKENS


class Counting(Protocol):
    """A provider that may count tokens (AnthropicChat); None: it cannot."""

    async def count_tokens(self, request: ChatRequest, blocks: int) -> int | None: ...


def _blocks(request: ChatRequest) -> tuple[str, str, str]:
    return request.instructions, request.context, request.episode


def _key(model: str, blocks: tuple[str, ...]) -> str:
    digest = hashlib.sha256(model.encode())
    for block in blocks:
        digest.update(b"\0" + block.encode())
    return digest.hexdigest()


class TokenCounter:
    """One model's token figures: counted prefixes and the calibrated ratio."""

    def __init__(self, provider: object, model: str) -> None:
        self._provider = provider
        self._model = model
        self._per_char = INITIAL_TOKENS_PER_CHAR
        self._counted: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def tokens_per_char(self) -> float:
        return self._per_char

    def prefixes(self, request: ChatRequest) -> tuple[int, int, int]:
        """Tokens of the prompt up to the end of each cached block (cumulative): counted where
        the count endpoint has answered, else estimated (and a count started)."""
        blocks = _blocks(request)
        figures = []
        chars = 0
        for level in range(1, 4):
            chars += len(blocks[level - 1])
            key = _key(request.model, blocks[:level])
            counted = self._counted.get(key)
            if counted is None:
                self._count_soon(request, level, key)
                counted = round(chars * self._per_char)
            figures.append(counted)
        return figures[0], figures[1], figures[2]

    def estimate(self, request: ChatRequest, prefixes: tuple[int, int, int]) -> int:
        """The request's input tokens: its cached prefix, and the turns after it."""
        turns = sum(len(text) for _, text in request.messages)
        return prefixes[2] + round(turns * self._per_char) + 1

    def calibrate(self, request: ChatRequest, usage: Usage) -> None:
        """Moves the ratio toward what the provider reported for this request."""
        reported = usage.input_tokens + usage.cache_creation_tokens + usage.cache_read_tokens
        chars = sum(len(block) for block in _blocks(request))
        chars += sum(len(text) for _, text in request.messages)
        if reported <= 0 or chars <= 0:
            return
        observed = min(1.0, max(0.05, reported / chars))
        self._per_char += CALIBRATION_WEIGHT * (observed - self._per_char)

    def _count_soon(self, request: ChatRequest, level: int, key: str) -> None:
        counter = getattr(self._provider, "count_tokens", None)
        if counter is None or key in self._counted or len(self._counted) >= MAX_COUNTED_PREFIXES:
            return
        self._counted[key] = round(
            sum(len(block) for block in _blocks(request)[:level]) * self._per_char
        )  # Until the count answers; one count per prefix.

        async def count() -> None:
            try:
                tokens = await counter(request, level)
            except Exception as exc:  # The estimate stays; counting is an optimisation.
                log.debug("token count failed: %s", exc)
                return
            if tokens is not None:
                self._counted[key] = tokens

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # No event loop (a synchronous caller): the estimate stays.
            del self._counted[key]
            return
        task = loop.create_task(count())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def close(self) -> None:
        """Cancels the counts in flight (the provider is closing)."""
        for task in list(self._tasks):
            task.cancel()

    async def settled(self) -> None:
        """Waits for the counts in flight (tests and benchmarks)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
