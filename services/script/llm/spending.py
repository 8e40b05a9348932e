"""Spending limits shared by every script replica, with this replica's own ledger as fallback.

A reservation goes to the shared ledger in Redis (CacheService ReserveSpend / SettleSpend) and is
mirrored in this replica's ledger (ledger.py). When the cache service does not answer, the
replica reserves on its own ledger instead, with per-caller limits divided by
DOPPEL_LLM_REPLICAS_HINT (its share; an episode's budget stays whole, since one replica writes an
episode at a time), and asks the shared ledger again after PROBE_SECONDS. A reservation left
unsettled (the replica died) is released by itself when its lease ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from services.script.coordination import (
    CoordinationClient,
    CoordinationUnavailable,
    SpendDecision,
    SpendLimit,
    new_id,
)
from services.script.llm.ledger import SpendLedger
from services.script.llm.quota import PROBE_SECONDS, in_background
from services.script.llm.ratelimit import Clock

log = logging.getLogger(__name__)


class SpendRefused(Exception):
    """A limit refused the reservation: `limit` as it applied (this replica's share when
    `alone`: the cache service is unreachable), and the ledger's answer."""

    def __init__(self, limit: SpendLimit, decision: SpendDecision, alone: bool) -> None:
        super().__init__(f"{decision.exhausted} limit reached")
        self.limit = limit
        self.decision = decision
        self.alone = alone

    @property
    def totals(self) -> tuple[int, float]:
        """(tokens, USD) spent and reserved in the refusing limit's period."""
        total = self.decision.totals[self.decision.refused_by]
        return (
            total.spent_tokens + total.reserved_tokens,
            total.spent_cost_usd + total.reserved_cost_usd,
        )


@dataclass
class Hold:
    """One reservation, to settle with what was really spent."""

    scope: str
    reservation_id: str
    limits: tuple[SpendLimit, ...]
    idle: int
    shared: bool
    settled: bool = field(default=False)


class Spending:
    """Reserves and settles spending limits, shared when the cache service answers."""

    def __init__(
        self,
        client: CoordinationClient | None,
        *,
        replicas_hint: int = 1,
        lease_seconds: float = 180.0,
        probe_seconds: float = PROBE_SECONDS,
        clock: Clock = time.monotonic,
        ledger: SpendLedger | None = None,
    ) -> None:
        self._client = client
        self._hint = replicas_hint
        self._lease = lease_seconds
        self._probe = probe_seconds
        self._clock = clock
        self.ledger = ledger or SpendLedger()
        self._next_try = 0.0

    @property
    def shared(self) -> bool:
        """Whether the next reservation goes to the shared ledger."""
        return self._client is not None and self._clock() >= self._next_try

    async def reserve(
        self,
        scope: str,
        limits: Sequence[SpendLimit],
        tokens: int,
        cost_usd: float,
        idle: int,
        *,
        divided_when_alone: bool,
    ) -> Hold:
        """Holds the estimate against every limit of `scope`, or raises SpendRefused."""
        limits = tuple(limits)
        reservation_id = new_id()
        if self._client is not None and self.shared:
            try:
                decision = await self._client.reserve_spend(
                    scope, reservation_id, limits, tokens, cost_usd, self._lease, idle
                )
            except CoordinationUnavailable as exc:
                self._next_try = self._clock() + self._probe
                log.warning("spending %s: the shared ledger is unreachable (%s); this replica "
                            "keeps its own until it is back", scope, exc)  # fmt: skip
            else:
                if not decision.granted:
                    raise SpendRefused(limits[decision.refused_by], decision, alone=False)
                self.ledger.reserve(scope, reservation_id, limits, tokens, cost_usd, self._lease,
                                    idle, force=True)  # fmt: skip
                return Hold(scope, reservation_id, limits, idle, shared=True)
        alone = tuple(limit.share(self._hint) for limit in limits) if divided_when_alone else limits
        decision = self.ledger.reserve(
            scope, reservation_id, alone, tokens, cost_usd, self._lease, idle
        )
        if not decision.granted:
            cut_off = self._client is not None  # Not just built without the cache service.
            raise SpendRefused(alone[decision.refused_by], decision, alone=cut_off)
        return Hold(scope, reservation_id, limits, idle, shared=False)

    async def settle(self, hold: Hold, tokens: int = 0, cost_usd: float = 0.0) -> None:
        """Replaces the reservation by what was spent (0: the call failed)."""
        shared = self._settle_here(hold, tokens, cost_usd)
        if shared is not None:
            await shared

    def settle_soon(self, hold: Hold, tokens: int = 0, cost_usd: float = 0.0) -> None:
        """`settle`: this replica's ledger at once, the shared one without waiting (until it
        lands, the reservation holds its estimate: the safe side)."""
        shared = self._settle_here(hold, tokens, cost_usd)
        if shared is not None:
            in_background(shared)

    def _settle_here(
        self, hold: Hold, tokens: int, cost_usd: float
    ) -> Coroutine[Any, Any, None] | None:
        """Settles this replica's ledger; returns the shared settle still to do."""
        if hold.settled:
            return None
        hold.settled = True
        self.ledger.settle(hold.scope, hold.reservation_id, hold.limits, tokens, cost_usd,
                           hold.idle)  # fmt: skip
        if not hold.shared or self._client is None:
            return None
        return self._settle_shared(self._client, hold, tokens, cost_usd)

    @staticmethod
    async def _settle_shared(
        client: CoordinationClient, hold: Hold, tokens: int, cost_usd: float
    ) -> None:
        try:
            await client.settle_spend(
                hold.scope, hold.reservation_id, hold.limits, tokens, cost_usd, hold.idle
            )
        except CoordinationUnavailable as exc:
            # The shared reservation ends with its lease; this spend stays in this replica's.
            log.warning("spending %s: settle not recorded in the shared ledger (%s)",
                        hold.scope, exc)  # fmt: skip
