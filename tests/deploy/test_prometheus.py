"""deploy/prometheus: `promtool check config`, `check rules` and `test rules`, and the alert rules
held to the monitor's own rules, thresholds and severities (the five design rules and
service_silent, plus the monitor-down alert only Prometheus can raise)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.monitor.alerts import (
    RuleInputs,
    Severity,
    Thresholds,
    service_silent_rule,
    silence_threshold,
)
from shared.config import Settings
from tests.deploy.conftest import DEPLOY, require_command

PROMETHEUS = DEPLOY / "prometheus"
MONITOR_RULES = {"slow_operation", "error_rate", "memory", "llm_calls", "cache_hit_rate"}
SILENT = "service_silent"
MB = 1048576


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_command("promtool"), *args],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def numbers_in(expr: str) -> set[float]:
    """Every number an expression compares with; `500 * 1048576` counts as the product."""
    products = {float(a) * float(b) for a, b in re.findall(r"([\d.]+) \* ([\d.]+)", expr)}
    return products | {float(n) for n in re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", expr)}


def test_prometheus_config_is_valid(tmp_path: Path) -> None:
    """Checked as compose mounts it: the rules beside it, the monitor's reader token at the path
    the scrape job names (promtool wants the credentials file to exist)."""
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    (monitor,) = [
        job for job in config["scrape_configs"] if job["job_name"] == "doppelganger-monitor"
    ]
    assert monitor["authorization"]["type"] == "Bearer"  # The monitor checks tokens in compose.
    token = tmp_path / "monitor-token"
    token.write_text("reader-token-for-the-check\n")
    monitor["authorization"]["credentials_file"] = str(token)
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    result = promtool("check", "config", str(tmp_path / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 1 rule files found" in result.stdout


def test_rules_are_valid_and_a_broken_rule_is_not(tmp_path: Path) -> None:
    result = promtool("check", "rules", str(PROMETHEUS / "alerts.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    broken = (PROMETHEUS / "alerts.yml").read_text().replace(">= 0.10 < 0.20", ">= 0.10 <", 1)
    (tmp_path / "alerts.yml").write_text(broken)
    assert promtool("check", "rules", str(tmp_path / "alerts.yml")).returncode == 1


def test_promtool_unit_tests_pass(tmp_path: Path) -> None:
    result = promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    # And they can fail: the same tests against rules that warn at 6 s instead of 5 s.
    shutil.copy(PROMETHEUS / "alerts.test.yml", tmp_path)
    changed = (PROMETHEUS / "alerts.yml").read_text().replace(">= 5 < 10", ">= 6 < 10", 1)
    (tmp_path / "alerts.yml").write_text(changed)
    assert promtool("test", "rules", str(tmp_path / "alerts.test.yml")).returncode == 1


@pytest.mark.parametrize(
    ("original", "changed"),
    [
        ("_last_seen_timestamp_seconds > 120", "_last_seen_timestamp_seconds > 200"),
        ("[1h]) > 300)", "[1h]) > 600)"),
        ('up{job="doppelganger-monitor"} == 0', 'up{job="doppelganger-monitor"} == 2'),
    ],
)  # fmt: skip
def test_the_silence_tests_fail_against_other_rules(
    tmp_path: Path, original: str, changed: str
) -> None:
    shutil.copy(PROMETHEUS / "alerts.test.yml", tmp_path)
    rules = (PROMETHEUS / "alerts.yml").read_text()
    assert original in rules
    (tmp_path / "alerts.yml").write_text(rules.replace(original, changed, 1))
    result = promtool("test", "rules", str(tmp_path / "alerts.test.yml"))
    assert result.returncode == 1 and "service silent" in result.stdout + result.stderr


def test_every_monitor_rule_has_a_warning_and_a_critical_alert() -> None:
    pairs = {(r["labels"]["rule"], r["labels"]["severity"]) for r in alert_rules()}
    design = {(rule, level) for rule in MONITOR_RULES for level in ("warning", "critical")}
    # service_silent is an error, as in the monitor; the monitor down is critical.
    assert pairs == design | {(SILENT, "error"), (SILENT, "critical")}
    assert (SILENT, Severity.ERROR.name.lower()) in pairs
    for rule in alert_rules():
        assert re.fullmatch(r"Doppel[A-Z][A-Za-z]+", rule["alert"])
        assert {"summary", "description", "runbook_url"} <= rule["annotations"].keys()


def test_thresholds_are_the_monitors() -> None:
    """The numbers in each expression are the monitor's default levels (services/monitor)."""
    t = Thresholds()
    slow = {pattern: (warning, critical) for pattern, warning, critical in
            Settings().monitor_slow_operations}  # fmt: skip
    levels = {
        "slow_operation": {
            "warning": {
                t.slow_p95_warning_seconds,
                slow["chat *"][0],
                slow["*/GenerateEpisode"][0],
            },
            "critical": {
                t.slow_p95_critical_seconds,
                slow["chat *"][1],
                slow["*/GenerateEpisode"][1],
            },
        },
        "error_rate": {"warning": {t.error_rate_warning}, "critical": {t.error_rate_critical}},
        "memory": {"warning": {t.memory_warning_mb * MB}, "critical": {t.memory_critical_mb * MB}},
        "llm_calls": {
            "warning": {t.llm_calls_warning_per_minute},
            "critical": {t.llm_calls_critical_per_minute},
        },
        "cache_hit_rate": {
            "warning": {t.cache_hit_rate_warning},
            "critical": {t.cache_hit_rate_critical},
        },
    }
    minimums = {"slow_operation": t.min_calls, "error_rate": t.min_calls,
                "cache_hit_rate": t.cache_min_lookups}  # fmt: skip
    levels[SILENT] = {
        "error": {silence_threshold("scene", Settings().monitor_silent_services)},
        "critical": {0.0},  # up == 0
    }
    for rule in alert_rules():
        name, severity = rule["labels"]["rule"], rule["labels"]["severity"]
        found = numbers_in(rule["expr"])
        assert levels[name][severity] <= found, (name, severity, found)
        if name in minimums:
            assert minimums[name] in found, (name, found)
    assert Settings().monitor_slow_operations[2][0] == "chat *"


def test_the_silent_alert_is_the_monitors_rule() -> None:
    """Same name, severity and default level; the CLI, which the monitor never watches, is
    never exported, so Prometheus needs no exclusion of its own."""
    (rule,) = [r for r in alert_rules() if r["alert"] == "DoppelServiceSilent"]
    assert rule["for"] == "30s" and Thresholds().hold_seconds == 30.0
    levels = Settings().monitor_silent_services
    assert silence_threshold("doppel-cli", levels) == float("inf")
    default = silence_threshold("scene", levels)
    assert f"doppel_service_last_seen_timestamp_seconds > {default:g}" in rule["expr"]
    (condition,) = service_silent_rule(
        RuleInputs(service_silence={"scene": (default + 1, default)}), Thresholds()
    )
    assert condition.severity.name.lower() == rule["labels"]["severity"]
