"""Configuration, read once from the environment.

Every setting has a default that runs the whole stack on one machine. `Settings.from_env()` is
called once at process start; everything else receives the resulting frozen `Settings`, so tests
build their own without touching the environment. The table of variables is `ENV_VARS`; the README's
configuration table lists the same names (a test checks they agree).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from shared import __version__
from shared.fault_switches import parse_spec
from shared.roles import Role


class ConfigError(ValueError):
    """A configuration variable has a value that cannot be used."""


@dataclass(frozen=True)
class EnvVar:
    """One documented environment variable."""

    name: str
    field: str
    parse: Callable[[str], Any]
    doc: str

    @property
    def default(self) -> Any:
        """The default, from the `Settings` dataclass (the one place defaults live)."""
        return Settings.__dataclass_fields__[self.field].default


def _bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"not a boolean: {text!r}")


def _port(text: str) -> int:
    port = int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port out of range: {port}")
    return port


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1: {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise ValueError(f"must be positive: {value}")
    return value


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"must be between 0 and 1: {value}")
    return value


def _scene_seconds(text: str) -> float:
    value = float(text)
    if not 60.0 <= value <= 180.0:
        raise ValueError(f"must be between 60 and 180 seconds: {value}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be 0 or more: {value}")
    return value


def _window_seconds(text: str) -> int:
    """A monitor window: a multiple of 10 s from 10 to 450 (two windows fit in 15 minutes)."""
    value = int(text)
    if value % 10 or not 10 <= value <= 450:
        raise ValueError(f"must be a multiple of 10 from 10 to 450: {value}")
    return value


def _name_numbers(text: str) -> tuple[tuple[str, float], ...]:
    """`name=number,name=number` (names of lowercase letters, digits and `_`)."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, number = item.partition("=")
        name = name.strip()
        if not sep or not name.replace("_", "").isalnum() or name.lower() != name:
            raise ValueError(f"expected name=number, got {item!r}")
        pairs.append((name, float(number)))
    return tuple(pairs)


def _slow_operations(text: str) -> tuple[tuple[str, float, float], ...]:
    """`pattern=warning:critical` items (seconds; `off` for both excludes), comma separated."""
    items = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        pattern, sep, levels = item.rpartition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"expected pattern=warning:critical, got {item!r}")
        if levels.strip() == "off":
            warning = critical = float("inf")
        else:
            warning_text, colon, critical_text = levels.partition(":")
            if not colon:
                raise ValueError(f"expected warning:critical seconds or off, got {levels!r}")
            warning, critical = float(warning_text), float(critical_text)
            if not 0 < warning < critical:
                raise ValueError(f"need 0 < warning < critical in {item!r}")
        items.append((pattern.strip(), warning, critical))
    return tuple(items)


def _silent_services(text: str) -> tuple[tuple[str, float], ...]:
    """`pattern=seconds` or `pattern=off` items, comma separated (globs on service names)."""
    items = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        pattern, sep, level = item.rpartition("=")
        if not sep or not pattern.strip():
            raise ValueError(f"expected pattern=seconds or pattern=off, got {item!r}")
        seconds = float("inf") if level.strip() == "off" else float(level)
        if not seconds >= 10.0:  # NaN too.
            raise ValueError(f"need at least 10 seconds (or off) in {item!r}")
        items.append((pattern.strip(), seconds))
    return tuple(items)


def _export_bytes(text: str) -> int:
    """Bytes of one decoded OTLP export: 64 KiB to 16 MiB (the gRPC message limit)."""
    value = int(text)
    if not 64 * 1024 <= value <= 16 * 1024 * 1024:
        raise ValueError(f"must be between 65536 and 16777216: {value}")
    return value


def _client_auth(text: str) -> str:
    """`none` (server-side TLS only) or `require` (mutual TLS)."""
    value = text.strip().lower() or "none"
    if value not in ("none", "require"):
        raise ValueError(f"expected none or require: {text!r}")
    return value


WRITER_NAMES = ("anthropic", "openai", "procedural")


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise ValueError(f"must be 0 or more: {value}")
    return value


def _temperature(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 2.0:
        raise ValueError(f"must be between 0 and 2: {value}")
    return value


def _writer_chain(text: str) -> tuple[str, ...]:
    """`anthropic,openai,procedural`: writer names, tried in this order."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in WRITER_NAMES]
    if not names or unknown or len(set(names)) != len(names):
        raise ValueError(f"expected distinct names among {', '.join(WRITER_NAMES)}: {text!r}")
    return names


def _model_prices(text: str) -> tuple[tuple[str, float, float], ...]:
    """`model=input/output,...`: USD per million tokens; `*` prices every other model."""
    prices = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        model, sep, pair = item.partition("=")
        price_in, slash, price_out = pair.partition("/")
        if not sep or not slash or not model.strip():
            raise ValueError(f"expected model=input/output, got {item!r}")
        values = (_non_negative_float(price_in), _non_negative_float(price_out))
        prices.append((model.strip(), *values))
    return tuple(prices)


def _migrate_mode(text: str) -> str:
    """`auto` or `check` (the library's schema at start)."""
    value = text.strip().lower()
    if value not in ("auto", "check"):
        raise ValueError(f"expected auto or check: {text!r}")
    return value


def _fault_spec(text: str) -> str:

    parse_spec(text)
    return text


# -- access control and message limits (shared/access.py, shared/tokens.py, shared/server.py) --

MIN_MESSAGE_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
# Room a CacheService.Set needs beyond its value: namespace, key, TTL and the message's framing.
CACHE_REQUEST_HEADROOM_BYTES = 16 * 1024


def _role(text: str) -> str:
    return Role.parse(text).label


def _client_roles(text: str) -> tuple[tuple[str, str], ...]:
    """`certificate-name=role,...`: a client certificate's CN or SAN, and the role it gets."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, role = item.rpartition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected certificate-name=role, got {item!r}")
        pairs.append((name.strip(), _role(role)))
    return tuple(pairs)


def _message_bytes(text: str) -> int:
    value = int(text)
    if not MIN_MESSAGE_BYTES <= value <= MAX_MESSAGE_BYTES:
        raise ValueError(f"must be between {MIN_MESSAGE_BYTES} and {MAX_MESSAGE_BYTES}: {value}")
    return value


ENV_VARS: tuple[EnvVar, ...] = (
    EnvVar("DOPPEL_HOST", "host", str, "Address every server binds to."),
    EnvVar("DOPPEL_SCRIPT_PORT", "script_port", _port, "ScriptService port."),
    EnvVar("DOPPEL_SCENE_PORT", "scene_port", _port, "SceneService port."),
    EnvVar("DOPPEL_CACHE_PORT", "cache_port", _port, "CacheService port."),
    EnvVar(
        "DOPPEL_MONITOR_PORT",
        "monitor_port",
        _port,
        "Monitor port: OTLP gRPC receiver and MonitorService.",
    ),
    EnvVar("DOPPEL_MONITOR_HTTP_PORT", "monitor_http_port", _port, "Monitor HTTP port."),
    EnvVar(
        "DOPPEL_SCRIPT_TARGET",
        "script_target",
        str,
        "Where clients find ScriptService (default host:script port).",
    ),
    EnvVar(
        "DOPPEL_SCENE_TARGET",
        "scene_target",
        str,
        "Where the script service finds SceneService (default host:scene port).",
    ),
    EnvVar(
        "DOPPEL_CACHE_TARGET",
        "cache_target",
        str,
        "Where the script service finds CacheService (default host:cache port).",
    ),
    EnvVar(
        "DOPPEL_MONITOR_TARGET",
        "monitor_target",
        str,
        "Where clients find MonitorService (default host:monitor port).",
    ),
    EnvVar(
        "REDIS_URL",
        "redis_url",
        str,
        "Redis for the cache service; unset: `doppel up` starts a private redis-server.",
    ),
    EnvVar(
        "DOPPEL_MAX_PARALLEL_SCENES",
        "max_parallel_scenes",
        _positive_int,
        "Scenes of one episode written at the same time.",
    ),
    EnvVar(
        "DOPPEL_EPISODE_MINUTES",
        "episode_minutes",
        _positive_float,
        "Runtime target of an episode whose request leaves scene_count unset (8-12 scenes).",
    ),
    EnvVar(
        "DOPPEL_SCENE_SECONDS",
        "scene_seconds",
        _scene_seconds,
        "Runtime target of a scene (60-180) when the request sets scene_count.",
    ),
    EnvVar(
        "DOPPEL_REFINEMENT_ROUNDS",
        "refinement_rounds",
        _non_negative_int,
        "Most refinement rounds after validation; 0: none.",
    ),
    EnvVar(
        "DOPPEL_VALIDATION_THRESHOLD",
        "validation_threshold",
        _unit_interval,
        "Overall validator score (0-1) an episode needs to pass.",
    ),
    EnvVar("DOPPEL_WRITER", "default_writer", str, "Default writer."),
    EnvVar(
        "DOPPEL_REVISION_PAGE_COLOR",
        "revision_page_color",
        _bool,
        "true: the scene service's PDFs tint revised pages in their revision set's colour.",
    ),
    EnvVar(
        "ANTHROPIC_API_KEY",
        "anthropic_api_key",
        str,
        "Key of the `anthropic` writer (never logged); it or the base URL registers the writer.",
    ),
    EnvVar("ANTHROPIC_BASE_URL", "anthropic_base_url", str, "Anthropic API base URL."),
    EnvVar("DOPPEL_ANTHROPIC_MODEL", "anthropic_model", str, "Model of the `anthropic` writer."),
    EnvVar(
        "OPENAI_API_KEY",
        "openai_api_key",
        str,
        "Key of the `openai` writer (never logged); it or the base URL registers the writer.",
    ),
    EnvVar(
        "OPENAI_BASE_URL",
        "openai_base_url",
        str,
        "Any OpenAI-compatible base URL (vLLM, Ollama, llama.cpp), e.g. http://host:8000/v1.",
    ),
    EnvVar("DOPPEL_OPENAI_MODEL", "openai_model", str, "Model of the `openai` writer."),
    EnvVar(
        "DOPPEL_WRITER_FALLBACK",
        "writer_fallback",
        _writer_chain,
        "Writers the `chain` writer tries in order (unconfigured ones are left out).",
    ),
    EnvVar(
        "DOPPEL_LLM_REQUESTS_PER_MINUTE",
        "llm_requests_per_minute",
        _positive_int,
        "Client-side request limit per provider and model.",
    ),
    EnvVar(
        "DOPPEL_LLM_TOKENS_PER_MINUTE",
        "llm_tokens_per_minute",
        _positive_int,
        "Client-side token limit (input + output) per provider and model.",
    ),
    EnvVar(
        "DOPPEL_LLM_RATE_WINDOW_SECONDS",
        "llm_rate_window_seconds",
        _positive_float,
        "Window the per-minute limits are enforced over (scaled to it); tests shrink it.",
    ),
    EnvVar(
        "DOPPEL_LLM_MAX_ATTEMPTS",
        "llm_max_attempts",
        _positive_int,
        "Attempts per LLM call (429, 529, 5xx, timeouts, connection errors are retried).",
    ),
    EnvVar(
        "DOPPEL_LLM_BACKOFF_SECONDS",
        "llm_backoff_seconds",
        _positive_float,
        "First retry delay cap; doubles per attempt, full jitter.",
    ),
    EnvVar(
        "DOPPEL_LLM_MAX_BACKOFF_SECONDS",
        "llm_max_backoff_seconds",
        _positive_float,
        "Largest jittered retry delay.",
    ),
    EnvVar(
        "DOPPEL_LLM_MAX_WAIT_SECONDS",
        "llm_max_wait_seconds",
        _positive_float,
        "Longest pause a retry-after or rate-limit reset may ask for; longer fails the call.",
    ),
    EnvVar(
        "DOPPEL_LLM_MAX_QUEUE_SECONDS",
        "llm_max_queue_seconds",
        _positive_float,
        "Longest an LLM call waits for a client-side rate-limit slot; longer fails the call "
        "(RESOURCE_EXHAUSTED, or the chain's next writer).",
    ),
    EnvVar(
        "DOPPEL_LLM_TIMEOUT_SECONDS",
        "llm_timeout_seconds",
        _positive_float,
        "Longest one LLM HTTP request may take, streamed or not (a ceiling for a stream that "
        "trickles; also the horizon of rate-limit and budget leases).",
    ),
    EnvVar(
        "DOPPEL_LLM_IDLE_TIMEOUT_SECONDS",
        "llm_idle_timeout_seconds",
        _positive_float,
        "A streamed LLM reply that sends no bytes for this long is abandoned and retried "
        "(also the wait for the first byte).",
    ),
    EnvVar(
        "DOPPEL_LLM_TEMPERATURE",
        "llm_temperature",
        _temperature,
        "Sampling temperature of outlines, scenes and rewrites.",
    ),
    EnvVar(
        "DOPPEL_LLM_MAX_OUTPUT_TOKENS",
        "llm_max_output_tokens",
        _positive_int,
        "max_tokens of an outline, scene or revision (a line gets a tenth).",
    ),
    EnvVar(
        "DOPPEL_LLM_EPISODE_MAX_TOKENS",
        "llm_episode_max_tokens",
        _non_negative_int,
        "Token budget of one episode across LLM writers; 0: none.",
    ),
    EnvVar(
        "DOPPEL_LLM_EPISODE_MAX_COST_USD",
        "llm_episode_max_cost_usd",
        _non_negative_float,
        "Cost budget of one episode in USD; 0: none.",
    ),
    EnvVar(
        "DOPPEL_LLM_PRICES",
        "llm_prices",
        _model_prices,
        "USD per million input/output tokens by model; `*` prices the rest.",
    ),
    # Shared quota, budgets and caps (services/script/llm/quota.py, budget.py).
    EnvVar(
        "DOPPEL_LLM_INPUT_TOKENS_PER_MINUTE",
        "llm_input_tokens_per_minute",
        _non_negative_int,
        "Input-token limit per provider key and model class (cache reads not counted for "
        "Anthropic); 0: none.",
    ),
    EnvVar(
        "DOPPEL_LLM_OUTPUT_TOKENS_PER_MINUTE",
        "llm_output_tokens_per_minute",
        _non_negative_int,
        "Output-token limit per provider key and model class (max_tokens reserved); 0: none.",
    ),
    EnvVar(
        "DOPPEL_LLM_REPLICAS_HINT",
        "llm_replicas_hint",
        _positive_int,
        "Script replicas sharing a provider key: without the cache service each keeps to "
        "limits / this (set it to the HPA's maximum).",
    ),
    EnvVar(
        "DOPPEL_LLM_CALLER_TOKENS_PER_HOUR",
        "llm_caller_tokens_per_hour",
        _non_negative_int,
        "Tokens one caller may spend per clock hour, all replicas together; 0: no cap.",
    ),
    EnvVar(
        "DOPPEL_LLM_CALLER_USD_PER_HOUR",
        "llm_caller_usd_per_hour",
        _non_negative_float,
        "USD one caller may spend per clock hour; 0: no cap.",
    ),
    EnvVar(
        "DOPPEL_LLM_CALLER_TOKENS_PER_DAY",
        "llm_caller_tokens_per_day",
        _non_negative_int,
        "Tokens one caller may spend per UTC day; 0: no cap.",
    ),
    EnvVar(
        "DOPPEL_LLM_CALLER_USD_PER_DAY",
        "llm_caller_usd_per_day",
        _non_negative_float,
        "USD one caller may spend per UTC day; 0: no cap.",
    ),
    EnvVar(
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT",
        "llm_capture_content",
        _bool,
        "true: prompts and responses go on the `chat` spans (off: never).",
    ),
    EnvVar(
        "DOPPEL_MAX_CONCURRENT_RPCS",
        "max_concurrent_rpcs",
        _positive_int,
        "Per server; beyond it calls get RESOURCE_EXHAUSTED.",
    ),
    EnvVar(
        "DOPPEL_MAX_CONCURRENT_EPISODES",
        "max_concurrent_episodes",
        _positive_int,
        "Episodes (and scene revisions) a script replica writes at once; beyond it "
        "RESOURCE_EXHAUSTED, retry-after-ms.",
    ),
    EnvVar(
        "DOPPEL_EPISODE_TIMEOUT_SECONDS",
        "episode_timeout_seconds",
        _positive_float,
        "Longest an episode or revision may run, whatever the client's deadline; then "
        "DEADLINE_EXCEEDED.",
    ),
    EnvVar(
        "DOPPEL_BATCH_POLL_SECONDS",
        "batch_poll_seconds",
        _positive_float,
        "Batch mode: how often the script service polls the provider batches of unfinished "
        "batch jobs (and resumes them after a restart).",
    ),
    EnvVar(
        "DOPPEL_BATCH_CLAIM_SECONDS",
        "batch_claim_seconds",
        _positive_float,
        "Batch mode: a replica working on a batch job holds it this long (renewed while it "
        "works); another replica takes over a job whose holder died after this.",
    ),
    EnvVar(
        "DOPPEL_FAULTS",
        "faults",
        _fault_spec,
        "Fault switches at start, name=value,... (docs/reliability.md); needs "
        "DOPPEL_FAULTS_ENABLED.",
    ),
    EnvVar(
        "DOPPEL_GRACE_SECONDS",
        "grace_seconds",
        _positive_float,
        "On SIGTERM, how long in-flight calls may finish.",
    ),
    EnvVar(
        "DOPPEL_RPC_TIMEOUT_SECONDS",
        "rpc_timeout_seconds",
        _positive_float,
        "Deadline of calls between services.",
    ),
    EnvVar(
        "DOPPEL_CACHE_TTL_SECONDS",
        "cache_ttl_seconds",
        _positive_int,
        "Default TTL of cache entries.",
    ),
    EnvVar(
        "DOPPEL_CACHE_MAX_VALUE_BYTES",
        "cache_max_value_bytes",
        _positive_int,
        "Largest value CacheService.Set accepts.",
    ),
    EnvVar(
        "DOPPEL_DATA_DIR",
        "data_dir",
        str,
        "Where the script service keeps its library (library.db) when DOPPEL_DATABASE_URL is "
        "unset; default $XDG_DATA_HOME/doppelganger, else ~/.local/share/doppelganger.",
    ),
    EnvVar(
        "DOPPEL_DATABASE_URL",
        "database_url",
        str,
        "The library's database: postgresql+asyncpg://user:password@host/db or "
        "sqlite+aiosqlite:///path (the password is never logged); unset: SQLite in the data dir.",
    ),
    EnvVar(
        "DOPPEL_DATABASE_MIGRATE",
        "database_migrate",
        _migrate_mode,
        "`auto`: the script service applies pending schema migrations at start; `check`: it "
        "refuses to start (exit 2) while the schema is behind. Unset: auto on SQLite, check on "
        "PostgreSQL.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_MAX_TRACES",
        "monitor_max_traces",
        _positive_int,
        "Traces the monitor keeps for GetTrace (oldest evicted).",
    ),
    EnvVar(
        "DOPPEL_MONITOR_MAX_OPERATIONS",
        "monitor_max_operations",
        _positive_int,
        "Distinct (service, operation) pairs; the excess folds into `_other`.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_WINDOW_SECONDS",
        "monitor_window_seconds",
        _window_seconds,
        "Window of the monitor's alert rules and error score; trends compare it with the previous.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_EVAL_INTERVAL_SECONDS",
        "monitor_eval_interval_seconds",
        _positive_float,
        "How often the monitor evaluates its alert rules.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_THRESHOLDS",
        "monitor_thresholds",
        _name_numbers,
        "Alert thresholds as name=value,... (names of UpdateThresholds; docs/monitor.md).",
    ),
    EnvVar(
        "DOPPEL_MONITOR_SLOW_OPERATIONS",
        "monitor_slow_operations",
        _slow_operations,
        "Per-operation slow thresholds: glob=warning:critical seconds, or glob=off.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_MAX_PENDING_SPANS",
        "monitor_max_pending_spans",
        _positive_int,
        "Spans accepted but not yet applied; beyond it exports get RESOURCE_EXHAUSTED.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_FORWARD_ENDPOINT",
        "monitor_forward_endpoint",
        str,
        "Upstream OTLP gRPC endpoint (host:port) the monitor forwards everything to; unset: none.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_FORWARD_QUEUE",
        "monitor_forward_queue",
        _positive_int,
        "Exports waiting to be forwarded; when full, new ones are dropped and counted.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_SILENT_SERVICES",
        "monitor_silent_services",
        _silent_services,
        "When a silent service raises service_silent: glob=seconds or glob=off, first match wins.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_MAX_EXPORT_BYTES",
        "monitor_max_export_bytes",
        _export_bytes,
        "Largest OTLP export the monitor parses, decoded (after gzip), on gRPC and HTTP.",
    ),
    EnvVar(
        "DOPPEL_TLS_CERT", "tls_cert", str, "Server certificate chain (PEM file); with the key: TLS"
    ),
    EnvVar("DOPPEL_TLS_KEY", "tls_key", str, "Server private key (PEM file)."),
    EnvVar(
        "DOPPEL_TLS_CA",
        "tls_ca",
        str,
        "CA (PEM file) clients trust, and servers check client certificates against; set: TLS.",
    ),
    EnvVar(
        "DOPPEL_TLS_CLIENT_AUTH",
        "tls_client_auth",
        _client_auth,
        "`require`: mutual TLS, servers refuse clients without a certificate from the CA.",
    ),
    EnvVar("DOPPEL_TLS_CLIENT_CERT", "tls_client_cert", str, "Client certificate (mutual TLS)."),
    EnvVar("DOPPEL_TLS_CLIENT_KEY", "tls_client_key", str, "Client private key (mutual TLS)."),
    EnvVar(
        "DOPPEL_AUTH_TOKENS",
        "auth_tokens",
        str,
        "Accepted bearer tokens, comma separated, each role:name:token (README, Security); "
        "a bare token is a reader.",
    ),
    EnvVar(
        "DOPPEL_AUTH_TOKENS_FILE",
        "auth_tokens_file",
        str,
        "File of accepted bearer tokens, role:name:token one a line (added to DOPPEL_AUTH_TOKENS).",
    ),
    EnvVar(
        "DOPPEL_AUTH_TOKEN",
        "auth_token",
        str,
        "Bearer token clients (CLI, script service calling scene and cache) send (never logged).",
    ),
    EnvVar(
        "DOPPEL_FAULTS_ENABLED",
        "faults_enabled",
        _bool,
        "true: every server registers FaultService (admin role); off: not registered at all.",
    ),
    EnvVar(
        "DOPPEL_ALLOW_OPEN",
        "allow_open",
        _bool,
        "true: a server with no tokens and no mutual TLS may bind a non-loopback DOPPEL_HOST "
        "(anyone who reaches it may call everything); off: it refuses to start.",
    ),
    EnvVar(
        "DOPPEL_TLS_CLIENT_ROLES",
        "tls_client_roles",
        _client_roles,
        "Mutual TLS without tokens: certificate-name=role,... (a CN or SAN of the client's "
        "certificate).",
    ),
    EnvVar(
        "DOPPEL_TLS_CLIENT_DEFAULT_ROLE",
        "tls_client_default_role",
        _role,
        "Mutual TLS without tokens: the role of a verified client certificate not listed above.",
    ),
    EnvVar(
        "DOPPEL_SCRIPT_MAX_RECEIVE_BYTES",
        "script_max_receive_bytes",
        _message_bytes,
        "Largest message ScriptService accepts; larger: RESOURCE_EXHAUSTED.",
    ),
    EnvVar(
        "DOPPEL_SCENE_MAX_RECEIVE_BYTES",
        "scene_max_receive_bytes",
        _message_bytes,
        "Largest message SceneService accepts (an episode with its Fountain must fit).",
    ),
    EnvVar(
        "DOPPEL_CACHE_MAX_RECEIVE_BYTES",
        "cache_max_receive_bytes",
        _message_bytes,
        "Largest message CacheService accepts; at least DOPPEL_CACHE_MAX_VALUE_BYTES + 16 KiB.",
    ),
    EnvVar(
        "DOPPEL_MONITOR_MAX_RECEIVE_BYTES",
        "monitor_max_receive_bytes",
        _message_bytes,
        "Largest message the monitor's gRPC port accepts (an OTLP export batch).",
    ),
    EnvVar("DOPPEL_LOG_LEVEL", "log_level", str, "Python logging level."),
    EnvVar("OTEL_SDK_DISABLED", "telemetry_disabled", _bool, "true: no spans or metrics."),
    EnvVar(
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "otlp_endpoint",
        str,
        "OTLP gRPC endpoint (default: the monitor, http://host:monitor port).",
    ),
    EnvVar(
        "OTEL_BSP_MAX_QUEUE_SIZE",
        "bsp_max_queue_size",
        _positive_int,
        "Span queue per process (the SDK's 2048 drops bursts).",
    ),
    EnvVar(
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE",
        "bsp_max_export_batch_size",
        _positive_int,
        "Spans per OTLP export.",
    ),
    EnvVar(
        "OTEL_BSP_SCHEDULE_DELAY",
        "bsp_schedule_delay_ms",
        _positive_int,
        "Milliseconds between span exports.",
    ),
    EnvVar(
        "OTEL_PYTHON_SDK_INTERNAL_METRICS_ENABLED",
        "sdk_internal_metrics",
        _bool,
        "SDK self-metrics, among them the count of dropped spans.",
    ),
    EnvVar(
        "OTEL_METRIC_EXPORT_INTERVAL",
        "metric_export_interval_ms",
        _positive_int,
        "Milliseconds between metric exports.",
    ),
)


def resolve_data_dir(data_dir: str, env: Mapping[str, str]) -> Path:
    """DOPPEL_DATA_DIR when set, else `doppelganger` under $XDG_DATA_HOME (when absolute, as the
    XDG spec says) or ~/.local/share. One rule for the library and `doppel up`'s local tokens."""
    if data_dir:
        return Path(data_dir).expanduser()
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "doppelganger"


@dataclass(frozen=True)
class Settings:
    """Every setting of every service. Build with `from_env`, or directly in tests."""

    host: str = "127.0.0.1"
    script_port: int = 50051
    scene_port: int = 50052
    cache_port: int = 50053
    monitor_port: int = 4317
    monitor_http_port: int = 9464
    script_target: str = ""
    scene_target: str = ""
    cache_target: str = ""
    monitor_target: str = ""
    redis_url: str = field(default="", repr=False)  # May hold a password.
    max_parallel_scenes: int = 4
    episode_minutes: float = 22.0
    scene_seconds: float = 120.0
    refinement_rounds: int = 3
    validation_threshold: float = 0.75
    default_writer: str = "procedural"
    revision_page_color: bool = False
    anthropic_api_key: str = field(default="", repr=False)
    anthropic_base_url: str = ""
    anthropic_model: str = "claude-sonnet-4-5"
    openai_api_key: str = field(default="", repr=False)
    openai_base_url: str = ""
    openai_model: str = "gpt-4o-mini"
    writer_fallback: tuple[str, ...] = ("anthropic", "openai", "procedural")
    llm_requests_per_minute: int = 50
    llm_tokens_per_minute: int = 100_000
    llm_rate_window_seconds: float = 60.0
    llm_max_attempts: int = 4
    llm_backoff_seconds: float = 0.5
    llm_max_backoff_seconds: float = 30.0
    llm_max_wait_seconds: float = 120.0
    llm_max_queue_seconds: float = 30.0
    llm_timeout_seconds: float = 120.0
    llm_idle_timeout_seconds: float = 30.0
    llm_temperature: float = 0.8
    llm_max_output_tokens: int = 4096
    llm_episode_max_tokens: int = 1_000_000
    llm_episode_max_cost_usd: float = 5.0
    llm_prices: tuple[tuple[str, float, float], ...] = (
        ("claude-opus-4-1", 15.0, 75.0),
        ("claude-sonnet-4-5", 3.0, 15.0),
        ("claude-haiku-4-5", 1.0, 5.0),
        ("gpt-4o", 2.5, 10.0),
        ("gpt-4o-mini", 0.15, 0.6),
        ("*", 3.0, 15.0),
    )
    llm_input_tokens_per_minute: int = 0
    llm_output_tokens_per_minute: int = 0
    llm_replicas_hint: int = 1
    llm_caller_tokens_per_hour: int = 0
    llm_caller_usd_per_hour: float = 0.0
    llm_caller_tokens_per_day: int = 0
    llm_caller_usd_per_day: float = 0.0
    llm_capture_content: bool = False
    max_concurrent_rpcs: int = 256
    max_concurrent_episodes: int = 16
    episode_timeout_seconds: float = 900.0
    batch_poll_seconds: float = 30.0
    batch_claim_seconds: float = 120.0
    faults: str = ""
    grace_seconds: float = 10.0
    rpc_timeout_seconds: float = 30.0
    cache_ttl_seconds: int = 7 * 24 * 3600
    cache_max_value_bytes: int = 4 * 1024 * 1024 - 64 * 1024
    data_dir: str = ""
    database_url: str = field(default="", repr=False)
    database_migrate: str = ""
    monitor_max_traces: int = 2000
    monitor_max_operations: int = 500
    monitor_window_seconds: int = 60
    monitor_eval_interval_seconds: float = 1.0
    monitor_thresholds: tuple[tuple[str, float], ...] = ()
    monitor_slow_operations: tuple[tuple[str, float, float], ...] = (
        ("*/GenerateEpisode", 300.0, 600.0),
        ("doppel generate", 300.0, 600.0),
        ("chat *", 60.0, 120.0),
        ("*/WatchAlerts", float("inf"), float("inf")),
    )
    monitor_max_pending_spans: int = 200_000
    monitor_forward_endpoint: str = ""
    monitor_forward_queue: int = 1000
    monitor_silent_services: tuple[tuple[str, float], ...] = (
        ("doppel-cli", float("inf")),
        ("*", 120.0),
    )
    monitor_max_export_bytes: int = 4 * 1024 * 1024
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""
    tls_client_auth: str = "none"
    tls_client_cert: str = ""
    tls_client_key: str = ""
    auth_tokens: str = field(default="", repr=False)
    auth_tokens_file: str = ""
    auth_token: str = field(default="", repr=False)
    faults_enabled: bool = False
    allow_open: bool = False
    tls_client_roles: tuple[tuple[str, str], ...] = ()
    tls_client_default_role: str = "writer"
    script_max_receive_bytes: int = 4 * 1024 * 1024
    scene_max_receive_bytes: int = 8 * 1024 * 1024
    cache_max_receive_bytes: int = 4 * 1024 * 1024
    monitor_max_receive_bytes: int = 16 * 1024 * 1024
    log_level: str = "INFO"
    telemetry_disabled: bool = False
    otlp_endpoint: str = ""
    bsp_max_queue_size: int = 65536
    bsp_max_export_batch_size: int = 2048
    bsp_schedule_delay_ms: int = 1000
    sdk_internal_metrics: bool = True
    metric_export_interval_ms: int = 10000
    service_version: str = field(default=__version__)

    def __post_init__(self) -> None:
        """Rules across settings (access control and message limits)."""
        if self.faults and not self.faults_enabled:
            raise ConfigError(
                "DOPPEL_FAULTS is set but DOPPEL_FAULTS_ENABLED is not true: fault switches "
                "are off unless FaultService is enabled on purpose"
            )
        if self.cache_max_value_bytes + CACHE_REQUEST_HEADROOM_BYTES > self.cache_max_receive_bytes:
            raise ConfigError(
                f"DOPPEL_CACHE_MAX_VALUE_BYTES ({self.cache_max_value_bytes}) plus "
                f"{CACHE_REQUEST_HEADROOM_BYTES} bytes must fit DOPPEL_CACHE_MAX_RECEIVE_BYTES "
                f"({self.cache_max_receive_bytes})"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Reads every variable of `ENV_VARS`; raises ConfigError naming a bad one."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var in ENV_VARS:
            raw = source.get(var.name)
            if raw is None or (raw.strip() == "" and var.parse is not str):
                continue
            try:
                values[var.field] = var.parse(raw.strip())
            except ValueError as exc:
                secret = not cls.__dataclass_fields__[var.field].repr  # Never echo a secret.
                shown = var.name if secret else f"{var.name}={raw!r}"
                raise ConfigError(f"{shown}: {exc}") from None
        return cls(**values)

    def with_changes(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def _target(self, explicit: str, port: int) -> str:
        if explicit:
            return explicit
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "[::]") else self.host
        return f"{host}:{port}"

    @property
    def script_address(self) -> str:
        return self._target(self.script_target, self.script_port)

    @property
    def scene_address(self) -> str:
        return self._target(self.scene_target, self.scene_port)

    @property
    def cache_address(self) -> str:
        return self._target(self.cache_target, self.cache_port)

    @property
    def monitor_address(self) -> str:
        return self._target(self.monitor_target, self.monitor_port)

    @property
    def otlp_traces_endpoint(self) -> str:
        """OTLP gRPC endpoint for spans and metrics: explicit, else the monitor."""
        return self.otlp_endpoint or f"http://{self.monitor_address}"

    @property
    def data_path(self) -> Path:
        """DOPPEL_DATA_DIR, else `doppelganger` in the XDG data directory ($XDG_DATA_HOME, or
        ~/.local/share when it is unset or not absolute, as the XDG spec says)."""
        return resolve_data_dir(self.data_dir, os.environ)
