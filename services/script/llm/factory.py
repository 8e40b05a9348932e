"""Builds the LLM writers a replica's configuration asks for.

`anthropic` is registered when ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL is set, `openai` when
OPENAI_API_KEY or OPENAI_BASE_URL is; `chain` (DOPPEL_WRITER_FALLBACK, its unconfigured members
left out) whenever one of its members exists. The writers share one set of rate limiters (per
provider and model), one set of per-episode budgets, and the GenAI instruments.
"""

from __future__ import annotations

from collections.abc import Mapping

from services.script.llm.budget import Budgets, Prices
from services.script.llm.caller import LLMCaller
from services.script.llm.chain import FallbackWriter
from services.script.llm.providers import AnthropicChat, ChatProvider, OpenAIChat
from services.script.llm.ratelimit import RateLimits
from services.script.llm.retry import RetryPolicy
from services.script.llm.telemetry import GenAIInstruments
from services.script.llm.writer import LLMWriter
from services.script.writing import Writer
from shared.config import Settings
from shared.telemetry import Telemetry

CHAIN = "chain"


def _providers(settings: Settings) -> dict[str, tuple[ChatProvider, str]]:
    providers: dict[str, tuple[ChatProvider, str]] = {}
    timeout = settings.llm_timeout_seconds
    if settings.anthropic_api_key or settings.anthropic_base_url:
        anthropic_chat = AnthropicChat(
            settings.anthropic_api_key, settings.anthropic_base_url, timeout
        )
        providers["anthropic"] = (anthropic_chat, settings.anthropic_model)
    if settings.openai_api_key or settings.openai_base_url:
        openai_chat = OpenAIChat(settings.openai_api_key, settings.openai_base_url, timeout)
        providers["openai"] = (openai_chat, settings.openai_model)
    return providers


def build_llm_writers(
    settings: Settings, telemetry: Telemetry, others: Mapping[str, Writer]
) -> dict[str, Writer]:
    """The configured LLM writers and the chain, by name; `others` (procedural) may join it."""
    limits = RateLimits(
        settings.llm_requests_per_minute,
        settings.llm_tokens_per_minute,
        settings.llm_rate_window_seconds,
    )
    budgets = Budgets(settings.llm_episode_max_tokens, settings.llm_episode_max_cost_usd)
    prices = Prices(settings.llm_prices)
    instruments = GenAIInstruments(telemetry.meter)
    writers: dict[str, Writer] = {}
    for name, (provider, model) in _providers(settings).items():
        policy = RetryPolicy(
            max_attempts=settings.llm_max_attempts,
            base_seconds=settings.llm_backoff_seconds,
            max_seconds=settings.llm_max_backoff_seconds,
            max_wait_seconds=settings.llm_max_wait_seconds,
            max_queue_seconds=settings.llm_max_queue_seconds,
        )
        caller = LLMCaller(
            provider, model, limits.limiter(name, model), policy, prices,
            telemetry.tracer, instruments, settings.llm_capture_content,
            faults=telemetry.faults,
        )  # fmt: skip
        writers[name] = LLMWriter(
            name, caller, budgets, settings.llm_temperature, settings.llm_max_output_tokens
        )
    available = {**others, **writers}
    members = [available[name] for name in settings.writer_fallback if name in available]
    if members:
        writers[CHAIN] = FallbackWriter(members)
    return writers
