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
from typing import Any

from shared import __version__


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
    EnvVar("DOPPEL_DEFAULT_SCENES", "default_scene_count", _positive_int, "Scenes when unset."),
    EnvVar("DOPPEL_WRITER", "default_writer", str, "Default writer."),
    EnvVar(
        "DOPPEL_MAX_CONCURRENT_RPCS",
        "max_concurrent_rpcs",
        _positive_int,
        "Per server; beyond it calls get RESOURCE_EXHAUSTED.",
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
    redis_url: str = ""
    max_parallel_scenes: int = 4
    default_scene_count: int = 3
    default_writer: str = "procedural"
    max_concurrent_rpcs: int = 256
    grace_seconds: float = 10.0
    rpc_timeout_seconds: float = 30.0
    cache_ttl_seconds: int = 7 * 24 * 3600
    cache_max_value_bytes: int = 4 * 1024 * 1024 - 64 * 1024
    monitor_max_traces: int = 2000
    monitor_max_operations: int = 500
    log_level: str = "INFO"
    telemetry_disabled: bool = False
    otlp_endpoint: str = ""
    bsp_max_queue_size: int = 65536
    bsp_max_export_batch_size: int = 2048
    bsp_schedule_delay_ms: int = 1000
    sdk_internal_metrics: bool = True
    metric_export_interval_ms: int = 10000
    service_version: str = field(default=__version__)

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
                raise ConfigError(f"{var.name}={raw!r}: {exc}") from None
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
