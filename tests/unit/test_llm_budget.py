"""Per-episode budgets, per-caller caps, the local ledger, and model prices."""

from __future__ import annotations

import pytest

from services.script.coordination import SpendLimit
from services.script.llm.budget import Budgets, CallerCaps, Prices, Usage, spending_caller
from services.script.llm.ledger import SpendLedger
from services.script.llm.spending import Spending
from services.script.writing import BudgetExceeded, SpendingCapExceeded
from shared.config import Settings


def test_prices_by_model_family_and_default() -> None:
    prices = Prices((("claude-sonnet-4-5", 3.0, 15.0), ("*", 1.0, 2.0)))
    assert prices.of("claude-sonnet-4-5") == (3.0, 15.0)
    assert prices.of("claude-sonnet-4-5-20250929") == (3.0, 15.0)
    assert prices.of("llama-3.1-8b") == (1.0, 2.0)
    assert Prices(()).of("anything") == (0.0, 0.0)


def test_cost_counts_cache_writes_dearer_and_reads_cheaper() -> None:
    prices = Prices((("m", 3.0, 15.0),))
    plain = prices.cost("m", Usage(input_tokens=1_000_000, output_tokens=100_000))
    assert plain == pytest.approx(3.0 + 1.5)
    cached = prices.cost("m", Usage(cache_creation_tokens=1_000_000, cache_read_tokens=1_000_000))
    assert cached == pytest.approx(3.0 * 1.25 + 3.0 * 0.1)


def test_default_prices_cover_the_default_models() -> None:
    settings = Settings()
    prices = Prices(settings.llm_prices)
    assert prices.of(settings.anthropic_model) == (3.0, 15.0)
    assert prices.of(settings.openai_model) == (0.15, 0.6)


def budgets(max_tokens: int, max_cost: float, caps: CallerCaps | None = None) -> Budgets:
    """Budgets on this process's own ledger (no cache service)."""
    return Budgets(Spending(None), max_tokens, max_cost, caps or CallerCaps())


async def test_a_call_that_could_overshoot_the_token_budget_is_refused() -> None:
    budget = budgets(10_000, 0).for_episode(("lucy", 1))
    first = await budget.reserve(6_000, 0.0)
    with pytest.raises(BudgetExceeded, match="DOPPEL_LLM_EPISODE_MAX_TOKENS"):
        await budget.reserve(6_000, 0.0)  # Reserved + this would pass 10,000.
    await budget.settle(first, tokens=2_000)
    second = await budget.reserve(6_000, 0.0)  # 2,000 spent + 6,000 fits.
    await budget.settle(second, tokens=7_000)
    with pytest.raises(BudgetExceeded, match="9000 of 10000 tokens spent"):
        await budget.reserve(1_001, 0.0)


async def test_cost_budget() -> None:
    budget = budgets(0, 0.05).for_episode(("lucy", 1))
    reservation = await budget.reserve(1_000_000, 0.04)
    await budget.settle(reservation, tokens=500_000, cost=0.045)
    with pytest.raises(BudgetExceeded, match=r"cost budget exhausted: \$0\.0450 of \$0\.05"):
        await budget.reserve(1, 0.01)


async def test_zero_means_unlimited_and_a_second_settle_is_ignored() -> None:
    unlimited = budgets(0, 0)
    budget = unlimited.for_episode(("lucy", 1))
    reservation = await budget.reserve(10**12, 10**6)
    assert reservation.holds == ()  # Nothing to hold against.
    limited = budgets(100, 0).for_episode(("lucy", 1))
    held = await limited.reserve(100, 0.0)
    await limited.settle(held)
    await limited.settle(held, tokens=100)  # Ignored: the first settle said 0.
    await limited.settle(await limited.reserve(100, 0.0), tokens=0)


async def test_budgets_are_per_episode() -> None:
    shared = budgets(100, 0)
    lucy = shared.for_episode(("lucy", 1))
    assert lucy.scope == shared.for_episode(("lucy", 1)).scope
    await lucy.reserve(100, 0.0)
    await shared.for_episode(("lucy", 2)).reserve(100, 0.0)  # Another episode, its own budget.
    with pytest.raises(BudgetExceeded):
        await shared.for_episode(("lucy", 1)).reserve(1, 0.0)


async def test_a_caller_cap_is_per_caller_and_says_when_to_retry() -> None:
    capped = budgets(0, 0, CallerCaps(tokens_per_hour=1_000))
    with spending_caller("token-aaaa"):
        first = await capped.for_episode(("lucy", 1)).reserve(800, 0.0)
        await capped.for_episode(("lucy", 1)).settle(first, tokens=800)
        with pytest.raises(SpendingCapExceeded) as refused:
            await capped.for_episode(("lucy", 2)).reserve(300, 0.0)  # Any episode of theirs.
    assert refused.value.grpc_code.name == "RESOURCE_EXHAUSTED"
    assert "DOPPEL_LLM_CALLER_TOKENS_PER_HOUR" in str(refused.value)
    assert 0 < refused.value.retry_after_ms <= 3_600_000
    with spending_caller("token-bbbb"):
        await capped.for_episode(("lucy", 2)).reserve(300, 0.0)  # Another caller is fine.


async def test_a_refused_episode_reservation_gives_the_caller_hold_back() -> None:
    capped = budgets(100, 0, CallerCaps(tokens_per_day=1_000))
    with spending_caller("token-cccc"):
        for _ in range(5):  # Each refused by the episode budget, never by the day's cap.
            with pytest.raises(BudgetExceeded, match="episode token budget"):
                await capped.for_episode(("lucy", 9)).reserve(500, 0.0)
        await capped.for_episode(("lucy", 10)).reserve(100, 0.0)


def test_the_local_ledger_resets_a_period_when_it_ends() -> None:
    now = [7_200.0]
    ledger = SpendLedger(clock=lambda: now[0])
    hour = (SpendLimit(3600, 100, 0.0),)
    assert ledger.reserve("s", "a", hour, 100, 0.0, lease=60, idle=3600).granted
    refused = ledger.reserve("s", "b", hour, 1, 0.0, lease=60, idle=3600)
    assert not refused.granted and refused.retry_after_seconds == 3600
    now[0] = 10_800.0  # The next hour.
    assert ledger.reserve("s", "b", hour, 100, 0.0, lease=60, idle=3600).granted


def test_the_local_ledger_releases_an_expired_reservation_and_forgets_idle_scopes() -> None:
    now = [0.0]
    ledger = SpendLedger(clock=lambda: now[0])
    life = (SpendLimit(0, 100, 0.0),)
    assert ledger.reserve("s", "dead", life, 100, 0.0, lease=10, idle=3600).granted
    assert not ledger.reserve("s", "b", life, 1, 0.0, lease=10, idle=3600).granted
    now[0] = 11.0  # Its lease is over.
    assert ledger.reserve("s", "b", life, 100, 0.0, lease=10, idle=3600).granted
    ledger.settle("s", "b", life, 100, 0.0, idle=3600)
    assert not ledger.reserve("s", "c", life, 1, 0.0, lease=10, idle=3600).granted
    now[0] = 11.0 + 3600  # Idle for an hour: forgotten, a fresh budget.
    assert ledger.reserve("s", "c", life, 100, 0.0, lease=10, idle=3600).granted
