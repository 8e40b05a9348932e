"""Provider batches: many prepared requests as one Anthropic Message Batch or one OpenAI Batch
(half price, answered within 24 hours), through the official SDKs.

`BatchRunner` takes the exact bodies the interactive path sends (`provider.body(caller.prepare(r))`,
`stream` left out), keyed by a custom id that is a digest of the body (`custom_id`), so whoever
builds the same request again finds its answer. `submit` returns the provider's batch id,
`status` how far it has got, `results` the answers by custom id as `ItemResult`s (plain JSON
for the library, `chat_result()` for the writer). Retries of these calls are the SDK's own (a
poll that fails is simply tried again at the next interval).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, Protocol

import anthropic
import openai

from services.script.llm.budget import Usage
from services.script.llm.providers import NO_KEY, ChatResult

# The batch APIs' discount on every token (Anthropic and OpenAI: 50 %).
BATCH_PRICE_FACTOR = 0.5
OPENAI_ENDPOINT: Literal["/v1/chat/completions"] = "/v1/chat/completions"
SDK_RETRIES = 2


def custom_id(task: str, body: Mapping[str, Any]) -> str:
    """The item's id: its task and a digest of its body (Anthropic allows [A-Za-z0-9_-]{1,64})."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:40]
    return f"{task[:16]}-{digest}"


class BatchGone(Exception):
    """The provider does not know the batch (404): deleted, or another key's. Not retried."""


@dataclass(frozen=True)
class BatchItem:
    custom_id: str
    body: dict[str, Any]


@dataclass(frozen=True)
class BatchStatus:
    """The provider's view of a batch. `ended`: results (or failures) are final."""

    provider_batch_id: str
    state: str  # the provider's own word: in_progress, ended, completed, expired, ...
    ended: bool
    total: int
    succeeded: int
    failed: int
    usable: bool = True  # False: it ended without results (expired, failed, cancelled)


@dataclass(frozen=True)
class ItemResult:
    """One answer, JSON-ready (the library keeps it until the episode is assembled)."""

    custom_id: str
    ok: bool
    text: str = ""
    response_id: str = ""
    response_model: str = ""
    finish_reason: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    error: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ItemResult:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})

    @property
    def usage(self) -> Usage:
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_creation_tokens=self.cache_creation_tokens,
            cache_read_tokens=self.cache_read_tokens,
        )

    def chat_result(self) -> ChatResult:
        return ChatResult(
            text=self.text,
            response_id=self.response_id,
            response_model=self.response_model,
            finish_reasons=(self.finish_reason,) if self.finish_reason else (),
            usage=self.usage,
        )


class BatchRunner(Protocol):
    name: str

    async def submit(self, items: Sequence[BatchItem], metadata: Mapping[str, str]) -> str: ...

    async def status(self, provider_batch_id: str) -> BatchStatus: ...

    async def results(self, provider_batch_id: str) -> dict[str, ItemResult]: ...

    async def aclose(self) -> None: ...


def _body(body: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k not in ("stream", "stream_options")}


class AnthropicBatches:
    """Message Batches: `messages.batches.create/retrieve/results`."""

    name = "anthropic"

    def __init__(self, api_key: str, base_url: str, timeout: float) -> None:
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or NO_KEY, base_url=base_url or None, max_retries=SDK_RETRIES,
            timeout=timeout,
        )  # fmt: skip

    async def submit(self, items: Sequence[BatchItem], metadata: Mapping[str, str]) -> str:
        requests: Any = [{"custom_id": i.custom_id, "params": _body(i.body)} for i in items]
        batch = await self._client.messages.batches.create(requests=requests)
        return batch.id

    async def status(self, provider_batch_id: str) -> BatchStatus:
        try:
            batch = await self._client.messages.batches.retrieve(provider_batch_id)
        except anthropic.NotFoundError:
            raise BatchGone(f"anthropic does not know batch {provider_batch_id}") from None
        counts = batch.request_counts
        total = (
            counts.processing + counts.succeeded + counts.errored + counts.canceled + counts.expired
        )
        state: str = batch.processing_status
        if state == "ended" and not (counts.succeeded or counts.errored):
            state = f"ended: {counts.expired} expired, {counts.canceled} canceled"
        return BatchStatus(
            provider_batch_id=batch.id,
            state=state,
            ended=batch.processing_status == "ended",
            total=total,
            succeeded=counts.succeeded,
            failed=counts.errored + counts.canceled + counts.expired,
            usable=counts.succeeded > 0 or counts.errored > 0,
        )

    async def results(self, provider_batch_id: str) -> dict[str, ItemResult]:
        found: dict[str, ItemResult] = {}
        async for line in await self._client.messages.batches.results(provider_batch_id):
            outcome = line.result
            if outcome.type != "succeeded":
                error: str = outcome.type
                if outcome.type == "errored":
                    inner = getattr(outcome.error, "error", None)
                    error = f"errored: {getattr(inner, 'type', 'error')}"
                found[line.custom_id] = ItemResult(line.custom_id, ok=False, error=error)
                continue
            message = outcome.message
            text = "".join(b.text for b in message.content if b.type == "text")
            usage = message.usage
            found[line.custom_id] = ItemResult(
                line.custom_id, ok=True, text=text, response_id=message.id,
                response_model=message.model, finish_reason=message.stop_reason or "",
                input_tokens=usage.input_tokens, output_tokens=usage.output_tokens,
                cache_creation_tokens=usage.cache_creation_input_tokens or 0,
                cache_read_tokens=usage.cache_read_input_tokens or 0,
            )  # fmt: skip
        return found

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIBatches:
    """The Batch API: `files.create` (JSONL), `batches.create/retrieve`, `files.content`."""

    name = "openai"

    def __init__(self, api_key: str, base_url: str, timeout: float) -> None:
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url or None, max_retries=SDK_RETRIES,
            timeout=timeout,
        )  # fmt: skip

    async def submit(self, items: Sequence[BatchItem], metadata: Mapping[str, str]) -> str:
        lines = [
            json.dumps({"custom_id": i.custom_id, "method": "POST", "url": OPENAI_ENDPOINT,
                        "body": _body(i.body)})
            for i in items
        ]  # fmt: skip
        data = ("\n".join(lines) + "\n").encode()
        uploaded = await self._client.files.create(
            file=("batch.jsonl", io.BytesIO(data), "application/jsonl"), purpose="batch"
        )
        batch = await self._client.batches.create(
            input_file_id=uploaded.id, endpoint=OPENAI_ENDPOINT, completion_window="24h",
            metadata=dict(metadata),
        )  # fmt: skip
        return batch.id

    async def status(self, provider_batch_id: str) -> BatchStatus:
        try:
            batch = await self._client.batches.retrieve(provider_batch_id)
        except openai.NotFoundError:
            raise BatchGone(f"openai does not know batch {provider_batch_id}") from None
        counts = batch.request_counts
        ended = batch.status in ("completed", "failed", "expired", "cancelled")
        return BatchStatus(
            provider_batch_id=batch.id,
            state=batch.status,
            ended=ended,
            total=counts.total if counts else 0,
            succeeded=counts.completed if counts else 0,
            failed=counts.failed if counts else 0,
            usable=batch.status == "completed",
        )

    async def results(self, provider_batch_id: str) -> dict[str, ItemResult]:
        batch = await self._client.batches.retrieve(provider_batch_id)
        found: dict[str, ItemResult] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            content = await self._client.files.content(file_id)
            for raw in content.text.splitlines():
                if raw.strip():
                    item = _openai_item(json.loads(raw))
                    found[item.custom_id] = item
        return found

    async def aclose(self) -> None:
        await self._client.close()


def _openai_item(line: Mapping[str, Any]) -> ItemResult:
    key = str(line.get("custom_id", ""))
    response = line.get("response") or {}
    if response.get("status_code") != 200:
        error = line.get("error") or (response.get("body") or {}).get("error") or {}
        kind = error.get("type") or error.get("code") or "error"
        return ItemResult(key, ok=False, error=f"HTTP {response.get('status_code')}: {kind}")
    body = response.get("body") or {}
    choice = (body.get("choices") or [{}])[0]
    usage = body.get("usage") or {}
    cached = (usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    return ItemResult(
        key, ok=True, text=(choice.get("message") or {}).get("content") or "",
        response_id=body.get("id", ""), response_model=body.get("model", ""),
        finish_reason=choice.get("finish_reason") or "",
        input_tokens=int(usage.get("prompt_tokens", 0)) - cached,
        output_tokens=int(usage.get("completion_tokens", 0)), cache_read_tokens=cached,
    )  # fmt: skip
