"""Health score: the formula of docs/monitor.md, its worked examples and edge cases."""

from __future__ import annotations

import pytest

from services.monitor.alerts import (
    MB,
    Alert,
    RuleInputs,
    Severity,
    State,
    Thresholds,
    evaluate_rules,
)
from services.monitor.health import (
    HealthInputs,
    compute_health,
    errors_score,
    memory_score,
    trend_score,
)
from services.monitor.state import MonitorState
from services.monitor.stats import WindowStats
from shared.config import Settings


def op(
    operation: str, count: int, errors: int, p95: float, service: str = "svc", kind: str = "SERVER"
) -> WindowStats:
    return WindowStats(service, operation, kind, count, errors, p95 / 2, p95, p95, 0.0)


def firing(*severities: Severity) -> list[Alert]:
    return [
        Alert(f"al-{i}", "rule", s, State.FIRING, "svc", f"op{i}", "", 0.0, 0.0, 0)
        for i, s in enumerate(severities)
    ]


def fire_all(inputs: RuleInputs) -> list[Alert]:
    """The alerts the rules find, as if each had held past the hold time."""
    return [
        Alert(str(i), c.rule, c.severity, State.FIRING, c.service, c.operation, "", 0.0, 0.0, 0)
        for i, c in enumerate(evaluate_rules(inputs, Thresholds()))
    ]


def test_example_1_idle_is_exactly_100() -> None:
    health = compute_health(HealthInputs())
    assert health.score == 100.0
    assert (health.errors, health.alerts, health.resources, health.trends) == (1.0, 1.0, 1.0, 1.0)
    report = MonitorState(Settings()).health_report()
    assert report.score == 100.0
    assert (report.errors, report.alerts, report.resources, report.trends) == (1, 1, 1, 1)
    assert (report.spans_received, report.spans_dropped, list(report.services)) == (0, 0, [])


def test_example_2_half_of_one_operation_failing() -> None:
    window = [op("RenderScene", 120, 60, 0.2, "scene"), op("Get", 600, 0, 0.004, "cache")]
    previous = [op("RenderScene", 120, 0, 0.2, "scene"), op("Get", 600, 0, 0.004, "cache")]
    memory = {"script": 300 * MB}
    alerts = fire_all(RuleInputs(60, window, memory))
    assert [(a.rule, a.severity, a.operation) for a in alerts] == [
        ("error_rate", Severity.CRITICAL, "RenderScene")
    ]
    health = compute_health(
        HealthInputs(window, list(zip(window, previous, strict=True)), memory, alerts)
    )
    assert (health.errors, health.alerts, health.resources, health.trends) == (0.0, 0.5, 1.0, 0.0)
    assert health.score == pytest.approx(35.0)
    # The window clears: no errors, no alerts, nothing to compare.
    recovered = [op("RenderScene", 120, 0, 0.2, "scene"), op("Get", 600, 0, 0.004, "cache")]
    health = compute_health(
        HealthInputs(recovered, list(zip(recovered, window, strict=True)), memory)
    )
    assert health.score == 100.0


def test_example_3_three_warnings() -> None:
    window = [
        op("RenderScene", 200, 24, 0.5, "scene"),
        op("Get", 600, 0, 0.004, "cache"),
        op("outline", 20, 0, 7.5, "script", "INTERNAL"),
    ]
    previous = [
        op("RenderScene", 200, 10, 0.2, "scene"),
        op("Get", 600, 0, 0.004, "cache"),
        op("outline", 10, 0, 7.5, "script", "INTERNAL"),
    ]
    memory = {"script": 650 * MB, "scene": 300 * MB}
    alerts = fire_all(RuleInputs(60, window, memory))
    assert sorted((a.rule, a.severity, a.service) for a in alerts) == [
        ("error_rate", Severity.WARNING, "scene"),
        ("memory", Severity.WARNING, "script"),
        ("slow_operation", Severity.WARNING, "script"),
    ]
    health = compute_health(
        HealthInputs(window, list(zip(window, previous, strict=True)), memory, alerts)
    )
    assert health.errors == pytest.approx(0.4)
    assert health.alerts == pytest.approx(0.25)
    assert health.resources == pytest.approx(0.7)
    assert health.trends == pytest.approx(0.6)
    assert health.score == pytest.approx(45.5)


def test_example_4_one_alert_of_each_other_severity() -> None:
    inputs = RuleInputs(
        60,
        [op("_other", 5, 0, 0.01)],
        cache_lookups={"cache": (20.0, 80.0)},
        lost_spans={("script", "exporter_queue_full"): 12.0},
    )
    alerts = fire_all(inputs)
    assert sorted((a.rule, a.severity) for a in alerts) == [
        ("cache_hit_rate", Severity.CRITICAL),
        ("operations_capped", Severity.INFO),
        ("telemetry_loss", Severity.ERROR),
    ]
    health = compute_health(HealthInputs(firing=alerts))
    assert health.alerts == pytest.approx(0.15)
    assert health.score == pytest.approx(74.5)


def test_errors_take_the_worst_busy_operation_or_the_overall_rate() -> None:
    t = Thresholds()
    busy = [op("a", 1000, 0, 0.1), op("b", 10, 1, 0.1)]  # b: 10 % over 10 calls.
    assert errors_score(busy, t) == pytest.approx(0.5)
    quiet = [op("a", 1000, 0, 0.1), op("b", 9, 9, 0.1)]  # b has too few calls to count alone...
    assert errors_score(quiet, t) == pytest.approx(1 - (9 / 1009) / 0.2)  # ...but counts overall.
    assert errors_score([op("c", 4, 4, 0.1)], t) == 0.0  # Overall 100 %.


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        ((), 1.0),
        ((Severity.INFO,), 1.0),
        ((Severity.WARNING,), 0.75),
        ((Severity.ERROR,), 0.65),
        ((Severity.CRITICAL,), 0.5),
        ((Severity.CRITICAL, Severity.CRITICAL, Severity.WARNING), 0.0),  # Floors at zero.
    ],
)
def test_alert_penalties(severities: tuple[Severity, ...], expected: float) -> None:
    assert compute_health(HealthInputs(firing=firing(*severities))).alerts == pytest.approx(
        expected
    )


@pytest.mark.parametrize(
    ("rss_mb", "expected"),
    [(100, 1.0), (500, 1.0), (750, 0.5), (800, 0.4), (1000, 0.0), (4000, 0.0)],
)
def test_memory_score_is_linear_between_500_and_1000_mb(rss_mb: float, expected: float) -> None:
    assert memory_score(rss_mb * MB, Thresholds()) == pytest.approx(expected)


def test_resources_take_the_worst_service_and_follow_the_thresholds() -> None:
    health = compute_health(HealthInputs(memory_bytes={"a": 100 * MB, "b": 900 * MB}))
    assert health.resources == pytest.approx(0.2)
    assert health.score == pytest.approx(100 - 20 * 0.8)
    higher = Thresholds(memory_warning_mb=1000, memory_critical_mb=2000)
    assert memory_score(1500 * MB, higher) == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("current", "previous", "expected"),
    [
        (op("Op", 19, 0, 9.0), op("Op", 100, 0, 1.0), 1.0),  # Too few current calls.
        (op("Op", 100, 0, 9.0), op("Op", 19, 0, 1.0), 1.0),  # Too few previous calls.
        (op("Op", 100, 0, 1.5), op("Op", 100, 0, 1.0), 1.0),  # 1.5x is tolerated.
        (op("Op", 100, 0, 2.75), op("Op", 100, 0, 1.0), 0.5),
        (op("Op", 100, 0, 8.0), op("Op", 100, 0, 1.0), 0.0),
        (op("Op", 100, 10, 1.0), op("Op", 100, 0, 1.0), 0.5),  # +10 points of errors.
        (op("Op", 100, 0, 1.0), op("Op", 100, 30, 1.0), 1.0),  # Fewer errors is no penalty.
    ],
)
def test_trend_score(current: WindowStats, previous: WindowStats, expected: float) -> None:
    assert trend_score(current, previous, Thresholds()) == pytest.approx(expected)


def test_custom_thresholds_change_the_errors_score() -> None:
    strict = Thresholds(error_rate_warning=0.01, error_rate_critical=0.02)
    health = compute_health(HealthInputs([op("Op", 100, 1, 0.1)]), strict)
    assert health.errors == pytest.approx(0.5)
