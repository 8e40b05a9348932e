"""One HTTP request to an LLM provider through its official SDK, with the SDK's retries off.

`AnthropicChat` (Messages API) and `OpenAIChat` (chat.completions on any OpenAI-compatible base
URL) turn a `ChatRequest` into a `ChatResult`, or raise `ProviderFailure` saying whether a retry
may help and what the response headers asked for. Retries, rate limits and telemetry live in
`caller.py`. Keys go to the SDK client and nowhere else; error messages carry status codes and
the provider's error type, never request content.

Replies are streamed (SSE) so a call is bounded by an idle timeout, "no bytes for N s"
(DOPPEL_LLM_IDLE_TIMEOUT_SECONDS: httpx's read timeout applies to each read of the stream), rather
than by the time a long reply takes; DOPPEL_LLM_TIMEOUT_SECONDS stays the ceiling of a whole call.
`body()` builds a request without sending it (the seam for batch submission).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import anthropic
import httpx2 as httpx
import openai

from services.script.llm import structured
from services.script.llm.budget import Usage
from services.script.llm.retry import is_retryable_status

# Sent with every attempt so a provider's logs (and our loopback server) can group the attempts of
# one logical call; harmless to providers that ignore them.
CALL_ID_HEADER = "x-doppel-call-id"
ATTEMPT_HEADER = "x-doppel-attempt"
# The SDKs refuse to build a client without a key; local OpenAI-compatible servers need none.
NO_KEY = "not-needed"
DEFAULT_ANTHROPIC_URL = "https://api.anthropic.com"
DEFAULT_OPENAI_URL = "https://api.openai.com/v1"


@dataclass(frozen=True)
class ChatRequest:
    """One call, in the cache layout of prompts.py: `instructions` (universal), `context` (the
    show), `episode` (per-episode constants, sent ahead of the first user message), then the
    turns. `cache_breakpoints` says which of the three blocks ends at a cache breakpoint (one
    whose prefix is shorter than the model's minimum cacheable prefix is not marked)."""

    model: str
    instructions: str
    context: str  # The shared show context (cached).
    messages: Sequence[tuple[str, str]]  # (role, text), starting with the user's task
    max_tokens: int
    temperature: float | None  # None: not sent (see AnthropicChat)
    call_id: str = ""
    attempt: int = 1
    # The reply's JSON Schema (ours, pydantic's): sent as the provider's native constraint,
    # transformed to its subset (structured.py). None: free text.
    reply_schema: Mapping[str, Any] | None = None
    schema_name: str = "reply"
    episode: str = ""
    cache_breakpoints: tuple[bool, bool, bool] = (True, True, True)


@dataclass(frozen=True)
class ChatResult:
    text: str
    response_id: str
    response_model: str
    finish_reasons: tuple[str, ...]
    usage: Usage
    headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def truncated(self) -> bool:
        return any(reason in ("max_tokens", "length") for reason in self.finish_reasons)


class ProviderFailure(Exception):
    """One attempt failed. `error_type` is low-cardinality: a status code or a failure kind."""

    def __init__(
        self,
        message: str,
        *,
        error_type: str,
        retryable: bool,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.retryable = retryable
        self.status = status
        self.headers: Mapping[str, str] = dict(headers or {})


# Told how much of the reply has arrived (output tokens, estimated while streaming).
OutputProgress = Callable[[int], None]


class ChatProvider(Protocol):
    name: str  # gen_ai.provider.name
    sends_temperature: bool
    server_address: str
    server_port: int

    def body(self, request: ChatRequest) -> dict[str, Any]: ...

    async def chat(
        self, request: ChatRequest, on_output: OutputProgress | None = None
    ) -> ChatResult: ...

    async def aclose(self) -> None: ...


def _address(base_url: str, default: str) -> tuple[str, int]:
    parts = urlsplit(base_url or default)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return parts.hostname or "", port


def _status_failure(provider: str, exc: anthropic.APIStatusError | openai.APIStatusError) -> Any:
    status = exc.status_code
    kind = getattr(exc, "type", None) or type(exc).__name__
    return ProviderFailure(
        f"{provider} answered HTTP {status} ({kind})",
        error_type=str(status),
        retryable=is_retryable_status(status),
        status=status,
        headers=dict(exc.response.headers),
    )


def _transport_failure(provider: str, exc: Exception, timeout_type: type[Exception]) -> Any:
    if isinstance(exc, httpx.ReadTimeout):
        return ProviderFailure(
            f"{provider} sent no bytes within the idle timeout (DOPPEL_LLM_IDLE_TIMEOUT_SECONDS)",
            error_type="timeout",
            retryable=True,
        )
    if isinstance(exc, timeout_type | httpx.TimeoutException | TimeoutError):
        return ProviderFailure(f"{provider} timed out", error_type="timeout", retryable=True)
    return ProviderFailure(
        f"{provider} connection failed ({type(exc).__name__})",
        error_type="connection_error",
        retryable=True,
    )


def _invalid_response(provider: str, exc: Exception) -> ProviderFailure:
    return ProviderFailure(
        f"{provider} sent a response that could not be read ({type(exc).__name__})",
        error_type="invalid_response",
        retryable=True,
    )


# The SDKs' pool limits, with idle connections kept 30 s instead of 5: scene calls come in
# bursts (a wave of scenes, then of rewrites) seconds apart, and a burst that finds its
# connections expired pays a TCP and TLS handshake for each parallel call.
CONNECTION_LIMITS = type(anthropic.DEFAULT_CONNECTION_LIMITS)(
    max_connections=1000, max_keepalive_connections=100, keepalive_expiry=30.0
)


def _timeouts(idle: float) -> httpx.Timeout:
    """httpx's read timeout is per read: with a stream, "no bytes for `idle` seconds"."""
    return httpx.Timeout(idle, connect=min(idle, 10.0))


def _estimate(chars: int) -> int:
    return chars // 4 + 1


class AnthropicChat:
    """The Messages API through `anthropic.AsyncAnthropic`, streamed.

    No temperature: SDK 2.x has no sampling parameters, and the API version it sends
    (2026-10-21) answers any `temperature`, `top_p` or `top_k` with 400 on every model.
    """

    name = "anthropic"
    sends_temperature = False

    def __init__(
        self, api_key: str, base_url: str, timeout: float, idle_timeout: float | None = None
    ) -> None:
        self.server_address, self.server_port = _address(base_url, DEFAULT_ANTHROPIC_URL)
        self._ceiling = timeout
        self._baseline: int | None = None  # count_tokens of a bare one-character message
        self._baseline_lock = asyncio.Lock()
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or NO_KEY,
            base_url=base_url or None,
            max_retries=0,
            timeout=_timeouts(idle_timeout or timeout),
            open_telemetry=False,  # Our own GenAI spans; the SDK's would duplicate them.
            http_client=anthropic.DefaultAsyncHttpxClient(limits=CONNECTION_LIMITS),
        )

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The Messages API request body, not sent: `chat` sends it (streamed), and a batch
        submitter can put the very same body in a Message Batch."""
        marks = request.cache_breakpoints

        def block(text: str, mark: bool) -> dict[str, Any]:
            cached = {"cache_control": {"type": "ephemeral"}} if mark else {}
            return {"type": "text", "text": text, **cached}

        turns: list[Any] = [{"role": role, "content": text} for role, text in request.messages]
        if request.episode and turns:
            turns[0]["content"] = [
                block(request.episode, marks[2]),
                block(turns[0]["content"], False),
            ]
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "system": [block(request.instructions, marks[0]), block(request.context, marks[1])],
            "messages": turns,
        }
        if request.reply_schema is not None:
            body["output_config"] = structured.anthropic_output_config(dict(request.reply_schema))
        return body

    async def count_tokens(self, request: ChatRequest, blocks: int) -> int | None:
        """Input tokens of the first `blocks` cached blocks (1: universal, 2: + show context,
        3: + episode constants), from `/v1/messages/count_tokens` (free; its own rate limit)."""
        async with self._baseline_lock:  # counted once, however many counts start at once
            if self._baseline is None:
                bare = await self._client.messages.count_tokens(
                    model=request.model, messages=[{"role": "user", "content": "."}]
                )
                self._baseline = bare.input_tokens
        system: Any = [
            {"type": "text", "text": text}
            for text in (request.instructions, request.context)[: min(blocks, 2)]
        ]
        content: Any = "."  # the bare message the baseline counted, after the episode block
        if blocks >= 3 and request.episode:
            content = [{"type": "text", "text": request.episode}, {"type": "text", "text": "."}]
        counted = await self._client.messages.count_tokens(
            model=request.model, system=system, messages=[{"role": "user", "content": content}]
        )
        return max(0, counted.input_tokens - self._baseline)

    async def chat(
        self, request: ChatRequest, on_output: OutputProgress | None = None
    ) -> ChatResult:
        parts: list[str] = []
        chars = 0
        started: Any = None
        stop_reason = ""
        output_tokens = 0
        try:
            async with asyncio.timeout(self._ceiling):  # The whole call's ceiling.
                stream = await self._client.messages.create(
                    **self.body(request),
                    stream=True,
                    extra_headers={
                        CALL_ID_HEADER: request.call_id,
                        ATTEMPT_HEADER: str(request.attempt),
                    },
                )
                headers = dict(stream.response.headers)
                async for event in stream:
                    if event.type == "message_start":
                        started = event.message
                    elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                        parts.append(event.delta.text)
                        chars += len(event.delta.text)
                        if on_output is not None:
                            on_output(_estimate(chars))
                    elif event.type == "message_delta":
                        stop_reason = event.delta.stop_reason or ""
                        output_tokens = event.usage.output_tokens
        except anthropic.APIStatusError as exc:
            raise _status_failure(self.name, exc) from None
        except (anthropic.APIConnectionError, httpx.TransportError, TimeoutError) as exc:
            raise _transport_failure(self.name, exc, anthropic.APITimeoutError) from None
        except (anthropic.APIError, ValueError) as exc:
            raise _invalid_response(self.name, exc) from None
        if started is None:
            raise _invalid_response(self.name, ValueError("no message_start event"))
        usage = started.usage
        return ChatResult(
            text="".join(parts),
            response_id=started.id,
            response_model=started.model,
            finish_reasons=(stop_reason,) if stop_reason else (),
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=output_tokens or usage.output_tokens,
                cache_creation_tokens=usage.cache_creation_input_tokens or 0,
                cache_read_tokens=usage.cache_read_input_tokens or 0,
            ),
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIChat:
    """chat.completions (strict structured output) through `openai.AsyncOpenAI`, streamed, on
    any compatible server."""

    name = "openai"
    sends_temperature = True

    def __init__(
        self, api_key: str, base_url: str, timeout: float, idle_timeout: float | None = None
    ) -> None:
        self.server_address, self.server_port = _address(base_url, DEFAULT_OPENAI_URL)
        self._ceiling = timeout
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url or None, max_retries=0,
            timeout=_timeouts(idle_timeout or timeout),
            http_client=openai.DefaultAsyncHttpxClient(limits=CONNECTION_LIMITS),
        )  # fmt: skip

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The chat.completions request body, not sent (see AnthropicChat.body).
        `max_completion_tokens`: `max_tokens` is deprecated, and refused by reasoning models."""
        # Universal first, then the show, then the episode's constants: OpenAI caches the longest
        # byte-identical prefix (from 1,024 tokens, in steps of 128) without being asked.
        system = f"{request.instructions}\n\n{request.context}"
        turns = [{"role": "system", "content": system}]
        turns += [{"role": role, "content": text} for role, text in request.messages]
        if request.episode and len(turns) > 1:
            turns[1] = {"role": "user", "content": f"{request.episode}\n\n{turns[1]['content']}"}
        body: dict[str, Any] = {
            "model": request.model,
            "messages": turns,
            "max_completion_tokens": request.max_tokens,
        }
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.reply_schema is not None:
            body["response_format"] = structured.openai_response_format(
                request.schema_name, dict(request.reply_schema)
            )
        else:
            body["response_format"] = {"type": "json_object"}
        return body

    async def chat(
        self, request: ChatRequest, on_output: OutputProgress | None = None
    ) -> ChatResult:
        parts: list[str] = []
        chars = 0
        response_id = model = finish = ""
        usage: Any = None
        try:
            async with asyncio.timeout(self._ceiling):  # The whole call's ceiling.
                stream = await self._client.chat.completions.create(
                    **self.body(request),
                    stream=True,
                    stream_options={"include_usage": True},
                    extra_headers={
                        CALL_ID_HEADER: request.call_id,
                        ATTEMPT_HEADER: str(request.attempt),
                    },
                )
                headers = dict(stream.response.headers)
                async for chunk in stream:
                    response_id, model = chunk.id or response_id, chunk.model or model
                    usage = chunk.usage or usage
                    for choice in chunk.choices[:1]:
                        text = choice.delta.content if choice.delta else None
                        if text:
                            parts.append(text)
                            chars += len(text)
                            if on_output is not None:
                                on_output(_estimate(chars))
                        finish = choice.finish_reason or finish
        except openai.APIStatusError as exc:
            raise _status_failure(self.name, exc) from None
        except (openai.APIConnectionError, httpx.TransportError, TimeoutError) as exc:
            raise _transport_failure(self.name, exc, openai.APITimeoutError) from None
        except (openai.OpenAIError, ValueError) as exc:
            raise _invalid_response(self.name, exc) from None
        if not response_id:
            raise ProviderFailure(
                "openai sent no choices", error_type="invalid_response", retryable=True
            )
        cached = 0
        if usage is not None and usage.prompt_tokens_details is not None:
            cached = usage.prompt_tokens_details.cached_tokens or 0
        prompt_tokens = usage.prompt_tokens if usage else 0
        return ChatResult(
            text="".join(parts),
            response_id=response_id,
            response_model=model,
            finish_reasons=(finish,) if finish else (),
            usage=Usage(
                input_tokens=prompt_tokens - cached,
                output_tokens=usage.completion_tokens if usage else _estimate(chars),
                cache_read_tokens=cached,
            ),
            headers=headers,
        )

    async def aclose(self) -> None:
        await self._client.close()
