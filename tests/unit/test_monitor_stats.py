"""Operation statistics: histogram accuracy, sliding windows, cardinality cap, error rules."""

from __future__ import annotations

import math
import random

import pytest

from services.monitor.stats import (
    BUCKETS,
    HISTOGRAM_MAX_SECONDS,
    HISTOGRAM_MIN_SECONDS,
    KIND_CLIENT,
    KIND_INTERNAL,
    KIND_SERVER,
    OTHER,
    PROMETHEUS_BUCKETS,
    RELATIVE_ERROR,
    STATUS_ERROR,
    OperationStatsStore,
    WindowStats,
    bucket_index,
    is_error,
)

START = 10_000.0  # A slot boundary, so window arithmetic in the tests is exact.


class Clock:
    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


def only(rows: list[WindowStats]) -> WindowStats:
    assert len(rows) == 1, rows
    return rows[0]


@pytest.mark.parametrize(
    "distribution",
    [
        pytest.param(lambda r: r.uniform(0.001, 2.0), id="uniform-1ms-2s"),
        pytest.param(lambda r: r.expovariate(1 / 0.05), id="exponential-mean-50ms"),
        pytest.param(
            lambda r: math.exp(r.uniform(math.log(2e-4), math.log(200))), id="log-uniform"
        ),
        pytest.param(lambda r: r.lognormvariate(math.log(0.3), 1.2), id="lognormal"),
    ],
)
def test_percentiles_are_within_the_documented_relative_error(distribution) -> None:
    rng = random.Random(7)
    values = [min(max(distribution(rng), 1e-4), 299.0) for _ in range(20_000)]
    store = OperationStatsStore(max_operations=10, clock=Clock())
    for value in values:
        store.record("svc", "op", KIND_SERVER, value, False)
    row = only(store.window(60))
    assert row.count == len(values)
    for q, estimate in ((0.50, row.p50_seconds), (0.95, row.p95_seconds), (0.99, row.p99_seconds)):
        exact = nearest_rank(values, q)
        assert abs(estimate - exact) / exact <= RELATIVE_ERROR + 1e-9, (q, estimate, exact)


def test_documented_error_bound_matches_the_growth_factor() -> None:
    assert 0.07 < RELATIVE_ERROR < 0.075  # sqrt(1.15) - 1
    assert bucket_index(HISTOGRAM_MIN_SECONDS / 2) == 0
    assert bucket_index(HISTOGRAM_MAX_SECONDS * 2) == BUCKETS - 1
    durations = [HISTOGRAM_MIN_SECONDS * 1.01**i for i in range(1, 1600)]
    indices = [bucket_index(d) for d in durations if d < HISTOGRAM_MAX_SECONDS]
    assert indices == sorted(indices) and indices[0] == 1 and indices[-1] == BUCKETS - 2


def test_single_durations_are_exact_and_overflow_reports_the_largest() -> None:
    store = OperationStatsStore(max_operations=10, clock=Clock())
    for _ in range(10):
        store.record("svc", "op", KIND_SERVER, 0.123, False)
    row = only(store.window(60))
    assert row.p50_seconds == row.p95_seconds == row.p99_seconds == 0.123
    store.record("svc", "huge", KIND_SERVER, 400.0, False)
    store.record("svc", "huge", KIND_SERVER, 1000.0, False)
    store.record("svc", "tiny", KIND_SERVER, 2e-6, False)
    by_name = {r.operation: r for r in store.window(60)}
    assert by_name["huge"].p99_seconds == 1000.0  # Beyond 300 s: the largest seen.
    assert by_name["tiny"].p50_seconds == 2e-6


def test_windows_expire_with_the_clock() -> None:
    clock = Clock()
    store = OperationStatsStore(max_operations=10, clock=clock)
    for _ in range(30):
        store.record("svc", "op", KIND_SERVER, 0.01, False)
    clock.now += 61  # The first slot has left the 1-minute window, not the others.
    assert store.window(60) == []
    assert only(store.window(300)).count == 30
    assert only(store.window(900)).count == 30
    clock.now += 300
    assert store.window(300) == []
    assert only(store.window(900)).count == 30
    clock.now += 600
    assert store.window(900) == []


def test_slots_are_reused_when_the_ring_comes_round() -> None:
    clock = Clock()
    store = OperationStatsStore(max_operations=10, clock=clock)
    store.record("svc", "op", KIND_SERVER, 0.01, True)
    clock.now += 900  # Same ring position, 90 slots later.
    store.record("svc", "op", KIND_SERVER, 2.0, False)
    row = only(store.window(60))
    assert (row.count, row.errors, row.p99_seconds) == (1, 0, 2.0)


def test_counts_errors_and_throughput_over_the_covered_time() -> None:
    clock = Clock()
    store = OperationStatsStore(max_operations=10, clock=clock)
    for second in range(60):
        clock.now = START + second
        store.record("svc", "op", KIND_SERVER, 0.05, False)
        store.record("svc", "op", KIND_SERVER, 0.05, second % 10 == 0)
    clock.now = START + 59.5
    row = only(store.window(60))
    assert (row.count, row.errors) == (120, 6)
    assert row.error_rate == pytest.approx(0.05)
    assert row.throughput_per_second == pytest.approx(120 / 59.5)
    assert only(store.window(900)).throughput_per_second == pytest.approx(120 / 59.5)


def test_windows_separate_services_kinds_and_filter_by_service() -> None:
    store = OperationStatsStore(max_operations=10, clock=Clock())
    store.record("script", "Get", KIND_CLIENT, 0.01, False)
    store.record("cache", "Get", KIND_SERVER, 0.01, False)
    store.record("cache", "Get", KIND_SERVER, 0.01, False)
    rows = store.window(60)
    assert [(r.service, r.operation, r.kind, r.count) for r in rows] == [
        ("cache", "Get", "SERVER", 2),
        ("script", "Get", "CLIENT", 1),
    ]
    assert [r.service for r in store.window(60, service="script")] == ["script"]


def test_operations_beyond_the_cap_fold_into_other() -> None:
    store = OperationStatsStore(max_operations=3, clock=Clock())
    for i in range(6):
        store.record("svc", f"op{i}", KIND_SERVER, 0.01, i == 5)
    store.record("svc", "op0", KIND_SERVER, 0.01, False)  # Known operations keep their row.
    store.record("other-svc", "x", KIND_INTERNAL, 0.01, False)
    rows = {(r.service, r.operation): r for r in store.window(60)}
    assert set(rows) == {
        ("svc", "op0"), ("svc", "op1"), ("svc", "op2"), ("svc", OTHER), ("other-svc", OTHER),
    }  # fmt: skip
    assert rows[("svc", "op0")].count == 2
    assert (rows[("svc", OTHER)].count, rows[("svc", OTHER)].errors) == (3, 1)
    assert len(store) == 5


def test_span_kinds_outside_the_enum_count_as_unspecified() -> None:
    store = OperationStatsStore(max_operations=1, clock=Clock())
    for kind in range(6, 3000):  # OTLP's enum is open: any int32 arrives on the wire.
        store.record("svc", f"op{kind}", kind, 0.01, False)
    rows = store.window(60)
    assert len(store) <= 2
    assert sum(row.count for row in rows) == 3000 - 6
    assert {row.kind for row in rows} == {"UNSPECIFIED"}


def test_trends_pair_the_window_with_the_one_before() -> None:
    clock = Clock()
    store = OperationStatsStore(max_operations=10, clock=clock)
    for _ in range(40):
        store.record("svc", "op", KIND_SERVER, 0.1, False)
    store.record("svc", "gone", KIND_SERVER, 0.1, False)  # Nothing in the current window.
    clock.now += 60
    for _ in range(30):
        store.record("svc", "op", KIND_SERVER, 0.4, True)
    store.record("svc", "new", KIND_SERVER, 0.4, False)  # No previous window: not compared.
    window, pairs = store.window_with_previous(60)
    assert window == store.window(60)
    assert [(r.operation, r.count, r.errors) for r in window] == [("new", 1, 0), ("op", 30, 30)]
    ((current, previous),) = pairs
    assert (current.operation, current.count, current.errors) == ("op", 30, 30)
    assert (previous.count, previous.errors) == (40, 0)
    assert current.p95_seconds == 0.4 and previous.p95_seconds == 0.1
    assert previous.throughput_per_second == pytest.approx(40 / 60)
    clock.now += 2 * 60  # Both windows have moved past the traffic.
    assert store.window_with_previous(60) == ([], [])


def test_running_totals_feed_prometheus_buckets() -> None:
    store = OperationStatsStore(max_operations=10, clock=Clock())
    for seconds in (0.001, 0.005, 0.2, 3.0, 119.0, 500.0):
        store.record("svc", "op", KIND_SERVER, seconds, seconds > 200)
    (row,) = store.cumulative()
    assert (row.service, row.operation, row.kind, row.count, row.errors) == (
        "svc", "op", "SERVER", 6, 1,
    )  # fmt: skip
    assert row.seconds == pytest.approx(622.206)
    by_bound = dict(zip([*PROMETHEUS_BUCKETS, math.inf], row.buckets, strict=True))
    assert by_bound[0.005] == 2  # A duration equal to a bound is in that bucket (le).
    assert (by_bound[0.25], by_bound[5.0], by_bound[120.0], by_bound[math.inf]) == (1, 1, 1, 1)
    assert sum(row.buckets) == 6


@pytest.mark.parametrize(
    ("kind", "status", "grpc_code", "rpc_status", "expected"),
    [
        (KIND_INTERNAL, STATUS_ERROR, None, None, True),
        (KIND_INTERNAL, 0, 13, "INTERNAL", False),  # Only the status counts on INTERNAL spans.
        (KIND_SERVER, 0, None, None, False),
        (KIND_SERVER, 1, 0, "OK", False),
        (KIND_SERVER, 0, 5, "NOT_FOUND", False),  # The caller's fault, not the server's.
        (KIND_SERVER, 0, 3, None, False),  # INVALID_ARGUMENT.
        (KIND_SERVER, 0, 2, None, True),  # UNKNOWN.
        (KIND_SERVER, 0, 4, None, True),  # DEADLINE_EXCEEDED.
        (KIND_SERVER, 0, 12, None, True),  # UNIMPLEMENTED.
        (KIND_SERVER, 0, 13, None, True),  # INTERNAL.
        (KIND_SERVER, 0, 14, None, True),  # UNAVAILABLE.
        (KIND_SERVER, 0, 15, None, True),  # DATA_LOSS.
        (KIND_SERVER, 0, None, "DEADLINE_EXCEEDED", True),
        (KIND_SERVER, 0, None, "RESOURCE_EXHAUSTED", False),
        (KIND_SERVER, STATUS_ERROR, 0, "OK", True),
        (KIND_CLIENT, 0, 0, "OK", False),
        (KIND_CLIENT, 0, 5, None, True),  # NOT_FOUND fails the caller.
        (KIND_CLIENT, 0, None, "CANCELLED", True),
        (KIND_CLIENT, 0, None, None, False),
    ],
)
def test_error_classification(
    kind: int, status: int, grpc_code: int | None, rpc_status: str | None, expected: bool
) -> None:
    assert is_error(kind, status, grpc_code, rpc_status) is expected
