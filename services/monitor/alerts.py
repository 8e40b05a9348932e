"""Alert rules, thresholds and the alert lifecycle (pending -> firing -> resolved).

Rules are pure functions of what the monitor measured over its window (`RuleInputs`); each finds
the conditions that hold now. `AlertEngine.evaluate` runs on a timer, not per span: it turns
conditions into alerts de-duplicated per (rule, service, operation), promotes a pending alert to
firing once its condition has held for `hold_seconds`, resolves alerts whose condition is gone,
keeps the last `HISTORY` alerts that fired, and publishes every change to the `WatchAlerts`
subscribers through bounded queues (a subscriber that falls behind is dropped, never waited for).

Severities: the five design rules warn and go critical at two levels each; `telemetry_loss`
(spans shed by the monitor or dropped by exporters in the window) and `service_silent` (a service
that was heard from and then went quiet for longer than its threshold) are errors;
`operations_capped` (operations beyond the cap folded into `_other`) is information.
docs/monitor.md has the table.
"""

from __future__ import annotations

import asyncio
import enum
import fnmatch
import functools
import itertools
import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace

from services.monitor.stats import OTHER, WindowStats
from shared.config import DEFAULTS

MB = 1024 * 1024
HISTORY = 50
MAX_SUBSCRIBERS = 64
SUBSCRIBER_QUEUE = 256


class Severity(enum.IntEnum):
    """Values match doppelganger.v1.Severity."""

    INFO = 1
    WARNING = 2
    ERROR = 3
    CRITICAL = 4


class State(enum.IntEnum):
    """Values match doppelganger.v1.AlertState."""

    PENDING = 1
    FIRING = 2
    RESOLVED = 3


class ThresholdError(ValueError):
    """A threshold value that cannot be used; `field` names it."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


@dataclass(frozen=True)
class Thresholds:
    """Alert levels; field names are those of doppelganger.v1.AlertThresholds."""

    slow_p95_warning_seconds: float = 5.0
    slow_p95_critical_seconds: float = 10.0
    error_rate_warning: float = 0.10
    error_rate_critical: float = 0.20
    memory_warning_mb: float = 500.0
    memory_critical_mb: float = 1000.0
    llm_calls_warning_per_minute: float = 100.0
    llm_calls_critical_per_minute: float = 200.0
    cache_hit_rate_warning: float = 0.50
    cache_hit_rate_critical: float = 0.25
    cache_min_lookups: float = 20.0
    min_calls: float = 10.0
    hold_seconds: float = 30.0

    def updated(self, changes: Mapping[str, float]) -> Thresholds:
        """A copy with `changes` applied; ThresholdError names the first unusable field."""
        known = {f.name for f in fields(self)}
        for name, value in changes.items():
            if name not in known:
                raise ThresholdError(name, f"unknown threshold; known: {', '.join(sorted(known))}")
            if not math.isfinite(value):
                raise ThresholdError(name, f"must be a finite number, not {value}")
        result = replace(self, **changes)
        result.validate()
        return result

    def validate(self) -> None:
        for name, low, high in _RANGES:
            value = getattr(self, name)
            if not low <= value <= high:
                raise ThresholdError(name, f"must be between {low:g} and {high:g}, not {value:g}")
        for lower, upper in _ORDER:
            if not getattr(self, lower) < getattr(self, upper):
                raise ThresholdError(
                    lower,
                    f"must be below {upper} ({getattr(self, lower):g} >= {getattr(self, upper):g})",
                )

    def as_dict(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_TINY = 1e-9
_RANGES = (
    ("slow_p95_warning_seconds", _TINY, 86_400.0),
    ("slow_p95_critical_seconds", _TINY, 86_400.0),
    ("error_rate_warning", _TINY, 1.0),
    ("error_rate_critical", _TINY, 1.0),
    ("memory_warning_mb", _TINY, 1e9),
    ("memory_critical_mb", _TINY, 1e9),
    ("llm_calls_warning_per_minute", _TINY, 1e9),
    ("llm_calls_critical_per_minute", _TINY, 1e9),
    ("cache_hit_rate_warning", _TINY, 1.0),
    ("cache_hit_rate_critical", 0.0, 1.0),
    ("cache_min_lookups", 1.0, 1e12),
    ("min_calls", 1.0, 1e12),
    ("hold_seconds", 0.0, 3600.0),
)
_ORDER = (  # (must be lower, than this)
    ("slow_p95_warning_seconds", "slow_p95_critical_seconds"),
    ("error_rate_warning", "error_rate_critical"),
    ("memory_warning_mb", "memory_critical_mb"),
    ("llm_calls_warning_per_minute", "llm_calls_critical_per_minute"),
    ("cache_hit_rate_critical", "cache_hit_rate_warning"),
)

SlowOverrides = Sequence[tuple[str, float, float]]  # (glob on the operation, warning, critical)
SilenceLevels = Sequence[tuple[str, float]]  # (glob on the service, seconds; inf: not watched)


@dataclass(frozen=True)
class RuleInputs:
    """What the monitor measured over its window (`window_seconds`)."""

    window_seconds: float = DEFAULTS.monitor_window_seconds
    operations: Sequence[WindowStats] = ()
    memory_bytes: Mapping[str, float] = field(default_factory=dict)  # RSS per service.
    llm_calls: Mapping[str, float] = field(default_factory=dict)  # Calls per service.
    cache_lookups: Mapping[str, tuple[float, float]] = field(default_factory=dict)  # (hits, misses)
    lost_spans: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (service, why)
    # Watched services (traces.RecentServices): (seconds since last heard from, threshold).
    service_silence: Mapping[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Condition:
    """A rule that holds now for one (rule, service, operation)."""

    rule: str
    severity: Severity
    service: str
    operation: str
    value: float
    threshold: float
    message: str

    @property
    def key(self) -> tuple[str, str, str]:
        return self.rule, self.service, self.operation


def _higher(value: float, warning: float, critical: float) -> tuple[Severity, float] | None:
    if value >= critical:
        return Severity.CRITICAL, critical
    if value >= warning:
        return Severity.WARNING, warning
    return None


def _lower(value: float, warning: float, critical: float) -> tuple[Severity, float] | None:
    if value < critical:
        return Severity.CRITICAL, critical
    if value < warning:
        return Severity.WARNING, warning
    return None


@functools.lru_cache(maxsize=4096)
def slow_levels(
    operation: str, overrides: tuple[tuple[str, float, float], ...], warning: float, critical: float
) -> tuple[float, float]:
    """The slow-operation levels of an operation: the first matching override, else the defaults."""
    for pattern, override_warning, override_critical in overrides:
        if fnmatch.fnmatchcase(operation, pattern):
            return override_warning, override_critical
    return warning, critical


@functools.lru_cache(maxsize=4096)
def silence_threshold(service: str, levels: tuple[tuple[str, float], ...]) -> float:
    """Seconds of silence after which `service` raises `service_silent`: the first matching
    level of DOPPEL_MONITOR_SILENT_SERVICES; infinite (never) when none matches or it is off."""
    for pattern, seconds in levels:
        if fnmatch.fnmatchcase(service, pattern):
            return seconds
    return math.inf


def slow_operation_rule(
    inputs: RuleInputs, t: Thresholds, overrides: SlowOverrides = ()
) -> list[Condition]:
    found = []
    for op in inputs.operations:
        if op.count < t.min_calls:
            continue
        warning, critical = slow_levels(
            op.operation, tuple(overrides), t.slow_p95_warning_seconds, t.slow_p95_critical_seconds
        )
        level = _higher(op.p95_seconds, warning, critical)
        if level:
            severity, threshold = level
            message = (
                f"{op.service} {op.operation}: p95 {op.p95_seconds:.2f} s over "
                f"{inputs.window_seconds:g} s ({severity.name.lower()} at {threshold:g} s)"
            )
            found.append(
                Condition(
                    "slow_operation", severity, op.service, op.operation, op.p95_seconds,
                    threshold, message,
                )
            )  # fmt: skip
    return found


def error_rate_rule(inputs: RuleInputs, t: Thresholds) -> list[Condition]:
    found = []
    for op in inputs.operations:
        if op.count < t.min_calls:
            continue
        level = _higher(op.error_rate, t.error_rate_warning, t.error_rate_critical)
        if level:
            severity, threshold = level
            message = (
                f"{op.service} {op.operation}: {op.error_rate:.1%} errors ({op.errors} of "
                f"{op.count} calls in {inputs.window_seconds:g} s; "
                f"{severity.name.lower()} at {threshold:.0%})"
            )
            found.append(
                Condition(
                    "error_rate", severity, op.service, op.operation, op.error_rate, threshold,
                    message,
                )
            )  # fmt: skip
    return found


def memory_rule(inputs: RuleInputs, t: Thresholds) -> list[Condition]:
    found = []
    for service, rss in sorted(inputs.memory_bytes.items()):
        mb = rss / MB
        level = _higher(mb, t.memory_warning_mb, t.memory_critical_mb)
        if level:
            severity, threshold = level
            message = f"{service}: RSS {mb:.0f} MB ({severity.name.lower()} at {threshold:g} MB)"
            found.append(Condition("memory", severity, service, "", mb, threshold, message))
    return found


def llm_calls_rule(inputs: RuleInputs, t: Thresholds) -> list[Condition]:
    found = []
    minutes = inputs.window_seconds / 60.0
    for service, calls in sorted(inputs.llm_calls.items()):
        per_minute = calls / minutes
        level = _higher(per_minute, t.llm_calls_warning_per_minute, t.llm_calls_critical_per_minute)
        if level:
            severity, threshold = level
            message = (
                f"{service}: {per_minute:.0f} LLM calls a minute "
                f"({severity.name.lower()} at {threshold:g})"
            )
            found.append(
                Condition("llm_calls", severity, service, "", per_minute, threshold, message)
            )
    return found


def cache_hit_rate_rule(inputs: RuleInputs, t: Thresholds) -> list[Condition]:
    found = []
    for service, (hits, misses) in sorted(inputs.cache_lookups.items()):
        lookups = hits + misses
        if lookups < t.cache_min_lookups:
            continue
        rate = hits / lookups
        level = _lower(rate, t.cache_hit_rate_warning, t.cache_hit_rate_critical)
        if level:
            severity, threshold = level
            message = (
                f"{service}: cache hit rate {rate:.0%} over {lookups:.0f} lookups "
                f"({severity.name.lower()} below {threshold:.0%})"
            )
            found.append(
                Condition("cache_hit_rate", severity, service, "", rate, threshold, message)
            )
    return found


def telemetry_loss_rule(inputs: RuleInputs, t: Thresholds) -> list[Condition]:
    found = []
    for (service, why), lost in sorted(inputs.lost_spans.items()):
        if lost > 0:
            message = f"{service}: {lost:.0f} spans lost in {inputs.window_seconds:g} s ({why})"
            found.append(
                Condition("telemetry_loss", Severity.ERROR, service, why, lost, 0.0, message)
            )
    return found


def service_silent_rule(inputs: RuleInputs, t: Thresholds) -> list[Condition]:
    found = []
    for service, (silent, threshold) in sorted(inputs.service_silence.items()):
        if silent > threshold:
            message = (
                f"{service}: no spans or metrics for {silent:.0f} s "
                f"(error after {threshold:g} s of silence)"
            )
            found.append(
                Condition("service_silent", Severity.ERROR, service, "", silent, threshold, message)
            )
    return found


def operations_capped_rule(inputs: RuleInputs, t: Thresholds) -> list[Condition]:
    folded = sum(op.count for op in inputs.operations if op.operation == OTHER)
    if not folded:
        return []
    message = (
        f"{folded} spans in {inputs.window_seconds:g} s were of operations beyond the cap, "
        f"counted under {OTHER} (DOPPEL_MONITOR_MAX_OPERATIONS)"
    )
    return [Condition("operations_capped", Severity.INFO, "", OTHER, folded, 0.0, message)]


RULES: tuple[Callable[[RuleInputs, Thresholds], list[Condition]], ...] = (
    error_rate_rule,
    memory_rule,
    llm_calls_rule,
    cache_hit_rate_rule,
    telemetry_loss_rule,
    service_silent_rule,
    operations_capped_rule,
)


def evaluate_rules(
    inputs: RuleInputs, t: Thresholds, slow_overrides: SlowOverrides = ()
) -> list[Condition]:
    """Every condition that holds now."""
    found = slow_operation_rule(inputs, t, slow_overrides)
    for rule in RULES:
        found.extend(rule(inputs, t))
    return found


@dataclass(frozen=True)
class Alert:
    """One alert as it is at some moment (what lists and events carry). Times are unix nanos."""

    id: str
    rule: str
    severity: Severity
    state: State
    service: str
    operation: str
    message: str
    value: float
    threshold: float
    started_unix_nano: int
    fired_unix_nano: int = 0
    resolved_unix_nano: int = 0


@dataclass(frozen=True)
class AlertEvent:
    alert: Alert
    initial: bool = False  # Part of the snapshot a new subscriber gets first.


def sort_key(alert: Alert) -> tuple[int, int, str, str, str]:
    """Firing before pending, most severe first, then by name."""
    return (
        alert.state != State.FIRING,
        -alert.severity,
        alert.rule,
        alert.service,
        alert.operation,
    )


class Subscriber:
    """A bounded queue of events for one WatchAlerts stream.

    When the queue is full the engine drops the subscriber: it stops queueing for it at once, and
    the stream ends (RESOURCE_EXHAUSTED) as soon as its writer gets round to asking for more, which
    for a client that stopped reading is when it reads again or goes away."""

    def __init__(self, max_queued: int = SUBSCRIBER_QUEUE) -> None:
        self._max = max_queued
        self._events: deque[AlertEvent] = deque()
        self._ready = asyncio.Event()
        self.dropped = False

    def push(self, event: AlertEvent) -> bool:
        """Queues an event; False (and nothing queued) when the queue is full."""
        if len(self._events) >= self._max:
            return False
        self._events.append(event)
        self._ready.set()
        return True

    def drop(self) -> None:
        self.dropped = True
        self._events.clear()
        self._ready.set()

    async def next(self) -> AlertEvent | None:
        """The next event; None once the subscriber has been dropped."""
        while not self._events and not self.dropped:
            self._ready.clear()
            await self._ready.wait()
        if self.dropped:
            return None
        return self._events.popleft()


class AlertEngine:
    """Alert lifecycle over evaluations; `clock` is the monitor's (monotonic) clock."""

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        history: int = HISTORY,
        max_subscribers: int = MAX_SUBSCRIBERS,
        subscriber_queue: int = SUBSCRIBER_QUEUE,
    ) -> None:
        self._clock = clock
        self._wall_offset_ns = time.time_ns() - int(clock() * 1e9)
        self._active: dict[tuple[str, str, str], Alert] = {}
        self._since: dict[tuple[str, str, str], float] = {}  # Clock time a pending alert began.
        self._history: deque[Alert] = deque(maxlen=history)
        self._ids = itertools.count(1)
        self._subscribers: list[Subscriber] = []
        self._max_subscribers = max_subscribers
        self.subscriber_queue = subscriber_queue
        self.subscribers_dropped = 0
        self.events_published = 0
        self.evaluations = 0

    def _unix_nano(self, now: float) -> int:
        return self._wall_offset_ns + int(now * 1e9)

    def evaluate(
        self, conditions: Iterable[Condition], hold_seconds: float, now: float | None = None
    ) -> list[Alert]:
        """Applies one evaluation; returns the changes, in the order they were published."""
        now = self._clock() if now is None else now
        self.evaluations += 1
        changes: list[Alert] = []
        seen = set()
        for condition in conditions:
            if condition.key in seen:  # One alert per key: the first (most specific) wins.
                continue
            seen.add(condition.key)
            changes.extend(self._apply(condition, hold_seconds, now))
        for key in [k for k in self._active if k not in seen]:
            changes.append(self._resolve(key, now))
        for alert in changes:
            self._publish(AlertEvent(alert))
        return changes

    def _apply(self, c: Condition, hold_seconds: float, now: float) -> list[Alert]:
        current = self._active.get(c.key)
        if current is None:
            current = Alert(
                f"al-{next(self._ids)}", c.rule, c.severity, State.PENDING, c.service,
                c.operation, c.message, c.value, c.threshold, self._unix_nano(now),
            )  # fmt: skip
            self._since[c.key] = now
            self._active[c.key] = current
            if hold_seconds > 0:
                return [current]
        updated = replace(
            current, severity=c.severity, message=c.message, value=c.value, threshold=c.threshold
        )
        changed = updated.severity != current.severity
        if updated.state == State.PENDING and now - self._since[c.key] >= hold_seconds:
            updated = replace(updated, state=State.FIRING, fired_unix_nano=self._unix_nano(now))
            changed = True
        self._active[c.key] = updated
        return [updated] if changed else []

    def _resolve(self, key: tuple[str, str, str], now: float) -> Alert:
        alert = replace(
            self._active.pop(key), state=State.RESOLVED, resolved_unix_nano=self._unix_nano(now)
        )
        del self._since[key]
        if alert.fired_unix_nano:
            self._history.appendleft(alert)
        return alert

    def _publish(self, event: AlertEvent) -> None:
        self.events_published += 1
        for subscriber in list(self._subscribers):
            if not subscriber.push(event):
                self._drop(subscriber)

    def _drop(self, subscriber: Subscriber) -> None:
        self.subscribers_dropped += 1
        self.unsubscribe(subscriber)
        subscriber.drop()

    def subscribe(self, snapshot: bool = True) -> Subscriber | None:
        """A new subscriber (with the active alerts queued first); None when there are too many."""
        if len(self._subscribers) >= self._max_subscribers:
            return None
        subscriber = Subscriber(self.subscriber_queue)
        if snapshot:
            for alert in self.active()[: self.subscriber_queue]:
                subscriber.push(AlertEvent(alert, initial=True))
        self._subscribers.append(subscriber)
        return subscriber

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber in self._subscribers:
            self._subscribers.remove(subscriber)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def active(self) -> list[Alert]:
        """Pending and firing alerts, firing and most severe first."""
        return sorted(self._active.values(), key=sort_key)

    def firing(self) -> list[Alert]:
        return [a for a in self.active() if a.state == State.FIRING]

    def history(self) -> list[Alert]:
        """Resolved alerts that had fired, newest first (at most HISTORY)."""
        return list(self._history)
