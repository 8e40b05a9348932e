"""Builds the LLM writers a replica's configuration asks for.

`anthropic` is registered when ANTHROPIC_API_KEY or ANTHROPIC_BASE_URL is set, `openai` when
OPENAI_API_KEY or OPENAI_BASE_URL is; `chain` (DOPPEL_WRITER_FALLBACK, its unconfigured members
left out) whenever one of its members exists. The writers share one set of rate limiters (per
provider key and model class), the budgets (per episode and per caller), and the GenAI
instruments. With `coordination` (the cache service), limiters and budgets are shared by every
replica (quota.py, spending.py); without it they are this process's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from services.script.coordination import CoordinationClient, fingerprint
from services.script.llm.budget import Budgets, CallerCaps, Prices
from services.script.llm.caller import LLMCaller
from services.script.llm.chain import FallbackWriter
from services.script.llm.providers import AnthropicChat, ChatProvider, OpenAIChat
from services.script.llm.quota import RateLimits
from services.script.llm.ratelimit import Limits
from services.script.llm.retry import RetryPolicy
from services.script.llm.spending import Spending
from services.script.llm.telemetry import GenAIInstruments
from services.script.llm.writer import LLMWriter
from services.script.writing import Writer
from shared.config import Settings
from shared.telemetry import Telemetry

CHAIN = "chain"
# A granted request or a reservation counts as finished this long after its HTTP timeout, if its
# replica never settles it (it died).
LEASE_MARGIN_SECONDS = 30.0


def key_fingerprint(provider: str, api_key: str, base_url: str) -> str:
    """What names a provider quota: the key (providers limit per key or organisation) at the
    provider's host (another host is another provider: a gateway, a local server). The URL's path
    plays no part, so replicas reaching one host by different paths still share."""
    host = urlsplit(base_url).netloc.lower() if base_url else "default"
    return fingerprint(provider, api_key, host)


def _providers(settings: Settings) -> dict[str, tuple[ChatProvider, str, str]]:
    """(provider, model, key fingerprint) by writer name."""
    providers: dict[str, tuple[ChatProvider, str, str]] = {}
    timeout, idle = settings.llm_timeout_seconds, settings.llm_idle_timeout_seconds
    if settings.anthropic_api_key or settings.anthropic_base_url:
        anthropic_chat = AnthropicChat(
            settings.anthropic_api_key, settings.anthropic_base_url, timeout, idle
        )
        key = key_fingerprint("anthropic", settings.anthropic_api_key, settings.anthropic_base_url)
        providers["anthropic"] = (anthropic_chat, settings.anthropic_model, key)
    if settings.openai_api_key or settings.openai_base_url:
        openai_chat = OpenAIChat(settings.openai_api_key, settings.openai_base_url, timeout, idle)
        key = key_fingerprint("openai", settings.openai_api_key, settings.openai_base_url)
        providers["openai"] = (openai_chat, settings.openai_model, key)
    return providers


def build_llm_writers(
    settings: Settings,
    telemetry: Telemetry,
    others: Mapping[str, Writer],
    coordination: CoordinationClient | None = None,
) -> dict[str, Writer]:
    """The configured LLM writers and the chain, by name; `others` (procedural) may join it."""
    lease = settings.llm_timeout_seconds + LEASE_MARGIN_SECONDS
    limits = RateLimits(
        Limits.per_minute(
            settings.llm_requests_per_minute,
            settings.llm_tokens_per_minute,
            settings.llm_rate_window_seconds,
            settings.llm_input_tokens_per_minute,
            settings.llm_output_tokens_per_minute,
        ),
        coordination,
        settings.llm_replicas_hint,
        lease,
    )
    spending = Spending(
        coordination,
        replicas_hint=settings.llm_replicas_hint,
        # A reservation is made before the wait for a rate-limit slot.
        lease_seconds=lease + settings.llm_max_queue_seconds,
    )
    caps = CallerCaps(
        settings.llm_caller_tokens_per_hour,
        settings.llm_caller_usd_per_hour,
        settings.llm_caller_tokens_per_day,
        settings.llm_caller_usd_per_day,
    )
    budgets = Budgets(
        spending, settings.llm_episode_max_tokens, settings.llm_episode_max_cost_usd, caps
    )
    prices = Prices(settings.llm_prices)
    instruments = GenAIInstruments(telemetry.meter)
    writers: dict[str, Writer] = {}
    for name, (provider, model, key) in _providers(settings).items():
        policy = RetryPolicy(
            max_attempts=settings.llm_max_attempts,
            base_seconds=settings.llm_backoff_seconds,
            max_seconds=settings.llm_max_backoff_seconds,
            max_wait_seconds=settings.llm_max_wait_seconds,
            max_queue_seconds=settings.llm_max_queue_seconds,
        )
        caller = LLMCaller(
            provider, model, limits.limiter(name, model, key), policy, prices,
            telemetry.tracer, instruments, settings.llm_capture_content,
            faults=telemetry.faults,
            # Anthropic does not count cache reads against its input-token limits.
            cache_reads_count=name != "anthropic",
        )  # fmt: skip
        writers[name] = LLMWriter(
            name, caller, budgets, settings.llm_temperature, settings.llm_max_output_tokens
        )
    available = {**others, **writers}
    members = [available[name] for name in settings.writer_fallback if name in available]
    if members:
        writers[CHAIN] = FallbackWriter(members)
    return writers
