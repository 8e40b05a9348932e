"""Per-model LLM statistics for `/metrics`, from what the monitor receives anyway.

Calls, outcomes and latency come from the `chat {model}` CLIENT spans (one per HTTP attempt),
tokens and cost from the `gen_ai.client.token.usage` and `doppel.llm.cost` metrics, so the LLM
dashboards work with or without a collector. Running totals since the monitor started; every
label is capped (`max_models`, `MAX_ERROR_TYPES`, `MAX_TOKEN_TYPES`; the rest is `_other`).
Families and labels: docs/monitor.md, Prometheus.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from services.monitor.sanitize import Sanitizer, clamp_total
from services.monitor.stats import OTHER, PROMETHEUS_BUCKETS, CappedValues
from services.monitor.traces import value_text

SPAN_PREFIX = "chat "  # "{gen_ai.operation.name} {gen_ai.request.model}", kind CLIENT.
PROVIDER = "gen_ai.provider.name"
MODEL = "gen_ai.request.model"
TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
UNKNOWN = "unknown"  # A provider or model the telemetry did not name.
ERROR_OTHER = "_OTHER"  # error.type of a failed call that names no type (semantic conventions).
DEFAULT_MAX_MODELS = 50
MAX_ERROR_TYPES = 50
MAX_TOKEN_TYPES = 10


@dataclass
class Latency:
    """Calls of one model in `PROMETHEUS_BUCKETS` (then +Inf), their total seconds and count."""

    buckets: list[int] = field(default_factory=lambda: [0] * (len(PROMETHEUS_BUCKETS) + 1))
    seconds: float = 0.0
    count: int = 0

    def add(self, seconds: float) -> None:
        self.buckets[bisect_left(PROMETHEUS_BUCKETS, seconds)] += 1
        self.seconds += seconds
        self.count += 1


Model = tuple[str, str]  # (provider, model)


class LLMStats:
    """Calls, latency, tokens and cost per (provider, model), with capped label values."""

    def __init__(
        self, max_models: int = DEFAULT_MAX_MODELS, names: Sanitizer | None = None
    ) -> None:
        self._names = Sanitizer() if names is None else names
        self._models = CappedValues(max_models)
        self._error_types = CappedValues(MAX_ERROR_TYPES)
        self._token_types = CappedValues(MAX_TOKEN_TYPES)
        self.calls: dict[tuple[str, str, str], int] = {}  # (provider, model, error type or "").
        self.latency: dict[Model, Latency] = {}
        self.tokens: dict[tuple[str, str, str], float] = {}  # (provider, model, token type).
        self.cost: dict[Model, float] = {}

    def model(self, provider: str, model: str) -> Model:
        """The (provider, model) pair a series is kept under: `_other` beyond the cap."""
        return self._models((provider or UNKNOWN, model or UNKNOWN), (OTHER, OTHER))

    @property
    def models(self) -> int:
        """(provider, model) pairs tracked (at most `max_models`)."""
        return len(self._models)

    def record_span(self, span: Span, error: bool) -> None:
        """One `chat {model}` CLIENT span; `error` as the operation statistics classified it."""
        provider = model = error_type = ""
        for kv in span.attributes:
            key = kv.key
            if key == PROVIDER:
                provider = value_text(kv.value)
            elif key == MODEL:
                model = value_text(kv.value)
            elif key == ERROR_TYPE:
                error_type = value_text(kv.value)
        if error and not error_type:
            error_type = ERROR_OTHER
        seconds = max(0.0, (span.end_time_unix_nano - span.start_time_unix_nano) * 1e-9)
        names = self._names
        self.record_call(
            names.name(provider, "provider"),
            names.name(model or span.name[len(SPAN_PREFIX) :], "model"),
            seconds,
            names.name(error_type, "error_type"),
        )

    def record_call(self, provider: str, model: str, seconds: float, error_type: str = "") -> None:
        """One call; `error_type` "" when it succeeded."""
        key = self.model(provider, model)
        if error_type:
            error_type = self._error_types(error_type, OTHER)
        calls = (*key, error_type)
        self.calls[calls] = self.calls.get(calls, 0) + 1
        latency = self.latency.get(key)
        if latency is None:
            latency = self.latency[key] = Latency()
        latency.add(seconds)

    def add_tokens(self, provider: str, model: str, token_type: str, tokens: float) -> None:
        """Tokens of one type; points without `gen_ai.token.type` are not attributable."""
        if not token_type:
            return
        key = (*self.model(provider, model), self._token_types(token_type, OTHER))
        self.tokens[key] = clamp_total(self.tokens.get(key, 0.0) + tokens)

    def add_cost(self, provider: str, model: str, usd: float) -> None:
        key = self.model(provider, model)
        self.cost[key] = clamp_total(self.cost.get(key, 0.0) + usd)
