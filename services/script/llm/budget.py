"""Per-episode budgets, per-caller spending caps, and model prices.

An episode is identified by what shapes it (show, setting, seed, scene count, request id), so
every writer call for it, across providers, retries of the RPC and replicas, draws on one budget:
a client retrying a failed episode does not get a fresh allowance. An idle budget is forgotten
after an hour. A caller (the identity the script service reads from the request; `anonymous`
without one) may spend at most DOPPEL_LLM_CALLER_{TOKENS,USD}_PER_{HOUR,DAY} (0: no cap) per
clock hour and UTC day, across all episodes and replicas.

A call reserves its estimate (prompt + max_tokens) before it is sent and settles to its real usage
after; a call whose estimate would take spent + reserved past a limit is refused (BudgetExceeded,
SpendingCapExceeded), so no limit is overshot. Both live in the shared ledgers (spending.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass

from services.script.coordination import SpendLimit, fingerprint
from services.script.llm.spending import Hold, Spending, SpendRefused
from services.script.writing import BudgetExceeded, SpendingCapExceeded

PER_MILLION = 1_000_000
CACHE_WRITE_FACTOR = 1.25  # Anthropic: writing the prompt cache costs 1.25x input.
CACHE_READ_FACTOR = 0.1  # Reading it costs a tenth.
IDLE_SECONDS = 3600
HOUR, DAY = 3600, 24 * 3600
ANONYMOUS = "anonymous"
_CALLER: ContextVar[str] = ContextVar("doppel_llm_caller", default=ANONYMOUS)


@dataclass(frozen=True)
class Usage:
    """Tokens of one response; `input_tokens` excludes the cache tokens (Anthropic's convention)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0

    @property
    def total(self) -> int:
        return (
            self.input_tokens
            + self.output_tokens
            + self.cache_creation_tokens
            + self.cache_read_tokens
        )

    def counted(self, cache_reads_count: bool) -> tuple[int, int]:
        """(input, output) as the provider counts them against its rate limits: Anthropic
        counts cache writes but not cache reads (`cache_read_input_tokens`); OpenAI counts every
        prompt token."""
        counted = self.input_tokens + self.cache_creation_tokens
        if cache_reads_count:
            counted += self.cache_read_tokens
        return counted, self.output_tokens


class Prices:
    """USD per million tokens by model; the `*` entry prices every other model."""

    def __init__(self, table: Sequence[tuple[str, float, float]]) -> None:
        self._table = {model: (price_in, price_out) for model, price_in, price_out in table}

    def of(self, model: str) -> tuple[float, float]:
        if model in self._table:
            return self._table[model]
        # Dated snapshots ("claude-sonnet-4-5-20250929") take the price of their family.
        family = max((m for m in self._table if model.startswith(m + "-")), key=len, default="")
        return self._table.get(family) or self._table.get("*", (0.0, 0.0))

    def cost(self, model: str, usage: Usage) -> float:
        price_in, price_out = self.of(model)
        input_equivalent = (
            usage.input_tokens
            + CACHE_WRITE_FACTOR * usage.cache_creation_tokens
            + CACHE_READ_FACTOR * usage.cache_read_tokens
        )
        return (input_equivalent * price_in + usage.output_tokens * price_out) / PER_MILLION


@contextlib.contextmanager
def spending_caller(identity: str) -> Iterator[None]:
    """Every LLM call inside the block is charged to `identity` (the script service sets it per
    RPC; empty: anonymous)."""
    token = _CALLER.set(identity or ANONYMOUS)
    try:
        yield
    finally:
        _CALLER.reset(token)


@dataclass(frozen=True)
class CallerCaps:
    """A caller's caps; 0: none."""

    tokens_per_hour: int = 0
    usd_per_hour: float = 0.0
    tokens_per_day: int = 0
    usd_per_day: float = 0.0

    def limits(self) -> tuple[SpendLimit, ...]:
        hour = SpendLimit(HOUR, self.tokens_per_hour, self.usd_per_hour)
        day = SpendLimit(DAY, self.tokens_per_day, self.usd_per_day)
        return tuple(limit for limit in (hour, day) if limit.active)


EpisodeKey = tuple[object, ...]


@dataclass
class Reservation:
    """The holds of one call: the caller's caps and the episode's budget."""

    holds: tuple[Hold, ...]


class Budgets:
    """The episode budgets and caller caps of the replica's LLM writers."""

    def __init__(
        self,
        spending: Spending,
        max_tokens: int,
        max_cost_usd: float,
        caps: CallerCaps = CallerCaps(),
    ) -> None:
        self.spending = spending
        self._episode_limits = tuple(
            limit for limit in (SpendLimit(0, max_tokens, max_cost_usd),) if limit.active
        )
        self._caps = caps.limits()

    def for_episode(self, key: EpisodeKey) -> EpisodeBudget:
        encoded = json.dumps(key, sort_keys=True, default=str, separators=(",", ":"))
        return EpisodeBudget(self, "episode:" + hashlib.sha256(encoded.encode()).hexdigest()[:32])

    async def reserve(self, episode_scope: str, tokens: int, cost: float) -> Reservation:
        holds: list[Hold] = []
        try:
            if self._caps:
                caller = _CALLER.get()
                holds.append(await self._reserve_caps(caller, tokens, cost))
            if self._episode_limits:
                holds.append(await self._reserve_episode(episode_scope, tokens, cost))
        except BudgetExceeded:
            for hold in holds:
                await self.spending.settle(hold)
            raise
        except BaseException:
            for hold in holds:
                self.spending.settle_soon(hold)
            raise
        return Reservation(tuple(holds))

    async def settle(self, reservation: Reservation, tokens: int = 0, cost: float = 0.0) -> None:
        for hold in reservation.holds:
            await self.spending.settle(hold, tokens, cost)

    def settle_soon(self, reservation: Reservation, tokens: int = 0, cost: float = 0.0) -> None:
        for hold in reservation.holds:
            self.spending.settle_soon(hold, tokens, cost)

    async def _reserve_caps(self, caller: str, tokens: int, cost: float) -> Hold:
        scope = f"caller:{fingerprint('caller', caller)}"
        try:
            return await self.spending.reserve(
                scope, self._caps, tokens, cost, DAY, divided_when_alone=True
            )
        except SpendRefused as refused:
            limit = refused.limit
            spent_tokens, spent_cost = refused.totals
            per = "hour" if limit.period_seconds == HOUR else "day"
            what = (
                f"{spent_tokens} of {limit.max_tokens} tokens"
                if refused.decision.exhausted == "tokens"
                else f"${spent_cost:.4f} of ${limit.max_cost_usd:.2f}"
            )
            unit = "TOKENS" if refused.decision.exhausted == "tokens" else "USD"
            retry_ms = max(1, round(refused.decision.retry_after_seconds * 1000))
            share = (
                " (this replica's share while the cache is unreachable)" if refused.alone else ""
            )
            raise SpendingCapExceeded(
                f"caller spending cap reached: {what} this {per}{share}, the next call may need "
                f"{tokens} tokens (DOPPEL_LLM_CALLER_{unit}_PER_{per.upper()}); retry in "
                f"{retry_ms} ms",
                retry_ms,
            ) from None

    async def _reserve_episode(self, scope: str, tokens: int, cost: float) -> Hold:
        try:
            return await self.spending.reserve(
                scope, self._episode_limits, tokens, cost, IDLE_SECONDS, divided_when_alone=False
            )
        except SpendRefused as refused:
            (total,) = refused.decision.totals
            limit = refused.limit
            if refused.decision.exhausted == "tokens":
                raise BudgetExceeded(
                    f"episode token budget exhausted: {total.spent_tokens} of {limit.max_tokens} "
                    f"tokens spent, the next call may need {tokens} "
                    "(DOPPEL_LLM_EPISODE_MAX_TOKENS)"
                ) from None
            raise BudgetExceeded(
                f"episode cost budget exhausted: ${total.spent_cost_usd:.4f} of "
                f"${limit.max_cost_usd:.2f} spent, the next call may cost ${cost:.4f} "
                "(DOPPEL_LLM_EPISODE_MAX_COST_USD)"
            ) from None


@dataclass
class EpisodeBudget:
    """One episode's view of the budgets: what a call reserves and settles."""

    budgets: Budgets
    scope: str

    async def reserve(self, tokens: int, cost: float) -> Reservation:
        """Holds `tokens` and `cost` for a call about to be sent, or raises BudgetExceeded."""
        return await self.budgets.reserve(self.scope, tokens, cost)

    async def settle(self, reservation: Reservation, tokens: int = 0, cost: float = 0.0) -> None:
        """Replaces the reservation by what the call really used (0 when it failed)."""
        await self.budgets.settle(reservation, tokens, cost)

    def settle_soon(self, reservation: Reservation, tokens: int = 0, cost: float = 0.0) -> None:
        """`settle` without waiting for the shared ledger (this replica's is settled at once)."""
        self.budgets.settle_soon(reservation, tokens, cost)
