"""The wire side of the loopback provider (testkit/llm_server.py): its tokenizer and prompt cache,
server-sent events in each provider's format, and the structured-output checks a real API makes
(the subsets are in testkit/provider_schemas.py)."""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

import jsonschema

from testkit import provider_schemas

ANTHROPIC_PATH = "/v1/messages"
ANTHROPIC_COUNT_PATH = "/v1/messages/count_tokens"
OPENAI_PATH = "/v1/chat/completions"
# The loopback's tokenizer: 3.5 characters a token (JSON-heavy prompts), per text block, rounded
# up; deliberately not our client's initial 4, so calibration has something to learn.
CHARS_PER_TOKEN = 3.5
MIN_CACHEABLE_TOKENS = 1024  # Both providers' minimum for the models the tests use.
OPENAI_CACHE_STEP = 128  # OpenAI caches prefixes in steps of 128 tokens.


def cacheable_prefixes(path: str, body: dict[str, Any]) -> tuple[int, list[tuple[int, str]]]:
    """The prompt's tokens, and (cumulative tokens, key) of each prefix a provider would cache:
    Anthropic's at the request's breakpoints, OpenAI's at every 128 tokens; from 1,024 tokens,
    keyed by the model and the text."""
    blocks = text_blocks(path, body)
    total = sum(tokens_of(text) for text, _ in blocks)
    digest = hashlib.sha256(str(body.get("model", "")).encode())
    seen: list[tuple[int, str]] = []  # (cumulative tokens, key) of the cacheable prefixes
    if path == ANTHROPIC_PATH:
        cumulative = 0
        for text, mark in blocks:
            digest.update(b"\0" + text.encode())
            cumulative += tokens_of(text)
            if mark and cumulative >= MIN_CACHEABLE_TOKENS:
                seen.append((cumulative, digest.hexdigest()))
    else:
        text = "\0".join(block for block, _ in blocks)
        step = int(OPENAI_CACHE_STEP * CHARS_PER_TOKEN)
        for end in range(step, len(text) + 1, step):
            digest.update(text[end - step : end].encode())
            tokens = end // step * OPENAI_CACHE_STEP
            if tokens >= MIN_CACHEABLE_TOKENS:
                seen.append((tokens, digest.hexdigest()))
    return total, seen


def tokens_of(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def text_blocks(path: str, body: dict[str, Any]) -> list[tuple[str, bool]]:
    """(text, ends at a cache breakpoint) of every block of the prompt, in order."""
    blocks: list[tuple[str, bool]] = []

    def add(content: Any) -> None:
        if isinstance(content, str):
            blocks.append((content, False))
            return
        for block in content or []:
            blocks.append((str(block.get("text", "")), "cache_control" in block))

    if path == ANTHROPIC_PATH:
        add(body.get("system") or [])
    for message in body.get("messages", []):
        add(message.get("content", ""))
    return blocks


def usage_fields(response: Any) -> dict[str, int]:
    """What a 200 answer reported, for `Received`."""
    if not isinstance(response, dict) or "usage" not in response:
        return {}
    usage = response["usage"]
    if "prompt_tokens" in usage:
        cached = usage["prompt_tokens_details"]["cached_tokens"]
        return {"input_tokens": usage["prompt_tokens"], "cached_tokens": cached,
                "output_tokens": usage["completion_tokens"]}  # fmt: skip
    created, read = usage["cache_creation_input_tokens"], usage["cache_read_input_tokens"]
    return {"input_tokens": usage["input_tokens"] + created + read, "cached_tokens": read,
            "cache_creation_tokens": created, "output_tokens": usage["output_tokens"]}  # fmt: skip


def _pieces(text: str, count: int) -> list[str]:
    size = max(1, -(-len(text) // max(1, count)))
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _sse(data: Any, event: str | None = None) -> bytes:
    head = f"event: {event}\n" if event else ""
    body = data if isinstance(data, str) else json.dumps(data)
    return f"{head}data: {body}\n\n".encode()


def sse_events(path: str, body: dict[str, Any], message: Any, chunks: int) -> list[bytes]:
    """A finished (non-streamed) answer as the provider's stream of events."""
    if path == ANTHROPIC_PATH:
        text = "".join(block["text"] for block in message["content"])
        usage = dict(message["usage"])
        start = {**message, "content": [], "stop_reason": None,
                 "usage": {**usage, "output_tokens": 1}}  # fmt: skip
        events = [
            _sse({"type": "message_start", "message": start}, "message_start"),
            _sse({"type": "content_block_start", "index": 0,
                  "content_block": {"type": "text", "text": ""}}, "content_block_start"),
            _sse({"type": "ping"}, "ping"),
        ]  # fmt: skip
        events += [
            _sse({"type": "content_block_delta", "index": 0,
                  "delta": {"type": "text_delta", "text": piece}}, "content_block_delta")
            for piece in _pieces(text, chunks)
        ]  # fmt: skip
        return [
            *events,
            _sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            _sse({"type": "message_delta",
                  "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                  "usage": {"output_tokens": usage["output_tokens"]}}, "message_delta"),
            _sse({"type": "message_stop"}, "message_stop"),
        ]  # fmt: skip
    choice = message["choices"][0]
    base = {k: message[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
        return _sse({**base, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": piece}) for piece in _pieces(choice["message"]["content"], chunks)]
    events.append(chunk({}, choice["finish_reason"]))
    if (body.get("stream_options") or {}).get("include_usage"):
        events.append(_sse({**base, "choices": [], "usage": message["usage"]}))
    return [*events, _sse("[DONE]")]


def _schema_sent(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    if path == ANTHROPIC_PATH:
        fmt = (body.get("output_config") or {}).get("format") or {}
        return fmt.get("schema")
    spec = (body.get("response_format") or {}).get("json_schema") or {}
    return spec.get("schema")


def refusal(path: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The provider's 400 body for a request it would refuse, else None."""
    if path == ANTHROPIC_PATH:
        problems = provider_schemas.anthropic_problems(body.get("output_config"))
        if not problems:
            return None
        message = "; ".join(problems[:5])
        return {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    if "max_tokens" in body:
        message = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
        return {"error": {"message": message, "type": "invalid_request_error",
                          "param": "max_tokens", "code": "unsupported_parameter"}}  # fmt: skip
    problems = provider_schemas.openai_problems(body.get("response_format"))
    if not problems:
        return None
    return {"error": {"message": "Invalid schema for response_format: " + "; ".join(problems[:5]),
                      "type": "invalid_request_error", "param": "response_format",
                      "code": "invalid_json_schema"}}  # fmt: skip


def constrained(
    path: str, body: dict[str, Any], payload: dict[str, Any]
) -> tuple[dict[str, Any], str | None]:
    """The answer as constrained decoding writes it, and why it does not match the schema sent
    (None when it does, or when no schema was sent)."""
    sent = _schema_sent(path, body)
    if sent is None:
        return payload, None
    if path == OPENAI_PATH:
        payload = provider_schemas.fill_nulls(payload, sent)
    try:
        jsonschema.validate(payload, sent)
    except jsonschema.ValidationError as exc:
        return payload, f"{path}: {exc.message}"
    return payload, None


def upper_speakers(payload: dict[str, Any]) -> dict[str, Any]:
    for element in payload.get("elements", []):
        if element.get("type") == "dialogue":
            element["character"] = element["character"].upper()
    return payload
