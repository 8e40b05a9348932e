"""Health score 0-100: pure functions of the window statistics and the firing alerts.

    score = 30 * errors + 30 * alerts + 20 * resources + 20 * trends, each sub-score in [0, 1]

Pure so that one number a person can reason about comes out of the same inputs every time; no
traffic and no alerts give exactly 100. Each sub-score, the reasons behind the weights and worked
examples (tests/unit/test_monitor_health.py repeats them): docs/monitor.md, Health score.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.monitor.alerts import MB, Alert, Severity, Thresholds
from services.monitor.stats import WindowStats, totals

WEIGHT_ERRORS = 30.0
WEIGHT_ALERTS = 30.0
WEIGHT_RESOURCES = 20.0
WEIGHT_TRENDS = 20.0

PENALTIES = {
    Severity.INFO: 0.0,
    Severity.WARNING: 0.25,
    Severity.ERROR: 0.35,
    Severity.CRITICAL: 0.5,
}
TREND_MIN_CALLS = 20
TREND_P95_RATIO_OK = 1.5
TREND_P95_RATIO_RANGE = 2.5


@dataclass(frozen=True)
class HealthInputs:
    """What the score is computed from."""

    window: Sequence[WindowStats] = ()  # Every operation over the current window.
    trends: Sequence[tuple[WindowStats, WindowStats]] = ()  # (current, previous window).
    memory_bytes: Mapping[str, float] = field(default_factory=dict)  # RSS by service.
    firing: Sequence[Alert] = ()


@dataclass(frozen=True)
class Health:
    score: float
    errors: float
    alerts: float
    resources: float
    trends: float


def clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def worst_error_rate(window: Sequence[WindowStats], t: Thresholds) -> float:
    calls, errors = totals(window)
    overall = errors / calls if calls else 0.0
    busy = (op.error_rate for op in window if op.count >= t.min_calls)
    return max(overall, max(busy, default=0.0))


def errors_score(window: Sequence[WindowStats], t: Thresholds) -> float:
    return 1.0 - clamp(worst_error_rate(window, t) / t.error_rate_critical)


def alerts_score(firing: Iterable[Alert]) -> float:
    return max(0.0, 1.0 - sum(PENALTIES[a.severity] for a in firing))


def memory_score(rss_bytes: float, t: Thresholds) -> float:
    span = t.memory_critical_mb - t.memory_warning_mb
    return 1.0 - clamp((rss_bytes / MB - t.memory_warning_mb) / span)


def resources_score(memory_bytes: Mapping[str, float], t: Thresholds) -> float:
    return min((memory_score(rss, t) for rss in memory_bytes.values()), default=1.0)


def trend_score(current: WindowStats, previous: WindowStats, t: Thresholds) -> float:
    """min(latency, drift) for one operation; 1.0 when either window has too few calls."""
    if current.count < TREND_MIN_CALLS or previous.count < TREND_MIN_CALLS:
        return 1.0
    latency = 1.0
    if previous.p95_seconds > 0:
        ratio = current.p95_seconds / previous.p95_seconds
        latency = 1.0 - clamp((ratio - TREND_P95_RATIO_OK) / TREND_P95_RATIO_RANGE)
    drift = 1.0 - clamp((current.error_rate - previous.error_rate) / t.error_rate_critical)
    return min(latency, drift)


def trends_score(pairs: Iterable[tuple[WindowStats, WindowStats]], t: Thresholds) -> float:
    return min((trend_score(current, previous, t) for current, previous in pairs), default=1.0)


def compute_health(inputs: HealthInputs, t: Thresholds | None = None) -> Health:
    """The score and its four sub-scores."""
    t = t or Thresholds()
    errors = errors_score(inputs.window, t)
    alerts = alerts_score(inputs.firing)
    resources = resources_score(inputs.memory_bytes, t)
    trends = trends_score(inputs.trends, t)
    score = (
        WEIGHT_ERRORS * errors
        + WEIGHT_ALERTS * alerts
        + WEIGHT_RESOURCES * resources
        + WEIGHT_TRENDS * trends
    )
    return Health(score, errors, alerts, resources, trends)
