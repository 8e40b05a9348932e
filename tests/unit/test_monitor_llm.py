"""Per-model LLM statistics: calls, outcomes and latency from `chat {model}` spans, tokens and
cost from OTLP metrics, the caps on label values, and their Prometheus exposition."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from services.monitor.llm import LLMStats
from services.monitor.metrics_ingest import MetricsStore
from services.monitor.prometheus import render_metrics
from services.monitor.state import MonitorState
from shared.config import Settings
from tests.unit.otlp_builders import NANOS, Clock, cost, export, kv, metrics_export, token_usage

CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT
CLAUDE = 'provider="anthropic",model="claude-x"'


def chat(
    model: str = "claude-x",
    *,
    millis: int = 300,
    error_type: str = "",
    failed: bool = False,
    provider: str = "anthropic",
    kind: trace_pb2.Span.SpanKind.ValueType = CLIENT,
    name: str | None = None,
) -> trace_pb2.Span:
    """A `chat {model}` span as services/script/llm/caller.py makes it."""
    span = trace_pb2.Span(
        trace_id=os.urandom(16),
        span_id=os.urandom(8),
        name=f"chat {model}" if name is None else name,
        kind=kind,
        start_time_unix_nano=NANOS,
        end_time_unix_nano=NANOS + millis * 1_000_000,
    )
    attributes = [kv("gen_ai.operation.name", "chat"), kv("gen_ai.provider.name", provider)]
    if name is None:
        attributes.append(kv("gen_ai.request.model", model))
    if error_type:
        attributes.append(kv("error.type", error_type))
    if error_type or failed:
        span.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    span.attributes.extend(attributes)
    return span


def test_chat_client_spans_count_calls_by_model_outcome_and_error_type() -> None:
    state = MonitorState(Settings(), clock=Clock())
    spans = [
        chat(millis=300),
        chat(millis=2000),
        chat(millis=40, error_type="429"),
        chat(millis=40, failed=True),  # An error without error.type: _OTHER.
        chat("gpt-y", provider="openai", millis=150_000, error_type="timeout"),
        chat(name="chat claude-z"),  # No gen_ai.request.model: the model from the span name.
        chat(kind=trace_pb2.Span.SPAN_KIND_INTERNAL),  # Not an LLM request.
        chat(name="chatter"),
    ]
    state.ingest_spans(export("script", spans))
    assert state.llm.calls == {
        ("anthropic", "claude-x", ""): 2,
        ("anthropic", "claude-x", "429"): 1,
        ("anthropic", "claude-x", "_OTHER"): 1,
        ("openai", "gpt-y", "timeout"): 1,
        ("anthropic", "claude-z", ""): 1,
    }
    claude = state.llm.latency[("anthropic", "claude-x")]
    assert claude.count == 4 and claude.seconds == pytest.approx(2.38)
    assert state.llm.latency[("openai", "gpt-y")].buckets[-1] == 1  # Beyond 120 s: +Inf only.
    assert state.llm.models == 3
    assert state.rule_inputs().llm_calls == {"script": 6.0}  # The per-service count is as before.


def test_tokens_and_cost_by_model_from_cumulative_and_delta_points() -> None:
    store = MetricsStore(Clock())
    first = token_usage([("claude-x", "input", 1000), ("claude-x", "output", 200)])
    store.ingest(metrics_export("script", [first, cost(0.25)]))
    later = token_usage(
        [("claude-x", "input", 1500), ("claude-x", "output", 260), ("claude-x", "", 9)]
    )
    store.ingest(metrics_export("script", [later, cost(0.40)]))
    store.ingest(metrics_export("script", [cost(0.5, delta=True)], instance="i-2"))
    gpt = token_usage([("gpt-y", "input", 50)], delta=True, provider="openai")
    store.ingest(metrics_export("script", [gpt]))
    store.ingest(metrics_export("script", [gpt]))
    assert store.llm.tokens == {
        ("anthropic", "claude-x", "input"): 1500.0,  # Cumulative: the latest value.
        ("anthropic", "claude-x", "output"): 260.0,
        ("openai", "gpt-y", "input"): 100.0,  # Delta: the sum.
    }
    assert store.llm.cost == {("anthropic", "claude-x"): pytest.approx(0.9)}
    # Token usage still counts per service as before; cost is kept by model only.
    assert store.token_usage() == {"input": 1600.0, "output": 260.0, "": 9.0}
    assert store.total("doppel.llm.cost") == {}
    epoch = store.epoch()
    assert store.window_total("doppel.llm.cost", epoch, epoch) == {}


def test_models_error_types_and_token_types_are_capped() -> None:
    llm = LLMStats(max_models=2)
    for model in ("m1", "m2", "m3", "m4"):
        llm.record_call("p", model, 0.1)
        llm.add_cost("p", model, 1.0)
        llm.add_tokens("p", model, "input", 10)
    for number in range(60):
        llm.record_call("p", "m1", 0.1, error_type=f"e{number}")
    llm.record_call("", "", 0.1)  # Nothing named: unknown, and beyond the cap as well.
    assert set(llm.latency) == {("p", "m1"), ("p", "m2"), ("_other", "_other")}
    assert llm.cost == {("p", "m1"): 1.0, ("p", "m2"): 1.0, ("_other", "_other"): 2.0}
    assert llm.tokens[("_other", "_other", "input")] == 20
    assert llm.latency[("_other", "_other")].count == 3
    assert llm.models == 2
    error_types = {e for (_, model, e) in llm.calls if model == "m1" and e}
    assert len(error_types) == 51 and "_other" in error_types  # 50 kept, the rest folded.
    assert llm.calls[("p", "m1", "_other")] == 10
    assert LLMStats(max_models=5).model("", "") == ("unknown", "unknown")


def llm_state() -> MonitorState:
    state = MonitorState(Settings(), clock=Clock())
    spans = [chat(millis=3), chat(millis=40), chat(millis=40), chat(millis=40, error_type="429")]
    state.ingest_spans(export("script", spans))
    usage = token_usage([("claude-x", "input", 1200), ("claude-x", "output", 300)])
    state.ingest_metrics(metrics_export("script", [usage, cost(0.0123)]))
    return state


def test_exposition_of_the_llm_families() -> None:
    text = render_metrics(llm_state())
    lines = text.splitlines()
    for expected in (
        "# TYPE doppel_llm_model_calls_total counter",
        f'doppel_llm_model_calls_total{{{CLAUDE},outcome="ok"}} 3',
        f'doppel_llm_model_calls_total{{{CLAUDE},outcome="error",error_type="429"}} 1',
        "# TYPE doppel_llm_model_call_duration_seconds histogram",
        f'doppel_llm_model_call_duration_seconds_bucket{{{CLAUDE},le="0.005"}} 1',
        f'doppel_llm_model_call_duration_seconds_bucket{{{CLAUDE},le="0.025"}} 1',
        f'doppel_llm_model_call_duration_seconds_bucket{{{CLAUDE},le="0.05"}} 4',
        f'doppel_llm_model_call_duration_seconds_bucket{{{CLAUDE},le="120"}} 4',
        f'doppel_llm_model_call_duration_seconds_bucket{{{CLAUDE},le="+Inf"}} 4',
        f"doppel_llm_model_call_duration_seconds_sum{{{CLAUDE}}} 0.123",
        f"doppel_llm_model_call_duration_seconds_count{{{CLAUDE}}} 4",
        "# TYPE doppel_llm_model_tokens_total counter",
        f'doppel_llm_model_tokens_total{{{CLAUDE},type="input"}} 1200',
        f'doppel_llm_model_tokens_total{{{CLAUDE},type="output"}} 300',
        "# TYPE doppel_llm_model_cost_usd_total counter",
        f"doppel_llm_model_cost_usd_total{{{CLAUDE}}} 0.0123",
        "doppel_monitor_llm_models 1",
    ):
        assert expected in lines, expected


def test_the_llm_families_are_present_but_empty_without_llm_traffic() -> None:
    text = render_metrics(MonitorState(Settings(), clock=Clock()))
    for family in ("calls_total", "call_duration_seconds", "tokens_total", "cost_usd_total"):
        assert f"# TYPE doppel_llm_model_{family} " in text
        assert f"\ndoppel_llm_model_{family}" not in text
    assert "doppel_monitor_llm_models 0" in text


def test_the_llm_families_pass_promtool() -> None:
    """tests/integration/test_monitor_collector.py checks a real scrape; this, the families."""
    promtool = shutil.which("promtool")
    assert promtool, "promtool is missing: `make test` installs it (scripts/system_deps.sh)"
    result = subprocess.run(
        [promtool, "check", "metrics"], input=render_metrics(llm_state()),
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout + result.stderr == "", result.stderr
