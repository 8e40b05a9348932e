"""Per-episode token and cost budgets, and model prices.

An episode is identified by what shapes it (show, setting, seed, scene count, request id), so
every writer call for it, across providers and retries of the RPC, draws on one budget: a client
retrying a failed episode does not get a fresh allowance. An idle budget is forgotten after an hour.

A call reserves its estimate (prompt + max_tokens) before it is sent and settles to its real usage
after; a call whose estimate would take spent + reserved past the budget is refused with
`BudgetExceeded`, so the budget is never overshot.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from services.script.writing import BudgetExceeded

PER_MILLION = 1_000_000
CACHE_WRITE_FACTOR = 1.25  # Anthropic: writing the prompt cache costs 1.25x input.
CACHE_READ_FACTOR = 0.1  # Reading it costs a tenth.
IDLE_SECONDS = 3600.0
MAX_EPISODES = 1024


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


@dataclass
class Reservation:
    tokens: int
    cost: float
    open: bool = True


class EpisodeBudget:
    """Tokens and USD one episode may spend; 0 means no limit."""

    def __init__(self, max_tokens: int, max_cost_usd: float) -> None:
        self.max_tokens = max_tokens
        self.max_cost_usd = max_cost_usd
        self.spent_tokens = 0
        self.spent_cost_usd = 0.0
        self._reserved_tokens = 0
        self._reserved_cost = 0.0

    def reserve(self, tokens: int, cost: float) -> Reservation:
        """Holds `tokens` and `cost` for a call about to be sent, or raises BudgetExceeded."""
        if self.max_tokens and self.spent_tokens + self._reserved_tokens + tokens > self.max_tokens:
            raise BudgetExceeded(
                f"episode token budget exhausted: {self.spent_tokens} of {self.max_tokens} "
                f"tokens spent, the next call may need {tokens} "
                "(DOPPEL_LLM_EPISODE_MAX_TOKENS)"
            )
        if self.max_cost_usd and (
            self.spent_cost_usd + self._reserved_cost + cost > self.max_cost_usd
        ):
            raise BudgetExceeded(
                f"episode cost budget exhausted: ${self.spent_cost_usd:.4f} of "
                f"${self.max_cost_usd:.2f} spent, the next call may cost ${cost:.4f} "
                "(DOPPEL_LLM_EPISODE_MAX_COST_USD)"
            )
        self._reserved_tokens += tokens
        self._reserved_cost += cost
        return Reservation(tokens, cost)

    def settle(self, reservation: Reservation, tokens: int = 0, cost: float = 0.0) -> None:
        """Replaces the reservation by what the call really used (0 when it failed)."""
        if not reservation.open:
            return
        reservation.open = False
        self._reserved_tokens -= reservation.tokens
        self._reserved_cost -= reservation.cost
        self.spent_tokens += tokens
        self.spent_cost_usd += cost


EpisodeKey = tuple[object, ...]


class Budgets:
    """The budgets of the episodes this replica is writing (idle ones forgotten)."""

    def __init__(
        self,
        max_tokens: int,
        max_cost_usd: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_tokens = max_tokens
        self._max_cost = max_cost_usd
        self._clock = clock
        self._budgets: OrderedDict[EpisodeKey, tuple[float, EpisodeBudget]] = OrderedDict()

    def for_episode(self, key: EpisodeKey) -> EpisodeBudget:
        now = self._clock()
        entry = self._budgets.pop(key, None)
        budget = entry[1] if entry else EpisodeBudget(self._max_tokens, self._max_cost)
        self._budgets[key] = (now, budget)
        while self._budgets:
            oldest_key, (used_at, _) = next(iter(self._budgets.items()))
            if len(self._budgets) <= MAX_EPISODES and now - used_at < IDLE_SECONDS:
                break
            del self._budgets[oldest_key]
        return budget
