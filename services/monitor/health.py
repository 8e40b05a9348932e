"""Health score 0-100 and the alerts it is built from. Pure functions of operation statistics.

    score = 30 * errors + 30 * alerts + 20 * resources + 20 * trends, each sub-score in [0, 1]

- errors = 1 - min(1, error rate / 0.20), the error rate being all errors over all calls in the
  5-minute window (0.10 is the warning level, 0.20 critical).
- alerts = max(0, 1 - penalties): each firing alert costs 0.25 (warning) or 0.5 (critical). The
  rules, per operation over the 5-minute window: `error_rate` warns at 10 %, critical at 20 %;
  `slow_operation` warns at p95 >= 5 s, critical at 10 s.
- resources = the lowest, over services, of a memory score that is 1 up to 500 MB RSS and falls
  linearly to 0 at 1000 MB (1 MB = 2**20 bytes); 1.0 without memory data.
- trends = the lowest, over operations with at least 20 calls in both the last minute and the
  4 minutes before it, of min(latency, drift) where
  latency = 1 - clamp((p95 last minute / p95 before - 1.5) / 2.5) and
  drift = 1 - clamp((error rate last minute - error rate before) / 0.20); 1.0 without such data.
  (clamp limits to [0, 1].)

With no traffic and no data every sub-score is 1.0 and the score is exactly 100.

Worked example (a unit test repeats it). In the last 5 minutes:
  script GenerateEpisode: 100 calls, 2 errors, p95 7.5 s   -> slow_operation warning
  scene  RenderScene:     300 calls, 36 errors (12 %)     -> error_rate warning
  cache  Get:             600 calls, 2 errors, p95 4 ms
  errors    = 1 - (40 / 1000) / 0.20 = 0.8
  alerts    = 1 - 0.25 - 0.25 = 0.5
  resources: script at 650 MB -> 1 - (650 - 500) / 500 = 0.7; scene at 300 MB -> 1; min 0.7
  trends: RenderScene p95 0.5 s in the last minute against 0.2 s before (ratio 2.5)
          -> latency = 1 - (2.5 - 1.5) / 2.5 = 0.6; its error rate went from 11.25 % to 15 %
          -> drift = 1 - 0.0375 / 0.20 = 0.8125; the other operations are flat -> trends = 0.6
  score = 30 * 0.8 + 30 * 0.5 + 20 * 0.7 + 20 * 0.6 = 24 + 15 + 14 + 12 = 65
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from services.monitor.stats import WindowStats, totals

MB = 1024 * 1024

WEIGHT_ERRORS = 30.0
WEIGHT_ALERTS = 30.0
WEIGHT_RESOURCES = 20.0
WEIGHT_TRENDS = 20.0


@dataclass(frozen=True)
class Thresholds:
    """Alert levels and score shapes; every default comes from the design."""

    error_rate_warning: float = 0.10
    error_rate_critical: float = 0.20
    slow_p95_warning_seconds: float = 5.0
    slow_p95_critical_seconds: float = 10.0
    memory_warning_bytes: float = 500 * MB
    memory_critical_bytes: float = 1000 * MB
    warning_penalty: float = 0.25
    critical_penalty: float = 0.5
    trend_min_calls: int = 20
    trend_p95_ratio_ok: float = 1.5
    trend_p95_ratio_range: float = 2.5


class Severity(enum.Enum):
    WARNING = "warning"
    CRITICAL = "critical"


@dataclass(frozen=True)
class DerivedAlert:
    """An alert the rule evaluator finds firing now."""

    rule: str
    severity: Severity
    service: str
    operation: str
    value: float
    threshold: float
    message: str

    @property
    def id(self) -> str:
        return f"{self.rule}:{self.service}:{self.operation}"


@dataclass(frozen=True)
class HealthInputs:
    """What the score is computed from."""

    window: Sequence[WindowStats] = ()  # Every operation over the 5-minute window.
    trends: Sequence[tuple[WindowStats, WindowStats]] = ()  # (last minute, 4 minutes before).
    memory_bytes: Mapping[str, float] = field(default_factory=dict)  # RSS by service.


@dataclass(frozen=True)
class Health:
    score: float
    errors: float
    alerts: float
    resources: float
    trends: float
    firing: tuple[DerivedAlert, ...]


def clamp(value: float) -> float:
    return min(1.0, max(0.0, value))


def evaluate_alerts(window: Iterable[WindowStats], t: Thresholds) -> list[DerivedAlert]:
    """Firing error_rate and slow_operation alerts, critical first."""
    found = []
    for op in window:
        error_rate = _level(op.error_rate, t.error_rate_warning, t.error_rate_critical)
        if error_rate is not None:
            severity, threshold = error_rate
            message = (
                f"{op.service} {op.operation}: error rate {op.error_rate:.1%} over 5 min "
                f"({op.errors} of {op.count} calls; {severity.value} at {threshold:.0%})"
            )
            found.append(
                DerivedAlert(
                    "error_rate", severity, op.service, op.operation, op.error_rate,
                    threshold, message,
                )
            )  # fmt: skip
        slow = _level(op.p95_seconds, t.slow_p95_warning_seconds, t.slow_p95_critical_seconds)
        if slow is not None:
            severity, threshold = slow
            message = (
                f"{op.service} {op.operation}: p95 latency {op.p95_seconds:.2f} s over 5 min "
                f"({severity.value} at {threshold:g} s)"
            )
            found.append(
                DerivedAlert(
                    "slow_operation", severity, op.service, op.operation, op.p95_seconds,
                    threshold, message,
                )
            )  # fmt: skip
    found.sort(key=lambda a: (a.severity is not Severity.CRITICAL, a.rule, a.service, a.operation))
    return found


def _level(value: float, warning: float, critical: float) -> tuple[Severity, float] | None:
    if value >= critical:
        return Severity.CRITICAL, critical
    if value >= warning:
        return Severity.WARNING, warning
    return None


def errors_score(window: Iterable[WindowStats], t: Thresholds) -> float:
    calls, errors = totals(window)
    if not calls:
        return 1.0
    return 1.0 - min(1.0, errors / calls / t.error_rate_critical)


def alerts_score(firing: Iterable[DerivedAlert], t: Thresholds) -> float:
    penalty = sum(
        t.critical_penalty if a.severity is Severity.CRITICAL else t.warning_penalty for a in firing
    )
    return max(0.0, 1.0 - penalty)


def memory_score(rss_bytes: float, t: Thresholds) -> float:
    span = t.memory_critical_bytes - t.memory_warning_bytes
    return 1.0 - clamp((rss_bytes - t.memory_warning_bytes) / span)


def resources_score(memory_bytes: Mapping[str, float], t: Thresholds) -> float:
    return min((memory_score(rss, t) for rss in memory_bytes.values()), default=1.0)


def trend_score(recent: WindowStats, baseline: WindowStats, t: Thresholds) -> float:
    """min(latency, drift) for one operation; 1.0 when either side has too few calls."""
    if recent.count < t.trend_min_calls or baseline.count < t.trend_min_calls:
        return 1.0
    latency = 1.0
    if baseline.p95_seconds > 0:
        ratio = recent.p95_seconds / baseline.p95_seconds
        latency = 1.0 - clamp((ratio - t.trend_p95_ratio_ok) / t.trend_p95_ratio_range)
    drift = 1.0 - clamp((recent.error_rate - baseline.error_rate) / t.error_rate_critical)
    return min(latency, drift)


def trends_score(pairs: Iterable[tuple[WindowStats, WindowStats]], t: Thresholds) -> float:
    return min((trend_score(recent, baseline, t) for recent, baseline in pairs), default=1.0)


def compute_health(inputs: HealthInputs, t: Thresholds | None = None) -> Health:
    """The score, its four sub-scores and the alerts behind the alerts sub-score."""
    t = t or Thresholds()
    firing = evaluate_alerts(inputs.window, t)
    errors = errors_score(inputs.window, t)
    alerts = alerts_score(firing, t)
    resources = resources_score(inputs.memory_bytes, t)
    trends = trends_score(inputs.trends, t)
    score = (
        WEIGHT_ERRORS * errors
        + WEIGHT_ALERTS * alerts
        + WEIGHT_RESOURCES * resources
        + WEIGHT_TRENDS * trends
    )
    return Health(score, errors, alerts, resources, trends, tuple(firing))
