"""Alert rules, thresholds and the lifecycle engine (pending -> firing -> resolved, streams)."""

from __future__ import annotations

import asyncio
import math

import pytest

from services.monitor.alerts import (
    HISTORY,
    MB,
    AlertEngine,
    Condition,
    RuleInputs,
    Severity,
    State,
    ThresholdError,
    Thresholds,
    evaluate_rules,
)
from services.monitor.stats import WindowStats
from shared.config import ConfigError, Settings

START = 10_000.0


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def op(operation: str, count: int, errors: int, p95: float, service: str = "svc") -> WindowStats:
    return WindowStats(service, operation, "SERVER", count, errors, p95 / 2, p95, p95, 0.0)


def found(inputs: RuleInputs, t: Thresholds | None = None, overrides=()) -> list[tuple]:
    return [
        (c.rule, c.severity, c.service, c.operation, c.threshold)
        for c in evaluate_rules(inputs, t or Thresholds(), overrides)
    ]


@pytest.mark.parametrize(
    ("errors", "p95", "expected"),
    [
        (9, 4.9, []),
        (10, 4.9, [("error_rate", Severity.WARNING, "svc", "Op", 0.10)]),
        (20, 4.9, [("error_rate", Severity.CRITICAL, "svc", "Op", 0.20)]),
        (0, 5.0, [("slow_operation", Severity.WARNING, "svc", "Op", 5.0)]),
        (0, 12.0, [("slow_operation", Severity.CRITICAL, "svc", "Op", 10.0)]),
    ],
)
def test_error_rate_and_slow_operation_levels(errors: int, p95: float, expected: list) -> None:
    assert found(RuleInputs(60, [op("Op", 100, errors, p95)])) == expected


def test_too_few_calls_raise_nothing() -> None:
    assert found(RuleInputs(60, [op("Op", 9, 9, 50.0)])) == []
    assert found(RuleInputs(60, [op("Op", 3, 3, 50.0)]), Thresholds(min_calls=3)) != []


def test_slow_operation_overrides_by_operation_glob() -> None:
    overrides = (("*/GenerateEpisode", 300.0, 600.0), ("batch *", math.inf, math.inf))
    inputs = RuleInputs(
        60,
        [
            op("doppelganger.v1.ScriptService/GenerateEpisode", 10, 0, 200.0),
            op("doppelganger.v1.ScriptService/GenerateEpisode", 10, 0, 400.0, "replica"),
            op("batch nightly", 10, 0, 5000.0),
            op("Render", 10, 0, 6.0),
        ],
    )
    assert found(inputs, overrides=overrides) == [
        ("slow_operation", Severity.WARNING, "replica",
         "doppelganger.v1.ScriptService/GenerateEpisode", 300.0),
        ("slow_operation", Severity.WARNING, "svc", "Render", 5.0),
    ]  # fmt: skip


def test_memory_llm_calls_and_cache_hit_rate() -> None:
    inputs = RuleInputs(
        120,  # Two minutes: calls per minute are half the count.
        memory_bytes={"a": 499 * MB, "b": 500 * MB, "c": 1000 * MB},
        llm_calls={"script": 199.0, "writer": 400.0, "idle": 10.0, "busy": 210.0},
        cache_lookups={"cache": (10.0, 10.0), "small": (0.0, 19.0), "bad": (4.0, 16.0),
                       "meh": (8.0, 12.0)},
    )  # fmt: skip
    assert found(inputs) == [
        ("memory", Severity.WARNING, "b", "", 500.0),
        ("memory", Severity.CRITICAL, "c", "", 1000.0),
        ("llm_calls", Severity.WARNING, "busy", "", 100.0),  # 105 a minute.
        ("llm_calls", Severity.CRITICAL, "writer", "", 200.0),  # 200 a minute.
        ("cache_hit_rate", Severity.CRITICAL, "bad", "", 0.25),  # 20 % is below 25 %.
        ("cache_hit_rate", Severity.WARNING, "meh", "", 0.5),  # 40 %.
    ]  # "cache" at exactly 50 % is not below 50 %; "small" has too few lookups to judge.


def test_telemetry_loss_is_an_error_and_capping_is_info() -> None:
    inputs = RuleInputs(
        60,
        [op("_other", 3, 0, 0.1), op("_other", 2, 0, 0.1, "b")],
        lost_spans={("monitor", "overload"): 40.0, ("script", "exporter_queue_full"): 0.0},
    )
    conditions = evaluate_rules(inputs, Thresholds())
    assert [(c.rule, c.severity, c.service, c.operation, c.value) for c in conditions] == [
        ("telemetry_loss", Severity.ERROR, "monitor", "overload", 40.0),
        ("operations_capped", Severity.INFO, "", "_other", 5.0),
    ]


@pytest.mark.parametrize(
    ("changes", "field", "reason"),
    [
        ({"error_rate_warning": 0.3}, "error_rate_warning", "below error_rate_critical"),
        ({"slow_p95_critical_seconds": 4.0}, "slow_p95_warning_seconds", "below"),
        ({"cache_hit_rate_critical": 0.6}, "cache_hit_rate_critical", "below"),
        ({"error_rate_critical": 1.5}, "error_rate_critical", "between"),
        ({"memory_warning_mb": -1.0}, "memory_warning_mb", "between"),
        ({"hold_seconds": math.nan}, "hold_seconds", "finite"),
        ({"min_calls": 0.0}, "min_calls", "between"),
        ({"no_such_rule": 1.0}, "no_such_rule", "unknown"),
    ],
)
def test_bad_thresholds_name_the_field(changes: dict, field: str, reason: str) -> None:
    with pytest.raises(ThresholdError) as error:
        Thresholds().updated(changes)
    assert error.value.field == field and reason in error.value.reason


def test_thresholds_update_in_part() -> None:
    changed = Thresholds().updated({"error_rate_warning": 0.05, "hold_seconds": 0.0})
    assert (changed.error_rate_warning, changed.hold_seconds, changed.error_rate_critical) == (
        0.05, 0.0, 0.20,
    )  # fmt: skip
    assert Thresholds().as_dict()["llm_calls_critical_per_minute"] == 200.0


def condition(severity: Severity = Severity.WARNING, operation: str = "Op") -> Condition:
    return Condition("error_rate", severity, "svc", operation, 0.15, 0.10, f"{operation} fails")


def test_pending_fires_after_the_hold_then_resolves_into_history() -> None:
    clock = Clock()
    engine = AlertEngine(clock)
    (pending,) = engine.evaluate([condition()], hold_seconds=30)
    assert (pending.state, pending.fired_unix_nano) == (State.PENDING, 0)
    clock.now += 29
    assert engine.evaluate([condition()], hold_seconds=30) == []
    assert engine.firing() == []
    clock.now += 1
    (fired,) = engine.evaluate([condition()], hold_seconds=30)
    assert fired.state == State.FIRING and fired.id == pending.id
    assert fired.fired_unix_nano - fired.started_unix_nano == 30 * 10**9
    assert engine.evaluate([condition()], hold_seconds=30) == []  # No news, no event.
    clock.now += 5
    (resolved,) = engine.evaluate([], hold_seconds=30)
    assert resolved.state == State.RESOLVED and resolved.id == pending.id
    assert resolved.resolved_unix_nano - resolved.fired_unix_nano == 5 * 10**9
    assert engine.active() == [] and engine.history() == [resolved]


def test_a_pending_alert_that_clears_is_resolved_but_not_kept() -> None:
    engine = AlertEngine(Clock())
    engine.evaluate([condition()], hold_seconds=30)
    (gone,) = engine.evaluate([], hold_seconds=30)
    assert gone.state == State.RESOLVED and gone.fired_unix_nano == 0
    assert engine.history() == []


def test_deduplicated_per_rule_service_operation_and_escalates_in_place() -> None:
    clock = Clock()
    engine = AlertEngine(clock)
    events = engine.evaluate([condition(), condition(), condition(operation="Other")], 0)
    assert [(e.operation, e.state) for e in events] == [
        ("Op", State.FIRING),
        ("Other", State.FIRING),
    ]
    (escalated,) = engine.evaluate([condition(Severity.CRITICAL), condition(operation="Other")], 0)
    assert (escalated.operation, escalated.severity, escalated.state) == (
        "Op", Severity.CRITICAL, State.FIRING,
    )  # fmt: skip
    assert escalated.id == events[0].id and len(engine.active()) == 2
    assert [a.operation for a in engine.firing()] == ["Op", "Other"]  # Critical first.


def test_history_keeps_the_last_50() -> None:
    engine = AlertEngine(Clock())
    for i in range(HISTORY + 7):
        engine.evaluate([condition(operation=f"op{i}")], hold_seconds=0)
        engine.evaluate([], hold_seconds=0)
    history = engine.history()
    assert len(history) == HISTORY
    assert history[0].operation == f"op{HISTORY + 6}" and history[-1].operation == "op7"


async def test_subscribers_get_a_snapshot_then_changes() -> None:
    engine = AlertEngine(Clock())
    engine.evaluate([condition()], hold_seconds=0)
    subscriber = engine.subscribe()
    assert subscriber is not None
    first = await subscriber.next()
    assert first is not None and first.initial and first.alert.state == State.FIRING
    engine.evaluate([], hold_seconds=0)
    resolved = await subscriber.next()
    assert resolved is not None and not resolved.initial
    assert resolved.alert.state == State.RESOLVED
    only_new = engine.subscribe(snapshot=False)
    assert only_new is not None
    engine.evaluate([condition(operation="x")], hold_seconds=0)
    event = await asyncio.wait_for(only_new.next(), 1)
    assert event is not None and event.alert.operation == "x"


async def test_a_slow_subscriber_is_dropped_not_waited_for() -> None:
    engine = AlertEngine(Clock(), subscriber_queue=4, max_subscribers=2)
    slow, fast = engine.subscribe(), engine.subscribe()
    assert slow is not None and fast is not None
    assert engine.subscribe() is None  # At most 2 at once.
    received = 0
    for i in range(3):  # Two events each (firing, resolved): 6 in all, the queues hold 4.
        engine.evaluate([condition(operation=f"op{i}")], hold_seconds=0)
        engine.evaluate([], hold_seconds=0)
        for _ in range(2):
            assert await asyncio.wait_for(fast.next(), 1) is not None
            received += 1
    assert received == 6 and not fast.dropped
    assert slow.dropped and await slow.next() is None
    assert engine.subscribers_dropped == 1 and engine.subscriber_count == 1


def test_monitor_configuration_is_parsed_and_checked() -> None:
    settings = Settings.from_env(
        {
            "DOPPEL_MONITOR_THRESHOLDS": "error_rate_warning=0.05, hold_seconds=0",
            "DOPPEL_MONITOR_SLOW_OPERATIONS": "*/Long=60:120,batch *=off",
            "DOPPEL_MONITOR_WINDOW_SECONDS": "120",
        }
    )
    assert settings.monitor_thresholds == (("error_rate_warning", 0.05), ("hold_seconds", 0.0))
    assert settings.monitor_slow_operations == (
        ("*/Long", 60.0, 120.0), ("batch *", math.inf, math.inf),
    )  # fmt: skip
    assert settings.monitor_window_seconds == 120
    defaults = dict((p, (w, c)) for p, w, c in Settings().monitor_slow_operations)
    assert defaults["*/GenerateEpisode"] == (300.0, 600.0)
    assert defaults["*/WatchAlerts"] == (math.inf, math.inf)
    for name, value in (
        ("DOPPEL_MONITOR_THRESHOLDS", "Error=3"),
        ("DOPPEL_MONITOR_THRESHOLDS", "error_rate_warning"),
        ("DOPPEL_MONITOR_SLOW_OPERATIONS", "x=3:2"),
        ("DOPPEL_MONITOR_SLOW_OPERATIONS", "x=3"),
        ("DOPPEL_MONITOR_WINDOW_SECONDS", "65"),
        ("DOPPEL_MONITOR_WINDOW_SECONDS", "460"),
    ):
        with pytest.raises(ConfigError, match=name):
            Settings.from_env({name: value})
