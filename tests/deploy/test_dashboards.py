"""Every Grafana panel's PromQL, evaluated by a real Prometheus scraping the running stack.

The studio runs as real processes (`doppel.stack.Stack` on free ports), a real `prometheus`
(Debian's) scrapes the monitor's /metrics every second with the alert rules of
deploy/prometheus/alerts.yml loaded, two episodes are written by the `anthropic` writer against
the loopback provider (`testkit.llm_server.LLMServer`, which answers the first call with one 429)
while it scrapes, and then each panel's queries go through /api/v1/query and must return at least
one finite sample. No panel is exempt: every one is built on the monitor's /metrics, which has
the LLM tokens, cost, calls by error type and latency by model as well as the per-operation RED.

The monitor's alert thresholds are set low for this stack (every operation is "slow"), so the
alert panels have alerts to show.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from doppel.stack import Stack
from shared.config import Settings
from testkit import eventually_sync, free_port
from testkit.llm_server import ANTHROPIC_PATH, LLMServer
from tests.deploy.conftest import DEPLOY, require_command
from tests.fakes.llm_support import TEST_KEY

DASHBOARDS = DEPLOY / "grafana" / "dashboards"
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "1s", "$__range": "5m"}
# What only the OpenTelemetry Collector's Prometheus exporter has: span metrics and the OTLP
# metrics under their own names. No provisioned panel may read them (there is no collector here).
COLLECTOR_ONLY_METRICS = re.compile(
    r"traces_span_metrics_|gen_ai_|doppel_llm_(calls|cost)|otelcol_|target_info"
)
MODEL = "claude-loopback"
# Every operation is slow; alerts fire at once (the window and evaluation are the shortest).
ALERTING_THRESHOLDS = ",".join(
    (
        "slow_p95_warning_seconds=0.000001",
        "slow_p95_critical_seconds=0.000002",
        "min_calls=1",
        "hold_seconds=0",
    )
)


@dataclass
class Panel:
    dashboard: str
    title: str
    exprs: list[str]


def panels() -> list[Panel]:
    found = []
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        variables = {f"${v['name']}": v.get("allValue", ".*") for v in board["templating"]["list"]}
        for panel in board["panels"]:
            exprs = [substitute(t["expr"], variables) for t in panel.get("targets", [])]
            found.append(Panel(path.name, panel["title"], exprs))
    return found


def substitute(expr: str, variables: dict[str, str]) -> str:
    """What Grafana sends: template variables at "All", interval variables as fixed durations."""
    for name, value in sorted(
        {**GRAFANA_VARIABLES, **variables}.items(), key=lambda kv: -len(kv[0])
    ):
        expr = expr.replace("${" + name[1:] + "}", value).replace(name, value)
    return expr


class Prometheus:
    """A real prometheus process scraping the monitor's /metrics every second."""

    def __init__(self, workdir: Path, monitor_http: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "prometheus" / "alerts.yml")],
            "scrape_configs": [
                {
                    "job_name": "doppelganger-monitor",
                    "static_configs": [{"targets": [monitor_http]}],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log = (workdir / "prometheus.log").open("wb")
        self.process = subprocess.Popen(
            [require_command("prometheus"), f"--config.file={workdir / 'prometheus.yml'}",
             f"--storage.tsdb.path={workdir / 'data'}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--log.level=warn"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            return dict(json.load(response))

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = self.get("/api/v1/query", query=expr)
        assert body["status"] == "success", body
        return list(body["data"]["result"])

    def wait_ready(self, timeout: float) -> None:

        def ready() -> bool:
            if self.process.poll() is not None:
                raise RuntimeError("prometheus exited (see prometheus.log)")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                    return response.status == 200
            except OSError:
                return False

        eventually_sync(ready, timeout=timeout, interval=0.1, what="prometheus ready")

    def wait_for_first_scrape(self, timeout: float) -> None:
        """Targets are scraped only after discovery settles (about 5 s after start)."""
        eventually_sync(
            lambda: self.query('up{job="doppelganger-monitor"} == 1'),
            timeout=timeout, interval=0.2, what="the monitor scraped",
        )  # fmt: skip

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()


@dataclass
class Observed:
    prometheus: Prometheus
    answers: dict[tuple[str, str], list[list[dict[str, Any]]]]


def finite(result: list[dict[str, Any]]) -> bool:
    return any(math.isfinite(float(sample["value"][1])) for sample in result)


def stack_settings(llm: LLMServer) -> tuple[Settings, dict[str, str]]:
    ports = {name: free_port() for name in ("script", "scene", "cache", "monitor", "http")}
    env = {
        "DOPPEL_SCRIPT_PORT": str(ports["script"]),
        "DOPPEL_SCENE_PORT": str(ports["scene"]),
        "DOPPEL_CACHE_PORT": str(ports["cache"]),
        "DOPPEL_MONITOR_PORT": str(ports["monitor"]),
        "DOPPEL_MONITOR_HTTP_PORT": str(ports["http"]),
        "DOPPEL_GRACE_SECONDS": "2",
        "DOPPEL_MONITOR_WINDOW_SECONDS": "60",
        "DOPPEL_MONITOR_EVAL_INTERVAL_SECONDS": "0.5",
        "DOPPEL_MONITOR_THRESHOLDS": ALERTING_THRESHOLDS,
        "OTEL_BSP_SCHEDULE_DELAY": "200",
        "OTEL_METRIC_EXPORT_INTERVAL": "1000",
        # The `anthropic` writer on the loopback provider: fast retries, limits never in the way.
        "ANTHROPIC_BASE_URL": llm.anthropic_url,
        "ANTHROPIC_API_KEY": TEST_KEY,
        "DOPPEL_ANTHROPIC_MODEL": MODEL,
        "DOPPEL_LLM_BACKOFF_SECONDS": "0.05",
        "DOPPEL_LLM_MAX_BACKOFF_SECONDS": "0.2",
        "DOPPEL_LLM_TIMEOUT_SECONDS": "10",
        "DOPPEL_LLM_REQUESTS_PER_MINUTE": "10000",
        "DOPPEL_LLM_TOKENS_PER_MINUTE": "1000000000",
    }
    return Settings.from_env(env), env


def generate(env: dict[str, str], seed: int, out: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "doppel.cli", "generate", "--show", "Taxi", "--setting",
         "a lighthouse", "--scenes", "3", "--seed", str(seed), "--out", str(out), "--quiet",
         "--writer", "anthropic"],
        env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def wait_for_answers(prometheus: Prometheus, timeout: float) -> dict[tuple[str, str], Any]:
    """Queries every panel until each one has data (or the time is up)."""
    answers: dict[tuple[str, str], Any] = {}

    def complete() -> bool:
        answers.update(
            {(p.dashboard, p.title): [prometheus.query(e) for e in p.exprs] for p in panels()}
        )
        return all(finite(r) for p in panels() for r in answers[p.dashboard, p.title])

    with contextlib.suppress(AssertionError):  # Each panel's test says what it lacks.
        eventually_sync(complete, timeout=timeout, interval=1.0)
    return answers


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Observed]:
    with LLMServer() as llm:
        yield from observe(llm, tmp_path_factory.mktemp("prometheus"))


def observe(llm: LLMServer, workdir: Path) -> Iterator[Observed]:
    settings, overrides = stack_settings(llm)
    unset = ("REDIS_URL", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT", "OPENAI_API_KEY",
             "OPENAI_BASE_URL", "DOPPEL_WRITER", "DOPPEL_FAULTS")  # fmt: skip
    env = {**os.environ, **overrides, "PYTHONUNBUFFERED": "1"}
    for name in unset:
        env.pop(name, None)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in overrides.items():
            patch.setenv(name, value)
        for name in unset:
            patch.delenv(name, raising=False)
        stack = Stack(settings, log_dir=workdir / "logs").start()
    try:
        prometheus = Prometheus(workdir, f"127.0.0.1:{settings.monitor_http_port}")
        try:
            prometheus.wait_ready(timeout=30)
            prometheus.wait_for_first_scrape(timeout=30)
            # Two episodes a few scrapes apart, so counters move while Prometheus watches; the
            # provider refuses the first call once (HTTP 429), which the writer retries.
            llm.inject("429", path=ANTHROPIC_PATH)
            generate(env, seed=1, out=workdir / "out")
            eventually_sync(
                lambda: prometheus.query("sum(doppel_llm_model_calls_total) > 0"),
                timeout=30, interval=0.2, what="a scrape that saw the first episode",
            )  # fmt: skip
            generate(env, seed=2, out=workdir / "out")
            assert llm.calls(ANTHROPIC_PATH, status=429), "the provider never answered 429"
            yield Observed(prometheus, wait_for_answers(prometheus, timeout=30))
        finally:
            prometheus.stop()
    finally:
        stack.stop()


def test_dashboards_are_the_four_expected() -> None:
    titles = {json.loads(p.read_text())["title"] for p in DASHBOARDS.glob("*.json")}
    assert titles == {
        "Doppelganger / Service RED",
        "Doppelganger / Health",
        "Doppelganger / Alerts",
        "Doppelganger / LLM",
    }


def test_no_panel_reads_what_only_the_collector_exports() -> None:
    """The collector's span metrics and OTLP metrics stay in Prometheus for ad-hoc queries
    (docs/deploy.md), but every provisioned panel is built on the monitor's /metrics."""
    found = [
        f"{p.dashboard}: {p.title}: {e}" for p in panels() for e in p.exprs
        if COLLECTOR_ONLY_METRICS.search(e)
    ]  # fmt: skip
    assert found == []


def test_every_panel_returns_data_from_the_running_stack(observed: Observed) -> None:
    empty = []
    for panel in panels():
        for expr, result in zip(
            panel.exprs, observed.answers[panel.dashboard, panel.title], strict=True
        ):
            if not finite(result):
                empty.append(f"{panel.dashboard}: {panel.title}: {expr} -> {result}")
    assert empty == []
    assert len(panels()) >= 40


def test_panels_show_what_happened(observed: Observed) -> None:
    """Not just any data: the episodes' calls, every service, and the alerts the stack raised."""
    rate = observed.prometheus.query(
        'sum by (service) (rate(doppel_operation_calls_total{kind="SERVER"}[1m]))'
    )
    assert {r["metric"]["service"] for r in rate} >= {"script", "scene", "cache"}
    active = observed.prometheus.query("doppel_alert_active == 1")
    assert {r["metric"]["rule"] for r in active} >= {"slow_operation"}
    score = observed.prometheus.query("doppel_health_score")
    assert 0 <= float(score[0]["value"][1]) <= 100


def test_llm_panels_show_the_loopback_provider(observed: Observed) -> None:
    """The LLM panels' series are the writer's: its model, both token types, a cost, the 429."""
    query = observed.prometheus.query
    who = f'provider="anthropic", model="{MODEL}"'
    tokens = query(f"sum by (type) (doppel_llm_model_tokens_total{{{who}}}) > 0")
    assert {r["metric"]["type"] for r in tokens} == {"input", "output"}
    assert query(f"doppel_llm_model_cost_usd_total{{{who}}} > 0")

    def value(expr: str) -> float:
        result = query(expr)
        return float(result[0]["value"][1]) if result else 0.0

    ok_calls = f'doppel_llm_model_calls_total{{{who}, outcome="ok"}}'
    durations = f"doppel_llm_model_call_duration_seconds_count{{{who}}}"
    # The last spans reach the monitor, then Prometheus, a scrape or two after the episodes.

    def all_scraped() -> bool:
        ok, counted = value(ok_calls), value(durations)
        assert ok >= 8 and counted == ok + 1, (ok, counted)
        return True

    eventually_sync(all_scraped, timeout=20, interval=0.5)
    assert value(ok_calls) >= 8  # Two episodes: an outline and 3 scenes each.
    refused = query(f'doppel_llm_model_calls_total{{{who}, error_type="429"}}')
    assert [float(r["value"][1]) for r in refused] == [1.0]
    assert value(durations) == value(ok_calls) + 1


def test_the_variable_query_lists_the_services(observed: Observed) -> None:
    body = observed.prometheus.get(
        "/api/v1/label/service/values", **{"match[]": "doppel_operation_calls_total"}
    )
    assert {"script", "scene", "cache"} <= set(body["data"])


def test_alert_rules_evaluate_without_errors_against_real_metrics(observed: Observed) -> None:
    groups = observed.prometheus.get("/api/v1/rules")["data"]["groups"]
    rules = [rule for group in groups for rule in group["rules"]]
    assert len(rules) == 17  # 5 recording rules, 12 alerts (deploy/prometheus/alerts.yml).
    assert [r for r in rules if r["health"] != "ok"] == []
    recorded = observed.prometheus.query("doppel:operation_calls:increase5m")
    assert recorded, "recording rules produced nothing"
