"""Configuration: defaults, parsing, errors naming the variable, and docs that match the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared.config import DEFAULTS, ENV_VARS, ConfigError, EnvVar, Settings, table

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


def test_readme_configuration_table_is_the_generated_one() -> None:
    """`make config-table` wrote it from the declarations (`make lint` checks the same)."""
    text = README.read_text()
    assert table.updated(text) == text, "stale: run `make config-table`"


@pytest.mark.parametrize("var", ENV_VARS, ids=lambda var: var.name)
def test_every_default_reads_back_from_its_documented_text(var: EnvVar) -> None:
    """The default the README shows, set as the variable, gives the default again."""
    text = var.kind.format(var.default)
    if text:
        assert getattr(Settings.from_env({var.name: text}), var.field) == var.default
    assert var.doc and var.default_text


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DOPPEL_SCENE_PORT", "70000", "must be 0 to 65535: 70000"),
        ("DOPPEL_SCENE_SECONDS", "200", "must be 60 to 180: 200.0"),
        ("DOPPEL_MONITOR_WINDOW_SECONDS", "25", "must be 10 to 450, a multiple of 10: 25"),
        ("DOPPEL_GRACE_SECONDS", "nan", "must be more than 0: nan"),
        ("DOPPEL_MAX_PARALLEL_SCENES", "two", "expected a whole number \\(1 or more\\)"),
        ("DOPPEL_DATABASE_MIGRATE", "sometimes", "expected auto or check"),
    ],
)
def test_errors_name_the_variable_and_the_range(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{name}='{value}': {message}"):
        Settings.from_env({name: value})


def test_secrets_stay_out_of_repr() -> None:
    settings = Settings.from_env({"DOPPEL_AUTH_TOKEN": "s3cret", "REDIS_URL": "redis://:pw@x"})
    assert settings.auth_token == "s3cret"
    assert "s3cret" not in repr(settings) and "pw@" not in repr(settings)


def test_defaults_is_the_settings_of_an_empty_environment() -> None:
    assert Settings.from_env({}) == DEFAULTS
