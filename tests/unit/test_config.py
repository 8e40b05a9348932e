"""Configuration: defaults, parsing, errors naming the variable, and docs that match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import ENV_VARS, ConfigError, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_empty_environment_gives_the_defaults() -> None:
    assert Settings.from_env({}) == Settings()


def test_values_are_parsed() -> None:
    settings = Settings.from_env(
        {
            "DOPPEL_SCRIPT_PORT": "6000",
            "DOPPEL_GRACE_SECONDS": "2.5",
            "OTEL_SDK_DISABLED": "true",
            "REDIS_URL": "redis://example:6379/1",
        }
    )
    assert settings.script_port == 6000
    assert settings.grace_seconds == 2.5
    assert settings.telemetry_disabled is True
    assert settings.redis_url == "redis://example:6379/1"
    assert settings.script_address == "127.0.0.1:6000"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DOPPEL_SCRIPT_PORT", "seventy"),
        ("DOPPEL_SCENE_PORT", "70000"),
        ("DOPPEL_MAX_PARALLEL_SCENES", "0"),
        ("DOPPEL_GRACE_SECONDS", "-1"),
        ("OTEL_SDK_DISABLED", "maybe"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


def test_targets_default_to_local_ports_and_can_be_overridden() -> None:
    settings = Settings(host="0.0.0.0", cache_port=7000, scene_target="scene.internal:80")
    assert settings.cache_address == "127.0.0.1:7000"
    assert settings.scene_address == "scene.internal:80"
    assert settings.otlp_traces_endpoint == "http://127.0.0.1:4317"
    assert Settings(otlp_endpoint="http://collector:4317").otlp_traces_endpoint == (
        "http://collector:4317"
    )


def test_every_variable_maps_to_a_settings_field() -> None:
    fields = set(Settings.__dataclass_fields__)
    assert all(var.field in fields for var in ENV_VARS)
    assert len({var.name for var in ENV_VARS}) == len(ENV_VARS)


def test_readme_configuration_table_matches_the_code() -> None:
    text = README.read_text()
    table = text[text.index("## Configuration") : text.index("## Running one service alone")]
    documented = set(re.findall(r"^\| `([A-Z_]+)` \|", table, flags=re.M))
    assert documented == {var.name for var in ENV_VARS}
