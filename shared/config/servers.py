"""Settings of the servers as a stack: where each listens and finds the others, how much each
admits, how long calls between them may take."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config.setting import COUNT, PORT, SECONDS, TEXT, integer, setting
from shared.config.values import FAULT_SPEC

MIN_MESSAGE_BYTES = 64 * 1024
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
MESSAGE_BYTES = integer(MIN_MESSAGE_BYTES, MAX_MESSAGE_BYTES)


@dataclass(frozen=True)
class ServerSettings:
    """Servers: addresses, ports, admission and deadlines"""

    host: str = setting("DOPPEL_HOST", "127.0.0.1", TEXT, "Address every server binds to.")
    script_port: int = setting("DOPPEL_SCRIPT_PORT", 50051, PORT, "ScriptService port.")
    scene_port: int = setting("DOPPEL_SCENE_PORT", 50052, PORT, "SceneService port.")
    cache_port: int = setting("DOPPEL_CACHE_PORT", 50053, PORT, "CacheService port.")
    monitor_port: int = setting(
        "DOPPEL_MONITOR_PORT", 4317, PORT, "Monitor port: OTLP gRPC receiver and MonitorService."
    )
    monitor_http_port: int = setting("DOPPEL_MONITOR_HTTP_PORT", 9464, PORT, "Monitor HTTP port.")
    script_target: str = setting(
        "DOPPEL_SCRIPT_TARGET", "", TEXT,
        "Where clients find ScriptService (default host:script port).",
    )  # fmt: skip
    scene_target: str = setting(
        "DOPPEL_SCENE_TARGET", "", TEXT,
        "Where the script service finds SceneService (default host:scene port).",
    )  # fmt: skip
    cache_target: str = setting(
        "DOPPEL_CACHE_TARGET", "", TEXT,
        "Where the script service finds CacheService (default host:cache port).",
    )  # fmt: skip
    monitor_target: str = setting(
        "DOPPEL_MONITOR_TARGET", "", TEXT,
        "Where clients find MonitorService (default host:monitor port).",
    )  # fmt: skip
    redis_url: str = setting(
        "REDIS_URL", "", TEXT,
        "Redis for the cache service; unset: `doppel up` starts a private redis-server.",
        secret=True,  # May hold a password.
    )  # fmt: skip
    max_concurrent_rpcs: int = setting(
        "DOPPEL_MAX_CONCURRENT_RPCS", 256, COUNT,
        "Per server; beyond it calls get RESOURCE_EXHAUSTED.",
    )  # fmt: skip
    grace_seconds: float = setting(
        "DOPPEL_GRACE_SECONDS", 10.0, SECONDS, "On SIGTERM, how long in-flight calls may finish."
    )
    rpc_timeout_seconds: float = setting(
        "DOPPEL_RPC_TIMEOUT_SECONDS", 30.0, SECONDS, "Deadline of calls between services."
    )
    script_max_receive_bytes: int = setting(
        "DOPPEL_SCRIPT_MAX_RECEIVE_BYTES", 4 * 1024 * 1024, MESSAGE_BYTES,
        "Largest message ScriptService accepts; larger: RESOURCE_EXHAUSTED.",
    )  # fmt: skip
    scene_max_receive_bytes: int = setting(
        "DOPPEL_SCENE_MAX_RECEIVE_BYTES", 8 * 1024 * 1024, MESSAGE_BYTES,
        "Largest message SceneService accepts (an episode with its Fountain must fit).",
    )  # fmt: skip
    cache_max_receive_bytes: int = setting(
        "DOPPEL_CACHE_MAX_RECEIVE_BYTES", 4 * 1024 * 1024, MESSAGE_BYTES,
        "Largest message CacheService accepts; at least DOPPEL_CACHE_MAX_VALUE_BYTES + 16 KiB.",
    )  # fmt: skip
    monitor_max_receive_bytes: int = setting(
        "DOPPEL_MONITOR_MAX_RECEIVE_BYTES", 16 * 1024 * 1024, MESSAGE_BYTES,
        "Largest message the monitor's gRPC port accepts (an OTLP export batch).",
    )  # fmt: skip
    faults: str = setting(
        "DOPPEL_FAULTS", "", FAULT_SPEC,
        "Fault switches set at start; needs DOPPEL_FAULTS_ENABLED.",
    )  # fmt: skip
