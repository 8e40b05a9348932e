"""Per-episode budgets and model prices."""

from __future__ import annotations

import pytest

from services.script.llm.budget import Budgets, EpisodeBudget, Prices, Usage
from services.script.writing import BudgetExceeded
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


def test_a_call_that_could_overshoot_the_token_budget_is_refused() -> None:
    budget = EpisodeBudget(max_tokens=10_000, max_cost_usd=0)
    first = budget.reserve(6_000, 0.0)
    with pytest.raises(BudgetExceeded, match="DOPPEL_LLM_EPISODE_MAX_TOKENS"):
        budget.reserve(6_000, 0.0)  # Reserved + this would pass 10,000.
    budget.settle(first, tokens=2_000)
    second = budget.reserve(6_000, 0.0)  # 2,000 spent + 6,000 fits.
    budget.settle(second, tokens=7_000)
    assert budget.spent_tokens == 9_000
    with pytest.raises(BudgetExceeded, match="9000 of 10000 tokens spent"):
        budget.reserve(1_001, 0.0)


def test_cost_budget() -> None:
    budget = EpisodeBudget(max_tokens=0, max_cost_usd=0.05)
    reservation = budget.reserve(1_000_000, 0.04)
    budget.settle(reservation, tokens=500_000, cost=0.045)
    with pytest.raises(BudgetExceeded, match=r"cost budget exhausted: \$0\.0450 of \$0\.05"):
        budget.reserve(1, 0.01)


def test_zero_means_unlimited_and_failed_calls_cost_nothing() -> None:
    budget = EpisodeBudget(max_tokens=0, max_cost_usd=0)
    reservation = budget.reserve(10**12, 10**6)
    budget.settle(reservation)
    budget.settle(reservation, tokens=5)  # A second settle is ignored.
    assert budget.spent_tokens == 0 and budget.spent_cost_usd == 0


def test_budgets_are_per_episode_and_forgotten_when_idle() -> None:
    now = [0.0]
    budgets = Budgets(100, 0, clock=lambda: now[0])
    episode = budgets.for_episode(("lucy", 1))
    assert budgets.for_episode(("lucy", 1)) is episode
    assert budgets.for_episode(("lucy", 2)) is not episode
    now[0] = 3601.0
    assert budgets.for_episode(("lucy", 2)) is not episode
    assert budgets.for_episode(("lucy", 1)) is not episode  # Idle for an hour: a fresh budget.
