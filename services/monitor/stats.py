"""Per-operation statistics over sliding windows, in bounded memory.

Each (service, span name, kind) keeps a ring of `SLOTS` slots of `SLOT_SECONDS` (15 minutes),
each with counts, extremes and a log histogram (`GROWTH` 1.15: percentiles within
`RELATIVE_ERROR`, about 7.3 %), so recording a span costs the same however much came before, and
memory is capped by `max_operations` (the rest folds into `_other`). Running totals beside the
ring feed `/metrics`. Limits and sizes: docs/monitor.md, Ingestion.
"""

from __future__ import annotations

import math
import operator
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

SLOT_SECONDS = 10
WINDOWS_SECONDS = (60, 300, 900)
SLOTS = max(WINDOWS_SECONDS) // SLOT_SECONDS

HISTOGRAM_MIN_SECONDS = 1e-4
HISTOGRAM_MAX_SECONDS = 300.0
GROWTH = 1.15
_INNER_BUCKETS = math.ceil(math.log(HISTOGRAM_MAX_SECONDS / HISTOGRAM_MIN_SECONDS, GROWTH))
BUCKETS = _INNER_BUCKETS + 2
RELATIVE_ERROR = math.sqrt(GROWTH) - 1.0

PROMETHEUS_BUCKETS = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip

OTHER = "_other"
MAX_SPAN_KIND = 5  # SPAN_KIND_CONSUMER; OTLP's enum is open, so larger values arrive too.

Key = TypeVar("Key", bound=Hashable)


class CappedValues:
    """Passes the first `limit` distinct values through; later ones become `other`."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[Hashable] = set()

    def __call__(self, value: Key, other: Key) -> Key:
        if value in self._seen:
            return value
        if len(self._seen) < self._limit:
            self._seen.add(value)
            return value
        return other

    def __len__(self) -> int:
        return len(self._seen)


OTHER_LIMIT = 100

# OTLP span kinds (opentelemetry.proto.trace.v1.Span.SpanKind).
KIND_INTERNAL = 1
KIND_SERVER = 2
KIND_CLIENT = 3
KIND_NAMES = {
    0: "UNSPECIFIED",
    1: "INTERNAL",
    2: "SERVER",
    3: "CLIENT",
    4: "PRODUCER",
    5: "CONSUMER",
}

# OTLP status code ERROR (opentelemetry.proto.trace.v1.Status.StatusCode).
STATUS_ERROR = 2

# gRPC codes that make a SERVER span an error; on a CLIENT span every code but OK does.
SERVER_ERROR_CODES = frozenset(
    {"UNKNOWN", "DEADLINE_EXCEEDED", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
)
SERVER_ERROR_NUMBERS = frozenset({2, 4, 12, 13, 14, 15})

_LOG_MIN = math.log(HISTOGRAM_MIN_SECONDS)
_INV_LOG_GROWTH = 1.0 / math.log(GROWTH)
_ZEROS = array("I", bytes(4 * BUCKETS))
_BUCKET_VALUES = [
    HISTOGRAM_MIN_SECONDS,
    *(HISTOGRAM_MIN_SECONDS * GROWTH ** (i - 0.5) for i in range(1, BUCKETS - 1)),
    math.inf,  # Clamped to the largest duration seen.
]


def bucket_index(seconds: float) -> int:
    """The histogram bucket of a duration."""
    if seconds < HISTOGRAM_MIN_SECONDS:
        return 0
    if seconds >= HISTOGRAM_MAX_SECONDS:
        return BUCKETS - 1
    return min(int((math.log(seconds) - _LOG_MIN) * _INV_LOG_GROWTH) + 1, BUCKETS - 2)


def is_error(kind: int, status_code: int, grpc_code: int | None, rpc_status: str | None) -> bool:
    """Error classification of a span (RPC semantic conventions).

    `grpc_code` is the `rpc.grpc.status_code` attribute, `rpc_status` the `rpc.status_code` one.
    """
    if status_code == STATUS_ERROR:
        return True
    if kind == KIND_SERVER:
        return grpc_code in SERVER_ERROR_NUMBERS or rpc_status in SERVER_ERROR_CODES
    if kind == KIND_CLIENT:
        return (grpc_code is not None and grpc_code != 0) or (
            rpc_status is not None and rpc_status != "OK"
        )
    return False


def percentiles(
    histogram: Sequence[int], total: int, quantiles: Sequence[float], low: float, high: float
) -> list[float]:
    """Nearest-rank percentiles (ascending quantiles in 0-1) of a histogram, clamped to
    [low, high], in one walk."""
    if total <= 0:
        return [0.0] * len(quantiles)
    ranks = [max(1, math.ceil(q * total)) for q in quantiles]
    found: list[float] = []
    seen = 0
    for index, count in enumerate(histogram):
        if not count:
            continue
        seen += count
        while len(found) < len(ranks) and seen >= ranks[len(found)]:
            found.append(min(max(_BUCKET_VALUES[index], low), high))
        if len(found) == len(ranks):
            break
    return found + [high] * (len(ranks) - len(found))


@dataclass(frozen=True)
class WindowStats:
    """One operation over one window."""

    service: str
    operation: str
    kind: str
    count: int
    errors: int
    p50_seconds: float
    p95_seconds: float
    p99_seconds: float
    throughput_per_second: float

    @property
    def error_rate(self) -> float:
        return self.errors / self.count if self.count else 0.0


class _Operation:
    """The slot ring of one operation."""

    __slots__ = (
        "buckets", "counts", "epochs", "errors", "hists", "maxs", "mins", "total_count",
        "total_errors", "total_seconds",
    )  # fmt: skip

    def __init__(self) -> None:
        self.epochs = [-1] * SLOTS
        self.counts = [0] * SLOTS
        self.errors = [0] * SLOTS
        self.mins = [math.inf] * SLOTS
        self.maxs = [0.0] * SLOTS
        self.hists: list[array[int] | None] = [None] * SLOTS
        self.total_count = 0
        self.total_errors = 0
        self.total_seconds = 0.0
        self.buckets = [0] * (len(PROMETHEUS_BUCKETS) + 1)  # The last one is +Inf.

    def add(self, epoch: int, seconds: float, error: bool) -> None:
        pos = epoch % SLOTS
        if self.epochs[pos] != epoch:
            self._reset(pos, epoch)
        self.counts[pos] += 1
        if error:
            self.errors[pos] += 1
        if seconds < self.mins[pos]:
            self.mins[pos] = seconds
        if seconds > self.maxs[pos]:
            self.maxs[pos] = seconds
        hist = self.hists[pos]
        assert hist is not None
        hist[bucket_index(seconds)] += 1
        self.total_count += 1
        self.total_errors += error
        self.total_seconds += seconds
        self.buckets[bisect_left(PROMETHEUS_BUCKETS, seconds)] += 1

    def _reset(self, pos: int, epoch: int) -> None:
        self.epochs[pos] = epoch
        self.counts[pos] = 0
        self.errors[pos] = 0
        self.mins[pos] = math.inf
        self.maxs[pos] = 0.0
        hist = self.hists[pos]
        if hist is None:
            self.hists[pos] = array("I", _ZEROS)
        else:
            hist[:] = _ZEROS

    def positions(self, first_epoch: int, last_epoch: int) -> list[int]:
        """Ring positions holding data of epochs first..last (inclusive)."""
        span = range(max(first_epoch, last_epoch - SLOTS + 1), last_epoch + 1)
        return [e % SLOTS for e in span if self.epochs[e % SLOTS] == e and self.counts[e % SLOTS]]


@dataclass(frozen=True)
class _Merged:
    """Slots of one operation added together."""

    count: int
    errors: int
    low: float
    high: float
    histogram: Sequence[int]

    def __add__(self, other: _Merged) -> _Merged:
        return _Merged(
            self.count + other.count,
            self.errors + other.errors,
            min(self.low, other.low),
            max(self.high, other.high),
            list(map(operator.add, self.histogram, other.histogram)),
        )

    def stats(self, label: tuple[str, str, str], covered_seconds: float) -> WindowStats:
        p50, p95, p99 = percentiles(self.histogram, self.count, _QUANTILES, self.low, self.high)
        throughput = self.count / covered_seconds if covered_seconds > 0 else 0.0
        return WindowStats(*label, self.count, self.errors, p50, p95, p99, throughput)


_QUANTILES = (0.50, 0.95, 0.99)


def _merge(op: _Operation, positions: list[int]) -> _Merged:
    hists = [op.hists[p] for p in positions]
    merged = list(map(sum, zip(*hists, strict=True))) if len(hists) > 1 else hists[0]
    assert merged is not None
    return _Merged(
        sum(op.counts[p] for p in positions),
        sum(op.errors[p] for p in positions),
        min(op.mins[p] for p in positions),
        max(op.maxs[p] for p in positions),
        merged,
    )


OperationKey = tuple[str, str, int]


class OperationStatsStore:
    """Statistics of every operation; `clock` returns seconds (monotonic by default)."""

    def __init__(self, max_operations: int, clock: Callable[[], float] = time.monotonic) -> None:
        self._max_operations = max_operations
        self._clock = clock
        self._started = clock()
        self._ops: dict[OperationKey, _Operation] = {}
        self._named = 0
        self._others = 0

    def epoch(self, now: float | None = None) -> int:
        """The slot number of `now` (the clock's current time by default)."""
        return int((self._clock() if now is None else now) // SLOT_SECONDS)

    def record(self, service: str, name: str, kind: int, seconds: float, error: bool) -> None:
        """Records one span; use `record_at` in loops to read the clock once."""
        self.record_at(self.epoch(), service, name, kind, seconds, error)

    def record_at(
        self, epoch: int, service: str, name: str, kind: int, seconds: float, error: bool
    ) -> None:
        # An unknown kind would open a new `_other` row per value; it counts as unspecified.
        key = (service, name, kind if 0 <= kind <= MAX_SPAN_KIND else 0)
        op = self._ops.get(key) or self._new_operation(key)
        op.add(epoch, seconds if seconds > 0.0 else 0.0, error)

    def _new_operation(self, key: OperationKey) -> _Operation:
        service, _, kind = key
        if self._named < self._max_operations:
            self._named += 1
        else:
            key = (service, OTHER, kind)
            if key not in self._ops and self._others >= OTHER_LIMIT:
                key = (OTHER, OTHER, kind)
            if key in self._ops:
                return self._ops[key]
            self._others += 1
        op = self._ops[key] = _Operation()
        return op

    def _covered(self, now: float, slots: int) -> float:
        """Seconds of traffic that the last `slots` slots hold at `now`."""
        current = now - self.epoch(now) * SLOT_SECONDS
        return min((slots - 1) * SLOT_SECONDS + current, now - self._started)

    def _labelled(self, service: str = "") -> Iterator[tuple[tuple[str, str, str], _Operation]]:
        for (op_service, name, kind), op in self._ops.items():
            if not service or op_service == service:
                yield (op_service, name, KIND_NAMES.get(kind, str(kind))), op

    def window(self, window_seconds: int, service: str = "") -> list[WindowStats]:
        """Every operation with traffic in the last `window_seconds`, sorted by name."""
        now = self._clock()
        last = self.epoch(now)
        slots = max(1, window_seconds // SLOT_SECONDS)
        covered = self._covered(now, slots)
        rows = []
        for label, op in self._labelled(service):
            positions = op.positions(last - slots + 1, last)
            if positions:
                rows.append(_merge(op, positions).stats(label, covered))
        rows.sort(key=lambda r: (r.service, r.operation, r.kind))
        return rows

    def window_with_previous(
        self, window_seconds: int
    ) -> tuple[list[WindowStats], list[tuple[WindowStats, WindowStats]]]:
        """`window(window_seconds)`, and per operation with traffic in both, that window paired
        with the one of the same length just before it (for trends)."""
        now = self._clock()
        last = self.epoch(now)
        slots = max(1, window_seconds // SLOT_SECONDS)
        covered = self._covered(now, slots)
        rows, pairs = [], []
        for label, op in self._labelled():
            current_positions = op.positions(last - slots + 1, last)
            if not current_positions:
                continue
            current = _merge(op, current_positions).stats(label, covered)
            rows.append(current)
            previous_positions = op.positions(last - 2 * slots + 1, last - slots)
            if previous_positions:
                previous = _merge(op, previous_positions).stats(label, slots * SLOT_SECONDS)
                pairs.append((current, previous))
        rows.sort(key=lambda r: (r.service, r.operation, r.kind))
        return rows, pairs

    def cumulative(self) -> list[OperationTotals]:
        """Running totals of every operation since the store was created, sorted by name."""
        rows = [
            OperationTotals(*label, op.total_count, op.total_errors, op.total_seconds, op.buckets)
            for label, op in self._labelled()
        ]
        rows.sort(key=lambda r: (r.service, r.operation, r.kind))
        return rows

    @property
    def capped(self) -> bool:
        """True once operations beyond the cap have been folded into `_other`."""
        return self._others > 0

    def __len__(self) -> int:
        return len(self._ops)


@dataclass(frozen=True)
class OperationTotals:
    """One operation since the monitor started; `buckets` counts per PROMETHEUS_BUCKETS, +Inf."""

    service: str
    operation: str
    kind: str
    count: int
    errors: int
    seconds: float
    buckets: Sequence[int]


def totals(rows: Iterable[WindowStats]) -> tuple[int, int]:
    """(calls, errors) summed over rows."""
    calls = errors = 0
    for row in rows:
        calls += row.count
        errors += row.errors
    return calls, errors
