"""Configuration, read once from the environment.

Every setting is declared once, as a field of one of the groups below (`setting(...)`: variable,
default, kind and range, one line of doc), and has a default that runs the whole stack on one
machine. `Settings.from_env()` is called once at process start; everything else receives the
frozen `Settings`, so tests build their own without touching the environment. `ENV_VARS` and
the README's configuration table (`make config-table`) are derived from the same fields.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from shared import __version__
from shared.config.monitor import MonitorSettings
from shared.config.security import SecuritySettings
from shared.config.servers import MAX_MESSAGE_BYTES, MIN_MESSAGE_BYTES, ServerSettings
from shared.config.setting import SETTING, TEXT, Kind, Setting
from shared.config.storage import StorageSettings
from shared.config.telemetry import TelemetrySettings
from shared.config.values import WRITER_NAMES
from shared.config.writing import LLMSettings, WritingSettings

__all__ = [
    "CACHE_REQUEST_HEADROOM_BYTES",
    "DEFAULTS",
    "ENV_VARS",
    "GROUPS",
    "MAX_MESSAGE_BYTES",
    "MIN_MESSAGE_BYTES",
    "WRITER_NAMES",
    "ConfigError",
    "EnvVar",
    "Settings",
    "resolve_data_dir",
]

# Room a CacheService.Set needs beyond its value: namespace, key, TTL and the message's framing.
CACHE_REQUEST_HEADROOM_BYTES = 16 * 1024


class ConfigError(ValueError):
    """A configuration variable has a value that cannot be used."""


@dataclass(frozen=True)
class EnvVar:
    """One documented environment variable: a view of a `Settings` field's declaration."""

    name: str
    field: str
    kind: Kind[Any]
    doc: str
    default: Any
    secret: bool
    shown_default: str
    group: str

    def parse(self, text: str) -> Any:
        return self.kind.parse(text)

    @property
    def default_text(self) -> str:
        """The default as the docs show it: the variable's syntax, or `unset`."""
        if self.shown_default:
            return self.shown_default
        text = self.kind.format(self.default)
        return f"`{text}`" if text else "`unset`"


def resolve_data_dir(data_dir: str, env: Mapping[str, str]) -> Path:
    """DOPPEL_DATA_DIR when set, else `doppelganger` under $XDG_DATA_HOME (when absolute, as the
    XDG spec says) or ~/.local/share. One rule for the library and `doppel up`'s local tokens."""
    if data_dir:
        return Path(data_dir).expanduser()
    xdg = env.get("XDG_DATA_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "share"
    return base / "doppelganger"


# The groups, in the order the README lists them.
GROUPS: tuple[type, ...] = (
    ServerSettings,
    WritingSettings,
    LLMSettings,
    StorageSettings,
    MonitorSettings,
    SecuritySettings,
    TelemetrySettings,
)


@dataclass(frozen=True)
class Settings(
    TelemetrySettings,
    SecuritySettings,
    MonitorSettings,
    StorageSettings,
    LLMSettings,
    WritingSettings,
    ServerSettings,
):
    """Every setting of every service. Build with `from_env`, or directly in tests."""

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
        """Reads every variable of `ENV_VARS`; raises ConfigError naming a bad one and its range.
        An empty variable counts as unset, except for plain text (where "" is a value)."""
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for var in ENV_VARS:
            raw = source.get(var.name)
            if raw is None or (raw.strip() == "" and var.kind is not TEXT):
                continue
            try:
                values[var.field] = var.parse(raw.strip())
            except ValueError as exc:
                shown = var.name if var.secret else f"{var.name}={raw!r}"  # Never echo a secret.
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


def _env_vars() -> tuple[EnvVar, ...]:
    found = []
    for group in GROUPS:
        title = (group.__doc__ or group.__name__).strip().splitlines()[0]
        for each in fields(group):
            declared: Setting = each.metadata[SETTING]
            found.append(
                EnvVar(
                    declared.env, each.name, declared.kind, declared.doc, each.default,
                    declared.secret, declared.shown_default, title,
                )
            )  # fmt: skip
    return tuple(found)


ENV_VARS: Final[tuple[EnvVar, ...]] = _env_vars()
# The defaults, for code that needs one without a `Settings` at hand (never copy a literal).
DEFAULTS: Final = Settings()
