"""The LLM writer in batch mode: the same writer, its caller swapped for `BatchCaller`.

The writer builds its requests, parses and checks the replies exactly as it does interactively;
only the caller differs. Collecting (`results` None for a task), the caller records the prepared
request's body under its custom id and raises `Deferred`: that is how the outline and scene
requests of a batch are built, byte for byte the bodies the interactive path would send.
Answering, a request whose custom id has a batch result gets that result (usage recorded at
the batch price); anything else (a repair after an invalid batch reply, an item that failed,
the finishing passes: continuity, comedy, refinement) goes to the interactive caller.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.script.llm.batch import BATCH_PRICE_FACTOR, BatchItem, ItemResult, custom_id
from services.script.llm.budget import EpisodeBudget, Prices
from services.script.llm.caller import LLMCaller
from services.script.llm.provenance import OUTLINE, SCENE, current_part
from services.script.llm.providers import ChatRequest, ChatResult
from services.script.llm.writer import LLMWriter
from services.script.writing import Writer

# The tasks batches carry; every other call (continuity, comedy, refinement) is interactive.
BATCHED_TASKS = frozenset({OUTLINE, SCENE})


class Deferred(Exception):
    """Raised when collecting: the request was recorded for the batch."""

    def __init__(self, item: BatchItem) -> None:
        super().__init__(item.custom_id)
        self.item = item


@dataclass
class BatchTally:
    """Outline and scene calls the batch answered, and those asked interactively instead."""

    answered: int = 0
    interactive: int = 0
    collected: list[BatchItem] = field(default_factory=list)


class BatchCaller:
    """Quacks like LLMCaller for LLMWriter (chat, model, provider, limiter, instruments)."""

    def __init__(
        self,
        inner: LLMCaller,
        prices: Prices,
        results: Mapping[str, ItemResult] | None,
        collect_tasks: frozenset[str] = frozenset(),
    ) -> None:
        self.inner = inner
        self.model = inner.model
        self.provider = inner.provider
        self.limiter = inner.limiter
        self.instruments = inner.instruments
        self.policy = inner.policy
        self._prices = prices
        self._results = dict(results or {})
        self._collect = collect_tasks
        self.tally = BatchTally()

    def prepare(self, request: ChatRequest) -> ChatRequest:
        return self.inner.prepare(request)

    def item(self, request: ChatRequest, task: str) -> BatchItem:
        body = self.provider.body(self.inner.prepare(request))
        return BatchItem(custom_id(task, body), body)

    async def chat(self, request: ChatRequest, task: str, budget: EpisodeBudget) -> ChatResult:
        item = self.item(request, task)
        if task in self._collect:
            self.tally.collected.append(item)
            raise Deferred(item)
        found = self._results.get(item.custom_id)
        if found is None or not found.ok:
            if task in BATCHED_TASKS:  # A repair or a failed item (not a finishing pass).
                self.tally.interactive += 1
            return await self.inner.chat(request, task, budget)
        self.tally.answered += 1
        result = found.chat_result()
        self._record_usage(result)
        return result

    def _record_usage(self, result: ChatResult) -> None:
        part = current_part()
        if part is None:
            return
        usage = result.usage
        part.llm_calls += 1
        part.input_tokens += usage.input_tokens
        part.cache_creation_tokens += usage.cache_creation_tokens
        part.cache_read_tokens += usage.cache_read_tokens
        part.output_tokens += usage.output_tokens
        part.cost_usd += BATCH_PRICE_FACTOR * self._prices.cost(self.model, usage)


def batch_writer(
    writer: Writer,
    prices: Prices,
    results: Mapping[str, ItemResult] | None = None,
    collect_tasks: frozenset[str] = frozenset(),
) -> tuple[LLMWriter, BatchCaller]:
    """A copy of the LLM writer whose calls go through a BatchCaller (same name, model and
    prompt version, so the episode's id and cache keys are the interactive ones)."""
    if not isinstance(writer, LLMWriter):
        raise TypeError(f"writer {writer.name!r} has no batch API (anthropic or openai only)")
    caller = BatchCaller(writer._caller, prices, results, collect_tasks)
    clone = copy.copy(writer)
    clone._caller = caller  # type: ignore[assignment]
    return clone, caller


def prices_of(writer: Writer) -> Prices:
    """The price table the writer's caller uses."""
    caller: Any = getattr(writer, "_caller", None)
    return caller._prices if caller is not None else Prices([])  # type: ignore[no-any-return]
