"""GenAI telemetry of the LLM calls (OpenTelemetry semantic conventions for generative AI).

One CLIENT span `chat {model}` per HTTP attempt, with the request, response and usage attributes,
`error.type` on failure; metrics `gen_ai.client.token.usage` and `gen_ai.client.operation.duration`
(buckets to 120 s), plus `doppel.llm.calls` (attempts, by outcome: the monitor turns it into calls
per minute) and `doppel.llm.cost` (USD). Prompt and response text go on the span only when content
capture is on (`OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics

from services.script.llm.providers import ChatRequest, ChatResult

OPERATION = "chat"
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92, 120.0)  # fmt: skip
MAX_CAPTURED_CHARS = 64 * 1024


class GenAIInstruments:
    """The metric instruments, created once per meter."""

    def __init__(self, meter: metrics.Meter) -> None:
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Tokens used per LLM call, by gen_ai.token.type (input, output).",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="Duration of one LLM request.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.calls = meter.create_counter(
            "doppel.llm.calls",
            unit="{call}",
            description="LLM requests (every attempt), by provider, model and outcome.",
        )
        self.cost = meter.create_counter(
            "doppel.llm.cost", unit="USD", description="Estimated cost of LLM usage."
        )
        # How well structured output holds, by provider, model and task.
        self.repairs = meter.create_counter(
            "doppel.llm.repairs",
            unit="{call}",
            description="Repair calls made because a reply failed its schema or content checks.",
        )
        self.parse_failures = meter.create_counter(
            "doppel.llm.parse_failures",
            unit="{reply}",
            description="Replies that were not valid JSON of the reply schema.",
        )
        self.truncations = meter.create_counter(
            "doppel.llm.truncations",
            unit="{reply}",
            description="Replies cut off at the output token limit.",
        )

    def count_reply(
        self, truncated: bool, parse_failure: bool, attributes: Mapping[str, Any]
    ) -> None:
        """Counts one reply's truncation and parse failure (JSON or schema, not content)."""
        if truncated:
            self.truncations.add(1, attributes)
        if parse_failure:
            self.parse_failures.add(1, attributes)


def base_attributes(provider: str, model: str) -> dict[str, Any]:
    return {
        "gen_ai.operation.name": OPERATION,
        "gen_ai.provider.name": provider,
        "gen_ai.request.model": model,
    }


def request_attributes(
    provider: str, address: str, port: int, request: ChatRequest, task: str
) -> dict[str, Any]:
    attributes = {
        **base_attributes(provider, request.model),
        "gen_ai.request.max_tokens": request.max_tokens,
        "gen_ai.output.type": "json",
        "server.address": address,
        "server.port": port,
        "doppel.llm.task": task,
        "doppel.llm.attempt": request.attempt,
    }
    if request.temperature is not None:
        attributes["gen_ai.request.temperature"] = request.temperature
    return attributes


def response_attributes(result: ChatResult, cost: float) -> dict[str, Any]:
    usage = result.usage
    return {
        "gen_ai.response.id": result.response_id,
        "gen_ai.response.model": result.response_model,
        "gen_ai.response.finish_reasons": list(result.finish_reasons),
        # Semantic conventions: input_tokens includes the cached ones.
        "gen_ai.usage.input_tokens": usage.input_tokens
        + usage.cache_creation_tokens
        + usage.cache_read_tokens,
        "gen_ai.usage.output_tokens": usage.output_tokens,
        "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_tokens,
        "gen_ai.usage.cache_read.input_tokens": usage.cache_read_tokens,
        "doppel.llm.cost_usd": round(cost, 6),
    }


def _clip(text: str) -> str:
    return text if len(text) <= MAX_CAPTURED_CHARS else text[:MAX_CAPTURED_CHARS] + "..."


def content_attributes(request: ChatRequest) -> Mapping[str, str]:
    """Opt-in only: the system instructions and input messages as JSON."""
    system = [
        {"type": "text", "content": _clip(request.instructions)},
        {"type": "text", "content": _clip(request.context)},
    ]
    messages = [
        {"role": role, "parts": [{"type": "text", "content": _clip(text)}]}
        for role, text in request.messages
    ]
    return {
        "gen_ai.system_instructions": json.dumps(system),
        "gen_ai.input.messages": json.dumps(messages),
    }


def output_attributes(result: ChatResult) -> Mapping[str, str]:
    """Opt-in only: the reply as JSON."""
    message = {
        "role": "assistant",
        "parts": [{"type": "text", "content": _clip(result.text)}],
        "finish_reason": result.finish_reasons[0] if result.finish_reasons else "",
    }
    return {"gen_ai.output.messages": json.dumps([message])}
