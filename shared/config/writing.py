"""Settings of the writers' room: episode shape, writers, and what LLM writers may spend."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config.setting import (
    AMOUNT,
    COUNT,
    FLAG,
    MONEY,
    POSITIVE,
    SECONDS,
    TEXT,
    number,
    setting,
)
from shared.config.values import MODEL_PRICES, WRITER_CHAIN


@dataclass(frozen=True)
class WritingSettings:
    """The writers' room: episodes and writers"""

    max_parallel_scenes: int = setting(
        "DOPPEL_MAX_PARALLEL_SCENES", 4, COUNT, "Scenes of one episode written at the same time."
    )
    episode_minutes: float = setting(
        "DOPPEL_EPISODE_MINUTES", 22.0, POSITIVE,
        "Runtime target of an episode whose request leaves scene_count unset (8-12 scenes).",
    )  # fmt: skip
    scene_seconds: float = setting(
        "DOPPEL_SCENE_SECONDS", 120.0, number(60.0, 180.0),
        "Runtime target of a scene when the request sets scene_count.",
    )  # fmt: skip
    refinement_rounds: int = setting(
        "DOPPEL_REFINEMENT_ROUNDS", 3, AMOUNT,
        "Most refinement rounds after validation; 0: none.",
    )  # fmt: skip
    validation_threshold: float = setting(
        "DOPPEL_VALIDATION_THRESHOLD", 0.75, number(0.0, 1.0),
        "Overall validator score an episode needs to pass.",
    )  # fmt: skip
    default_writer: str = setting("DOPPEL_WRITER", "procedural", TEXT, "Default writer.")
    revision_page_color: bool = setting(
        "DOPPEL_REVISION_PAGE_COLOR", False, FLAG,
        "true: the scene service's PDFs tint revised pages in their revision set's colour.",
    )  # fmt: skip
    max_concurrent_episodes: int = setting(
        "DOPPEL_MAX_CONCURRENT_EPISODES", 16, COUNT,
        "Episodes (and scene revisions) a script replica writes at once; beyond it "
        "RESOURCE_EXHAUSTED, retry-after-ms.",
    )  # fmt: skip
    episode_timeout_seconds: float = setting(
        "DOPPEL_EPISODE_TIMEOUT_SECONDS", 900.0, SECONDS,
        "Longest an episode or revision may run, whatever the client's deadline; then "
        "DEADLINE_EXCEEDED.",
    )  # fmt: skip
    episode_lease_seconds: float = setting(
        "DOPPEL_EPISODE_LEASE_SECONDS", 10.0, number(1.0, 600.0),
        "An episode being written is leased in Redis for this long, renewed every third of it; "
        "an identical request on another replica is refused (ABORTED) meanwhile, and takes the "
        "episode over this long after its replica died.",
    )  # fmt: skip
    batch_poll_seconds: float = setting(
        "DOPPEL_BATCH_POLL_SECONDS", 30.0, SECONDS,
        "Batch mode: how often the script service polls the provider batches of unfinished "
        "batch jobs (and resumes them after a restart).",
    )  # fmt: skip
    batch_claim_seconds: float = setting(
        "DOPPEL_BATCH_CLAIM_SECONDS", 120.0, SECONDS,
        "Batch mode: a replica working on a batch job holds it this long (renewed while it "
        "works); another replica takes over a job whose holder died after this.",
    )  # fmt: skip
    season_parallel_episodes: int = setting(
        "DOPPEL_SEASON_PARALLEL_EPISODES", 4, COUNT,
        "Episodes of one WriteSeason written at the same time (each holds one of the "
        "replica's DOPPEL_MAX_CONCURRENT_EPISODES slots).",
    )  # fmt: skip
    anthropic_api_key: str = setting(
        "ANTHROPIC_API_KEY", "", TEXT,
        "Key of the `anthropic` writer (never logged); it or the base URL registers the writer.",
        secret=True,
    )  # fmt: skip
    anthropic_base_url: str = setting("ANTHROPIC_BASE_URL", "", TEXT, "Anthropic API base URL.")
    anthropic_model: str = setting(
        "DOPPEL_ANTHROPIC_MODEL", "claude-sonnet-4-5", TEXT, "Model of the `anthropic` writer."
    )
    openai_api_key: str = setting(
        "OPENAI_API_KEY", "", TEXT,
        "Key of the `openai` writer (never logged); it or the base URL registers the writer.",
        secret=True,
    )  # fmt: skip
    openai_base_url: str = setting(
        "OPENAI_BASE_URL", "", TEXT,
        "Any OpenAI-compatible base URL (vLLM, Ollama, llama.cpp), e.g. http://host:8000/v1.",
    )  # fmt: skip
    openai_model: str = setting(
        "DOPPEL_OPENAI_MODEL", "gpt-4o-mini", TEXT, "Model of the `openai` writer."
    )
    writer_fallback: tuple[str, ...] = setting(
        "DOPPEL_WRITER_FALLBACK", ("anthropic", "openai", "procedural"), WRITER_CHAIN,
        "Writers the `chain` writer tries in order (unconfigured ones are left out).",
    )  # fmt: skip


@dataclass(frozen=True)
class LLMSettings:
    """LLM writers: limits, retries, budgets"""

    llm_requests_per_minute: int = setting(
        "DOPPEL_LLM_REQUESTS_PER_MINUTE", 50, COUNT,
        "Client-side request limit per provider key and model class, all script replicas "
        "together (grants paced window / limit apart).",
    )  # fmt: skip
    llm_tokens_per_minute: int = setting(
        "DOPPEL_LLM_TOKENS_PER_MINUTE", 100_000, COUNT,
        "Client-side token limit (input + output) per provider key and model class, all "
        "replicas together.",
    )  # fmt: skip
    llm_rate_window_seconds: float = setting(
        "DOPPEL_LLM_RATE_WINDOW_SECONDS", 60.0, SECONDS,
        "Window the per-minute limits are enforced over (scaled to it); tests shrink it.",
    )  # fmt: skip
    llm_input_tokens_per_minute: int = setting(
        "DOPPEL_LLM_INPUT_TOKENS_PER_MINUTE", 0, AMOUNT,
        "Input-token limit per provider key and model class (cache reads not counted for "
        "Anthropic); 0: none.",
    )  # fmt: skip
    llm_output_tokens_per_minute: int = setting(
        "DOPPEL_LLM_OUTPUT_TOKENS_PER_MINUTE", 0, AMOUNT,
        "Output-token limit per provider key and model class (max_tokens reserved); 0: none.",
    )  # fmt: skip
    llm_replicas_hint: int = setting(
        "DOPPEL_LLM_REPLICAS_HINT", 1, COUNT,
        "Script replicas sharing a provider key: without the cache service each keeps to "
        "limits / this (set it to the HPA's maximum).",
    )  # fmt: skip
    llm_max_attempts: int = setting(
        "DOPPEL_LLM_MAX_ATTEMPTS", 4, COUNT,
        "Attempts per LLM call (429, 529, 5xx, timeouts, connection errors are retried).",
    )  # fmt: skip
    llm_backoff_seconds: float = setting(
        "DOPPEL_LLM_BACKOFF_SECONDS", 0.5, SECONDS,
        "First retry delay cap; doubles per attempt, full jitter.",
    )  # fmt: skip
    llm_max_backoff_seconds: float = setting(
        "DOPPEL_LLM_MAX_BACKOFF_SECONDS", 30.0, SECONDS, "Largest jittered retry delay."
    )
    llm_max_wait_seconds: float = setting(
        "DOPPEL_LLM_MAX_WAIT_SECONDS", 120.0, SECONDS,
        "Longest pause a retry-after or rate-limit reset may ask for; longer fails the call.",
    )  # fmt: skip
    llm_max_queue_seconds: float = setting(
        "DOPPEL_LLM_MAX_QUEUE_SECONDS", 30.0, SECONDS,
        "Longest an LLM call waits for a client-side rate-limit slot; longer fails the call "
        "(RESOURCE_EXHAUSTED, or the chain's next writer).",
    )  # fmt: skip
    llm_timeout_seconds: float = setting(
        "DOPPEL_LLM_TIMEOUT_SECONDS", 120.0, SECONDS,
        "Longest one LLM HTTP request may take, streamed or not (a ceiling for a stream that "
        "trickles; also the horizon of rate-limit and budget leases).",
    )  # fmt: skip
    llm_temperature: float = setting(
        "DOPPEL_LLM_TEMPERATURE", 0.8, number(0.0, 2.0),
        "Sampling temperature of outlines, scenes and rewrites.",
    )  # fmt: skip
    llm_idle_timeout_seconds: float = setting(
        "DOPPEL_LLM_IDLE_TIMEOUT_SECONDS", 30.0, SECONDS,
        "A streamed LLM reply that sends no bytes for this long is abandoned and retried "
        "(also the wait for the first byte).",
    )  # fmt: skip
    llm_max_output_tokens: int = setting(
        "DOPPEL_LLM_MAX_OUTPUT_TOKENS", 4096, COUNT,
        "max_tokens of an outline, scene or revision (a line gets a tenth).",
    )  # fmt: skip
    llm_episode_max_tokens: int = setting(
        "DOPPEL_LLM_EPISODE_MAX_TOKENS", 1_000_000, AMOUNT,
        "Token budget of one episode across LLM writers; 0: none.",
    )  # fmt: skip
    llm_episode_max_cost_usd: float = setting(
        "DOPPEL_LLM_EPISODE_MAX_COST_USD", 5.0, MONEY,
        "Cost budget of one episode in USD; 0: none.",
    )  # fmt: skip
    llm_prices: tuple[tuple[str, float, float], ...] = setting(
        "DOPPEL_LLM_PRICES",
        (
            ("claude-opus-4-1", 15.0, 75.0),
            ("claude-sonnet-4-5", 3.0, 15.0),
            ("claude-haiku-4-5", 1.0, 5.0),
            ("gpt-4o", 2.5, 10.0),
            ("gpt-4o-mini", 0.15, 0.6),
            ("*", 3.0, 15.0),
        ),
        MODEL_PRICES,
        "USD per million input/output tokens by model; `*` prices the rest.",
    )
    llm_caller_tokens_per_hour: int = setting(
        "DOPPEL_LLM_CALLER_TOKENS_PER_HOUR", 0, AMOUNT,
        "Tokens one caller may spend per clock hour, all replicas together; 0: no cap.",
    )  # fmt: skip
    llm_caller_usd_per_hour: float = setting(
        "DOPPEL_LLM_CALLER_USD_PER_HOUR", 0.0, MONEY,
        "USD one caller may spend per clock hour; 0: no cap.",
    )  # fmt: skip
    llm_caller_tokens_per_day: int = setting(
        "DOPPEL_LLM_CALLER_TOKENS_PER_DAY", 0, AMOUNT,
        "Tokens one caller may spend per UTC day; 0: no cap.",
    )  # fmt: skip
    llm_caller_usd_per_day: float = setting(
        "DOPPEL_LLM_CALLER_USD_PER_DAY", 0.0, MONEY,
        "USD one caller may spend per UTC day; 0: no cap.",
    )  # fmt: skip
    llm_capture_content: bool = setting(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", False, FLAG,
        "true: prompts and responses go on the `chat` spans (off: never).",
    )  # fmt: skip
