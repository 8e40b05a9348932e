"""Health score: the formula of services/monitor/health.py, its worked example and edge cases."""

from __future__ import annotations

import pytest

from services.monitor.health import (
    MB,
    HealthInputs,
    Severity,
    Thresholds,
    compute_health,
    evaluate_alerts,
    memory_score,
    trend_score,
)
from services.monitor.state import HEALTH_WINDOW_SECONDS, MonitorState
from services.monitor.stats import KIND_SERVER, OperationStatsStore, WindowStats
from shared.config import Settings

START = 10_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def op(operation: str, count: int, errors: int, p95: float, service: str = "svc") -> WindowStats:
    return WindowStats(service, operation, "SERVER", count, errors, p95 / 2, p95, p95, 0.0)


def test_idle_is_exactly_100_with_every_sub_score_1() -> None:
    health = compute_health(HealthInputs())
    assert health.score == 100.0
    assert (health.errors, health.alerts, health.resources, health.trends) == (1.0, 1.0, 1.0, 1.0)
    assert health.firing == ()
    report = MonitorState(Settings()).health_report()
    assert report.score == 100.0
    assert (report.errors, report.alerts, report.resources, report.trends) == (1, 1, 1, 1)
    assert (report.spans_received, report.spans_dropped, list(report.services)) == (0, 0, [])


def test_worked_example_from_the_module_docstring() -> None:
    window = [
        op("GenerateEpisode", 100, 2, 7.5, service="script"),
        op("RenderScene", 300, 36, 0.2, service="scene"),
        op("Get", 600, 2, 0.004, service="cache"),
    ]
    trends = [
        (op("RenderScene", 60, 9, 0.5, "scene"), op("RenderScene", 240, 27, 0.2, "scene")),
        (op("Get", 120, 0, 0.004, "cache"), op("Get", 480, 2, 0.004, "cache")),
    ]
    memory = {"script": 650 * MB, "scene": 300 * MB}
    health = compute_health(HealthInputs(window, trends, memory))
    assert health.errors == pytest.approx(0.8)
    assert health.alerts == pytest.approx(0.5)
    assert health.resources == pytest.approx(0.7)
    assert health.trends == pytest.approx(0.6)
    assert health.score == pytest.approx(65.0)
    assert [(a.rule, a.severity, a.operation) for a in health.firing] == [
        ("error_rate", Severity.WARNING, "RenderScene"),
        ("slow_operation", Severity.WARNING, "GenerateEpisode"),
    ]
    assert trend_score(*trends[0], Thresholds()) == pytest.approx(0.6)


def test_half_the_calls_failing_drops_errors_and_alerts() -> None:
    clock = Clock()
    store = OperationStatsStore(max_operations=10, clock=clock)
    for i in range(100):
        store.record("scene", "RenderScene", KIND_SERVER, 0.05, i % 2 == 0)
    health = compute_health(HealthInputs(store.window(HEALTH_WINDOW_SECONDS)))
    assert health.errors == 0.0  # 50 % is past the 20 % critical level.
    assert health.alerts == pytest.approx(0.5)  # One critical error_rate alert.
    assert health.score <= 70
    (alert,) = health.firing
    assert (alert.rule, alert.severity, alert.value, alert.threshold) == (
        "error_rate", Severity.CRITICAL, 0.5, 0.20,
    )  # fmt: skip
    assert "RenderScene" in alert.message and "50.0%" in alert.message


@pytest.mark.parametrize(
    ("errors", "p95", "expected"),
    [
        (9, 4.9, []),
        (10, 4.9, [("error_rate", Severity.WARNING, 0.10)]),
        (20, 4.9, [("error_rate", Severity.CRITICAL, 0.20)]),
        (0, 5.0, [("slow_operation", Severity.WARNING, 5.0)]),
        (0, 12.0, [("slow_operation", Severity.CRITICAL, 10.0)]),
        (
            25,
            6.0,
            [("error_rate", Severity.CRITICAL, 0.20), ("slow_operation", Severity.WARNING, 5.0)],
        ),
    ],
)
def test_alert_levels(errors: int, p95: float, expected: list[tuple[str, Severity, float]]) -> None:
    firing = evaluate_alerts([op("Op", 100, errors, p95)], Thresholds())
    assert [(a.rule, a.severity, a.threshold) for a in firing] == expected


def test_alert_penalties_floor_at_zero() -> None:
    window = [op(f"Op{i}", 10, 5, 20.0) for i in range(3)]  # 6 critical alerts.
    health = compute_health(HealthInputs(window))
    assert len(health.firing) == 6
    assert health.alerts == 0.0 and health.errors == 0.0


@pytest.mark.parametrize(
    ("rss_mb", "expected"),
    [(100, 1.0), (500, 1.0), (750, 0.5), (800, 0.4), (1000, 0.0), (4000, 0.0)],
)
def test_memory_score_is_linear_between_500_and_1000_mb(rss_mb: float, expected: float) -> None:
    assert memory_score(rss_mb * MB, Thresholds()) == pytest.approx(expected)


def test_resources_take_the_worst_service() -> None:
    health = compute_health(HealthInputs(memory_bytes={"a": 100 * MB, "b": 900 * MB}))
    assert health.resources == pytest.approx(0.2)
    assert health.score == pytest.approx(100 - 20 * 0.8)


@pytest.mark.parametrize(
    ("recent", "baseline", "expected"),
    [
        (op("Op", 19, 0, 9.0), op("Op", 100, 0, 1.0), 1.0),  # Too few recent calls.
        (op("Op", 100, 0, 9.0), op("Op", 19, 0, 1.0), 1.0),  # Too few baseline calls.
        (op("Op", 100, 0, 1.5), op("Op", 100, 0, 1.0), 1.0),  # 1.5x is tolerated.
        (op("Op", 100, 0, 2.75), op("Op", 100, 0, 1.0), 0.5),
        (op("Op", 100, 0, 8.0), op("Op", 100, 0, 1.0), 0.0),
        (op("Op", 100, 10, 1.0), op("Op", 100, 0, 1.0), 0.5),  # +10 points of errors.
        (op("Op", 100, 0, 1.0), op("Op", 100, 30, 1.0), 1.0),  # Fewer errors is no penalty.
    ],
)
def test_trend_score(recent: WindowStats, baseline: WindowStats, expected: float) -> None:
    assert trend_score(recent, baseline, Thresholds()) == pytest.approx(expected)


def test_custom_thresholds_change_the_rules() -> None:
    strict = Thresholds(error_rate_warning=0.01, error_rate_critical=0.02)
    health = compute_health(HealthInputs([op("Op", 100, 1, 0.1)]), strict)
    assert health.errors == pytest.approx(0.5)
    assert [a.severity for a in health.firing] == [Severity.WARNING]
