"""What the monitor takes from the wire and what it refuses: names, values, totals.

The OTLP receivers are open (exporters carry no token), so every name and number in an export is
hostile until checked: one NaN once poisoned every later report. Names are cut to
`MAX_NAME_CHARS` (they become keys that live as long as the monitor); unusable metric points are
rejected and counted by reason; totals stop at `MAX_TOTAL` (2**53: exact in a double, fits
int64). The rules and their reasons: docs/monitor.md, What ingestion refuses.
"""

from __future__ import annotations

import math

MAX_NAME_CHARS = 256
MAX_POINT_VALUE = 1e15
MAX_POINTS_PER_EXPORT = 10_000
MAX_TOTAL = float(2**53)

NON_FINITE = "non_finite"
OUT_OF_RANGE = "out_of_range"
NEGATIVE_COUNTER = "negative_counter"
NAME_TOO_LONG = "name_too_long"
EXPORT_CAP = "export_cap"
REJECT_REASONS = (NON_FINITE, OUT_OF_RANGE, NEGATIVE_COUNTER, NAME_TOO_LONG, EXPORT_CAP)
NAME_FIELDS = ("service", "instance", "operation", "provider", "model", "error_type")


def value_problem(value: float, *, counter: bool) -> str | None:
    """Why a point's value cannot be used (a reason of `REJECT_REASONS`), or None."""
    if not math.isfinite(value):
        return NON_FINITE
    if value < 0:
        return NEGATIVE_COUNTER if counter else OUT_OF_RANGE
    if value > MAX_POINT_VALUE:
        return OUT_OF_RANGE
    return None


def clamp_total(value: float) -> float:
    """A running total or window sum, held within [0, MAX_TOTAL]."""
    return min(max(value, 0.0), MAX_TOTAL)


class Sanitizer:
    """Cuts names and counts what it cut and what it rejected, for `/metrics`."""

    def __init__(self) -> None:
        self.points_rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.names_truncated = dict.fromkeys(NAME_FIELDS, 0)

    def name(self, text: str, field: str) -> str:
        """`text`, cut to `MAX_NAME_CHARS` (counted under `field`) when longer."""
        if len(text) <= MAX_NAME_CHARS:
            return text
        self.names_truncated[field] = self.names_truncated.get(field, 0) + 1
        return text[:MAX_NAME_CHARS]

    def reject(self, reason: str, points: int = 1) -> None:
        self.points_rejected[reason] = self.points_rejected.get(reason, 0) + points

    @property
    def rejected(self) -> int:
        return sum(self.points_rejected.values())
