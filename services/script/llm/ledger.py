"""Spending ledgers kept in one process, by the rules of the shared ones in Redis.

The shared ledgers (CacheService ReserveSpend / SettleSpend, services/cache/coordination_lua.py)
are what every replica draws on. This one mirrors what this replica reserved and spent, and takes
over when the cache service cannot be reached, or when writers are built without one. Same rules:
per scope, one ledger per period length (0: the scope's whole life, forgotten after `idle`
seconds unused; otherwise fixed periods from the epoch, an hour from :00); a reservation holds its
estimate in the period it was made in until settled or until its lease ends; a reservation that
would take spent + reserved past a limit is refused.
"""

from __future__ import annotations

import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from services.script.coordination import SpendDecision, SpendLimit, SpendTotal

MAX_SCOPES = 4096  # Least recently used scopes beyond it are forgotten.


@dataclass
class _Period:
    index: int
    spent_tokens: int = 0
    spent_cost: float = 0.0
    reserved_tokens: int = 0
    reserved_cost: float = 0.0


@dataclass
class _Reservation:
    expires: float
    tokens: int
    cost: float
    held: dict[int, int]  # period length -> the index of the period it was made in


@dataclass
class _Scope:
    idle: float
    used_at: float
    periods: dict[int, _Period] = field(default_factory=dict)
    reservations: dict[str, _Reservation] = field(default_factory=dict)


class SpendLedger:
    """The ledgers of this process, by scope."""

    def __init__(self, clock: Callable[[], float] = time.time, max_scopes: int = MAX_SCOPES):
        self._clock = clock
        self._max_scopes = max_scopes
        self._scopes: OrderedDict[str, _Scope] = OrderedDict()

    def reserve(
        self,
        scope: str,
        reservation_id: str,
        limits: Sequence[SpendLimit],
        tokens: int,
        cost_usd: float,
        lease: float,
        idle: float,
        *,
        force: bool = False,
    ) -> SpendDecision:
        """Holds the estimate, or says which limit refuses it (`force`: holds it anyway, for
        a reservation the shared ledger granted)."""
        now = self._clock()
        ledger = self._scope(scope, idle, now)
        if reservation_id in ledger.reservations:
            return SpendDecision(True, 0, "", 0.0, self._totals(ledger, limits, now))
        for position, limit in enumerate(limits):
            period = self._period(ledger, limit.period_seconds, now)
            exhausted = ""
            if limit.max_tokens and (
                period.spent_tokens + period.reserved_tokens + tokens > limit.max_tokens
            ):
                exhausted = "tokens"
            elif limit.max_cost_usd and (
                period.spent_cost + period.reserved_cost + cost_usd > limit.max_cost_usd + 1e-9
            ):
                exhausted = "cost_usd"
            if exhausted and not force:
                retry = 0.0
                if limit.period_seconds:
                    retry = (period.index + 1) * limit.period_seconds - now
                totals = self._totals(ledger, limits, now)
                return SpendDecision(False, position, exhausted, max(0.0, retry), totals)
        held = {}
        for limit in limits:
            period = self._period(ledger, limit.period_seconds, now)
            period.reserved_tokens += tokens
            period.reserved_cost += cost_usd
            held[limit.period_seconds] = period.index
        ledger.reservations[reservation_id] = _Reservation(now + lease, tokens, cost_usd, held)
        return SpendDecision(True, 0, "", 0.0, self._totals(ledger, limits, now))

    def settle(
        self,
        scope: str,
        reservation_id: str,
        limits: Sequence[SpendLimit],
        tokens: int,
        cost_usd: float,
        idle: float,
    ) -> tuple[SpendTotal, ...]:
        """Replaces the reservation (if it has not expired) by what was spent."""
        now = self._clock()
        ledger = self._scope(scope, idle, now)
        self._release(ledger, reservation_id)
        for limit in limits:
            period = self._period(ledger, limit.period_seconds, now)
            period.spent_tokens += tokens
            period.spent_cost += cost_usd
        return self._totals(ledger, limits, now)

    def _scope(self, name: str, idle: float, now: float) -> _Scope:
        for old_name, old in list(self._scopes.items()):
            if len(self._scopes) <= self._max_scopes and now - old.used_at < old.idle:
                break
            del self._scopes[old_name]
        ledger = self._scopes.pop(name, None) or _Scope(idle, now)
        ledger.idle, ledger.used_at = max(ledger.idle, idle), now
        self._scopes[name] = ledger
        for reservation_id, reservation in list(ledger.reservations.items()):
            if reservation.expires <= now:
                self._release(ledger, reservation_id)
        return ledger

    @staticmethod
    def _period(ledger: _Scope, seconds: int, now: float) -> _Period:
        """The current period of that length (a new one when the last has ended)."""
        index = math.floor(now / seconds) if seconds else 0
        period = ledger.periods.get(seconds)
        if period is None or period.index != index:
            period = ledger.periods[seconds] = _Period(index)
        return period

    @staticmethod
    def _release(ledger: _Scope, reservation_id: str) -> None:
        reservation = ledger.reservations.pop(reservation_id, None)
        if reservation is None:
            return
        for seconds, index in reservation.held.items():
            period = ledger.periods.get(seconds)
            if period is not None and period.index == index:
                period.reserved_tokens -= reservation.tokens
                period.reserved_cost -= reservation.cost

    def _totals(
        self, ledger: _Scope, limits: Sequence[SpendLimit], now: float
    ) -> tuple[SpendTotal, ...]:
        totals = []
        for limit in limits:
            period = self._period(ledger, limit.period_seconds, now)
            totals.append(
                SpendTotal(
                    max(0, period.spent_tokens),
                    max(0, period.reserved_tokens),
                    max(0.0, period.spent_cost),
                    max(0.0, period.reserved_cost),
                )
            )
        return tuple(totals)
