"""Counters over sliding windows: the same 10-second slots as the operation statistics.

Used for what the alert rules read per window but the span statistics do not hold: LLM calls,
cache lookups, tokens, and spans lost (shed by the monitor or dropped by exporters). Each key
keeps a ring of `SLOTS` slot sums; at most `max_keys` keys, the least recently updated forgotten
first. A slot's sum stops at `sanitize.MAX_TOTAL`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable

from services.monitor.sanitize import clamp_total
from services.monitor.stats import SLOTS

DEFAULT_MAX_KEYS = 10_000


class _Ring:
    __slots__ = ("epochs", "sums")

    def __init__(self) -> None:
        self.epochs = [-1] * SLOTS
        self.sums = [0.0] * SLOTS

    def add(self, epoch: int, value: float) -> None:
        pos = epoch % SLOTS
        if self.epochs[pos] != epoch:
            self.epochs[pos] = epoch
            self.sums[pos] = 0.0
        self.sums[pos] = clamp_total(self.sums[pos] + value)

    def total(self, first_epoch: int, last_epoch: int) -> float:
        first = max(first_epoch, last_epoch - SLOTS + 1)
        return sum(
            self.sums[e % SLOTS]
            for e in range(first, last_epoch + 1)
            if self.epochs[e % SLOTS] == e
        )


class WindowedCounters:
    """Sums per key over slot epochs first..last (inclusive)."""

    def __init__(self, max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self._max_keys = max_keys
        self._rings: OrderedDict[Hashable, _Ring] = OrderedDict()

    def add(self, key: Hashable, epoch: int, value: float = 1.0) -> None:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = _Ring()
            if len(self._rings) > self._max_keys:
                self._rings.popitem(last=False)
        else:
            self._rings.move_to_end(key)
        ring.add(epoch, value)

    def total(self, key: Hashable, first_epoch: int, last_epoch: int) -> float:
        ring = self._rings.get(key)
        return 0.0 if ring is None else ring.total(first_epoch, last_epoch)

    def totals(self, first_epoch: int, last_epoch: int) -> dict[Hashable, float]:
        """Every key with a non-zero sum in the epochs."""
        found = {}
        for key, ring in self._rings.items():
            value = ring.total(first_epoch, last_epoch)
            if value:
                found[key] = value
        return found

    def __len__(self) -> int:
        return len(self._rings)
