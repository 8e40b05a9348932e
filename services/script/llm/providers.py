"""One HTTP request to an LLM provider through its official SDK, with the SDK's retries off.

`AnthropicChat` (Messages API) and `OpenAIChat` (chat.completions on any OpenAI-compatible base
URL) turn a `ChatRequest` into a `ChatResult`, or raise `ProviderFailure` saying whether a retry
may help and what the response headers asked for. Retries, rate limits and telemetry live in
`caller.py`. Keys go to the SDK client and nowhere else; error messages carry status codes and
the provider's error type, never request content.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

import anthropic
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


class ChatProvider(Protocol):
    name: str  # gen_ai.provider.name
    sends_temperature: bool
    server_address: str
    server_port: int

    def body(self, request: ChatRequest) -> dict[str, Any]: ...

    async def chat(self, request: ChatRequest) -> ChatResult: ...

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
    if isinstance(exc, timeout_type):
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


class AnthropicChat:
    """The Messages API through `anthropic.AsyncAnthropic`.

    No temperature: SDK 2.x has no sampling parameters, and the API version it sends
    (2026-10-21) answers any `temperature`, `top_p` or `top_k` with 400 on every model.
    """

    name = "anthropic"
    sends_temperature = False

    def __init__(self, api_key: str, base_url: str, timeout: float) -> None:
        self.server_address, self.server_port = _address(base_url, DEFAULT_ANTHROPIC_URL)
        self._client = anthropic.AsyncAnthropic(
            api_key=api_key or NO_KEY,
            base_url=base_url or None,
            max_retries=0,
            timeout=timeout,
            open_telemetry=False,  # Our own GenAI spans; the SDK's would duplicate them.
            http_client=anthropic.DefaultAsyncHttpxClient(limits=CONNECTION_LIMITS),
        )

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The Messages API request body, not sent: `chat` sends it, and a batch submitter can
        put the very same body in a Message Batch."""
        turns: list[Any] = [{"role": role, "content": text} for role, text in request.messages]
        body: dict[str, Any] = {
            "model": request.model,
            "max_tokens": request.max_tokens,
            "system": [
                {"type": "text", "text": request.instructions},
                {"type": "text", "text": request.context, "cache_control": {"type": "ephemeral"}},
            ],
            "messages": turns,
        }
        if request.reply_schema is not None:
            body["output_config"] = structured.anthropic_output_config(dict(request.reply_schema))
        return body

    async def chat(self, request: ChatRequest) -> ChatResult:
        try:
            raw = await self._client.messages.with_raw_response.create(
                **self.body(request),
                extra_headers={
                    CALL_ID_HEADER: request.call_id,
                    ATTEMPT_HEADER: str(request.attempt),
                },
            )
            message = await raw.parse()
        except anthropic.APIStatusError as exc:
            raise _status_failure(self.name, exc) from None
        except anthropic.APIConnectionError as exc:
            raise _transport_failure(self.name, exc, anthropic.APITimeoutError) from None
        except (anthropic.APIError, ValueError) as exc:
            raise _invalid_response(self.name, exc) from None
        usage = message.usage
        return ChatResult(
            text="".join(block.text for block in message.content if block.type == "text"),
            response_id=message.id,
            response_model=message.model,
            finish_reasons=(message.stop_reason,) if message.stop_reason else (),
            usage=Usage(
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_creation_tokens=usage.cache_creation_input_tokens or 0,
                cache_read_tokens=usage.cache_read_input_tokens or 0,
            ),
            headers=dict(raw.headers),
        )

    async def aclose(self) -> None:
        await self._client.close()


class OpenAIChat:
    """chat.completions (JSON mode) through `openai.AsyncOpenAI`, on any compatible server."""

    name = "openai"
    sends_temperature = True

    def __init__(self, api_key: str, base_url: str, timeout: float) -> None:
        self.server_address, self.server_port = _address(base_url, DEFAULT_OPENAI_URL)
        self._client = openai.AsyncOpenAI(
            api_key=api_key or NO_KEY, base_url=base_url or None, max_retries=0, timeout=timeout,
            http_client=openai.DefaultAsyncHttpxClient(limits=CONNECTION_LIMITS),
        )  # fmt: skip

    def body(self, request: ChatRequest) -> dict[str, Any]:
        """The chat.completions request body, not sent (see AnthropicChat.body).
        `max_completion_tokens`: `max_tokens` is deprecated, and refused by reasoning models."""
        # The shared context leads the prompt, so servers with prefix caching reuse it.
        system = f"{request.context}\n\n{request.instructions}"
        turns = [{"role": "system", "content": system}]
        turns += [{"role": role, "content": text} for role, text in request.messages]
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

    async def chat(self, request: ChatRequest) -> ChatResult:
        try:
            raw = await self._client.chat.completions.with_raw_response.create(
                **self.body(request),
                extra_headers={
                    CALL_ID_HEADER: request.call_id,
                    ATTEMPT_HEADER: str(request.attempt),
                },
            )
            completion = raw.parse()
        except openai.APIStatusError as exc:
            raise _status_failure(self.name, exc) from None
        except openai.APIConnectionError as exc:
            raise _transport_failure(self.name, exc, openai.APITimeoutError) from None
        except (openai.OpenAIError, ValueError) as exc:
            raise _invalid_response(self.name, exc) from None
        if not completion.choices:
            raise ProviderFailure(
                "openai sent no choices", error_type="invalid_response", retryable=True
            )
        choice = completion.choices[0]
        usage = completion.usage
        cached = 0
        if usage is not None and usage.prompt_tokens_details is not None:
            cached = usage.prompt_tokens_details.cached_tokens or 0
        prompt_tokens = usage.prompt_tokens if usage else 0
        return ChatResult(
            text=choice.message.content or "",
            response_id=completion.id,
            response_model=completion.model,
            finish_reasons=(choice.finish_reason,) if choice.finish_reason else (),
            usage=Usage(
                input_tokens=prompt_tokens - cached,
                output_tokens=usage.completion_tokens if usage else 0,
                cache_read_tokens=cached,
            ),
            headers=dict(raw.headers),
        )

    async def aclose(self) -> None:
        await self._client.close()
