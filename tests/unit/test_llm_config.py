"""LLM configuration: keys never printed, chain and prices parsed, writers registered only when
configured."""

from __future__ import annotations

import pytest

from services.script.writers import build_writers
from shared.config import ConfigError, Settings
from shared.telemetry import Telemetry

KEY = "sk-ant-test-secret-7d1f"


def test_keys_are_not_in_the_settings_repr() -> None:
    settings = Settings.from_env({"ANTHROPIC_API_KEY": KEY, "OPENAI_API_KEY": KEY + "-openai"})
    assert settings.anthropic_api_key == KEY
    assert "secret" not in repr(settings) and "secret" not in str(settings)


def test_fallback_chain_and_prices_are_parsed() -> None:
    settings = Settings.from_env(
        {"DOPPEL_WRITER_FALLBACK": " openai , procedural ", "DOPPEL_LLM_PRICES": "m=1/2.5,*=0/0"}
    )
    assert settings.writer_fallback == ("openai", "procedural")
    assert settings.llm_prices == (("m", 1.0, 2.5), ("*", 0.0, 0.0))


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DOPPEL_WRITER_FALLBACK", "anthropic,shakespeare"),
        ("DOPPEL_WRITER_FALLBACK", "openai,openai"),
        ("DOPPEL_LLM_PRICES", "claude=3"),
        ("DOPPEL_LLM_PRICES", "claude=-1/2"),
        ("DOPPEL_LLM_TEMPERATURE", "3"),
        ("DOPPEL_LLM_REQUESTS_PER_MINUTE", "0"),
        ("DOPPEL_LLM_EPISODE_MAX_COST_USD", "-1"),
        ("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "perhaps"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value})


async def test_writers_are_registered_only_when_configured() -> None:
    offline = Settings(telemetry_disabled=True)
    assert set(build_writers(offline, Telemetry("t", offline))) == {"procedural", "chain"}
    keyed = offline.with_changes(anthropic_api_key=KEY)
    writers = build_writers(keyed, Telemetry("t", keyed))
    assert set(writers) == {"procedural", "anthropic", "chain"}
    assert writers["chain"].name == "anthropic>procedural"
    assert writers["anthropic"].model == "claude-sonnet-4-5"
    local = offline.with_changes(
        openai_base_url="http://127.0.0.1:9/v1", openai_model="llama3", writer_fallback=("openai",)
    )
    writers = build_writers(local, Telemetry("t", local))
    assert set(writers) == {"procedural", "openai", "chain"}
    assert writers["chain"].name == "openai" and writers["openai"].model == "llama3"
    for writer in writers.values():
        close = getattr(writer, "aclose", None)
        if close is not None:
            await close()
