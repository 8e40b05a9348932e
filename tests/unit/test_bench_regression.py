"""`make bench-check`'s judgement (bench/regression.py): noise passes, a real slowdown does not.

Pure logic on the committed baseline's own figures (bench/baseline.json: five repetitions each,
measured on a quiet machine). "Reruns" are the baseline's numbers with noise of each figure's
own measured size; the suites are never run here.
"""

from __future__ import annotations

import json
import math
import random
import statistics
from collections.abc import Callable
from typing import Any

import pytest

from bench.main import BASELINE
from bench.regression import (
    DEFAULT_FLOOR,
    CheckOutcome,
    check,
    combine,
    judge,
    relative_spread,
    threshold,
)

Figures = list[dict[str, Any]]
BASE: Figures = [f for f in json.loads(BASELINE.read_text())["figures"] if f["is_ratio"]]
REPETITIONS = 5


def figure(name: str, values: list[float], *, higher: bool = True) -> dict[str, Any]:
    return {
        "name": name, "values": values, "median": statistics.median(values),
        "min": min(values), "max": max(values), "higher_is_better": higher, "is_ratio": True,
    }  # fmt: skip


def noisy_rerun(rng: random.Random, slowdown: float = 0.0, only: str = "") -> Figures:
    """Every baseline ratio measured again: lognormal noise with the spread of the figure's own
    five baseline values around its baseline median; `slowdown` makes `only` (or every figure)
    that much worse."""
    rerun = []
    for base in BASE:
        log_sd = statistics.stdev(math.log(v) for v in base["values"])
        values = [base["median"] * math.exp(rng.gauss(0, log_sd)) for _ in range(REPETITIONS)]
        if slowdown and only in ("", base["name"]):
            factor = 1 - slowdown if base["higher_is_better"] else 1 + slowdown
            values = [value * factor for value in values]
        rerun.append(
            {**figure(base["name"], values, higher=base["higher_is_better"]), "suite": "s"}
        )
    return rerun


def run_check(first: Figures, again: Callable[[list[str]], Figures]) -> CheckOutcome:
    return check(first, BASE, lambda name: name.split(".")[0], again)


def test_the_threshold_is_the_baselines_own_spread_with_a_floor() -> None:
    tight = figure("llm.speedup", [7.1, 7.2, 7.3])
    noisy = figure("cache.ratio", [0.10, 0.13, 0.15])
    assert relative_spread(tight) == pytest.approx(0.2 / 7.2)
    assert threshold(tight) == DEFAULT_FLOOR
    assert threshold(noisy) == pytest.approx(0.5 * 0.05 / 0.13)
    assert threshold({"median": 1.0}) == DEFAULT_FLOOR  # A baseline without spread.
    # The committed baseline can see a 30% slowdown in every ratio figure.
    assert max(threshold(base) for base in BASE) < 0.30


def test_judgement_is_on_medians_in_each_figures_bad_direction() -> None:
    baseline = [figure("speedup", [7.5]), figure("overhead", [1.0], higher=False)]
    fine = [figure("speedup", [7.0, 6.0, 7.2]), figure("overhead", [1.05], higher=False)]
    assert not any(verdict.regressed for verdict in judge(fine, baseline))
    worse = [figure("speedup", [6.0]), figure("overhead", [1.2], higher=False)]
    assert [verdict.name for verdict in judge(worse, baseline) if verdict.regressed] == [
        "speedup",
        "overhead",
    ]
    rates = [{**figure("spans_per_s", [90_000.0]), "is_ratio": False}]
    assert judge([{**rates[0], "median": 10.0}, figure("new", [0.1])], rates) == []


def test_combined_samples_recompute_the_statistics() -> None:
    (merged,) = combine([figure("a", [1.0, 2.0, 3.0])], [figure("a", [4.0, 5.0])])
    assert (merged["values"], merged["median"], merged["min"], merged["max"]) == (
        [1.0, 2.0, 3.0, 4.0, 5.0],
        3.0,
        1.0,
        5.0,
    )


def test_reruns_of_the_baselines_own_numbers_with_noise_pass() -> None:
    """300 checks, each with a noisy first run and, for suspects, a noisy rerun."""
    rng = random.Random(12)
    suspected = failed = 0
    for _ in range(300):
        outcome = run_check(noisy_rerun(rng), lambda suites: noisy_rerun(rng))
        suspected += bool(outcome.suspects)
        failed += bool(outcome.regressions)
    assert failed <= 3  # At most 1% of the checks cry wolf ...
    assert suspected > failed  # ... where the first judgement alone would have more often.


def test_a_burst_of_background_load_is_cleared_by_the_rerun() -> None:
    """The first run 15% worse on every figure (as the two false alarms were), the rerun of
    the suites involved quiet (the baseline's own numbers): suspects, then cleared."""
    exact = [figure(b["name"], b["values"], higher=b["higher_is_better"]) for b in BASE]
    loaded = [
        figure(b["name"], [v * (0.85 if b["higher_is_better"] else 1.15) for v in b["values"]],
               higher=b["higher_is_better"])
        for b in BASE
    ]  # fmt: skip
    asked: list[list[str]] = []

    def quiet(suites: list[str]) -> Figures:
        asked.append(suites)
        return [f for f in exact if f["name"].split(".")[0] in suites]

    outcome = run_check(loaded, quiet)
    assert len(outcome.suspects) >= 9 and not outcome.regressions
    assert asked == [sorted({verdict.name.split(".")[0] for verdict in outcome.suspects})]
    assert {verdict.name for verdict in outcome.cleared} == {v.name for v in outcome.suspects}
    assert all(verdict.samples == 2 * REPETITIONS for verdict in outcome.cleared)


def test_no_suspects_no_rerun() -> None:
    exact = [figure(b["name"], b["values"], higher=b["higher_is_better"]) for b in BASE]

    def never(suites: list[str]) -> Figures:
        raise AssertionError(f"measured {suites} again without a suspect")

    outcome = run_check(exact, never)
    assert len(outcome.verdicts) == len(BASE) and not outcome.suspects


@pytest.mark.parametrize("name", [base["name"] for base in BASE])
def test_a_real_30_percent_slowdown_of_any_figure_is_a_regression(name: str) -> None:
    """The baseline's own numbers 30% worse, in both runs: that figure alone is reported."""
    slowed = [
        figure(b["name"], [v * (0.7 if b["higher_is_better"] else 1.3) for v in b["values"]],
               higher=b["higher_is_better"]) if b["name"] == name
        else figure(b["name"], b["values"], higher=b["higher_is_better"])
        for b in BASE
    ]  # fmt: skip
    outcome = run_check(slowed, lambda suites: slowed)
    assert [verdict.name for verdict in outcome.regressions] == [name]
    (verdict,) = outcome.regressions
    assert verdict.worse == pytest.approx(0.3) and verdict.samples == 2 * REPETITIONS


def test_a_30_percent_slowdown_under_noise_is_caught_in_the_tight_figures() -> None:
    """With noise on both runs, every figure whose baseline spread is within the floor
    (all the llm figures) is reported every time."""
    rng = random.Random(30)
    tight = {base["name"] for base in BASE if threshold(base) == DEFAULT_FLOOR}
    assert len(tight) >= 9
    for _ in range(100):
        outcome = run_check(
            noisy_rerun(rng, slowdown=0.3), lambda suites: noisy_rerun(rng, slowdown=0.3)
        )
        assert tight <= {verdict.name for verdict in outcome.regressions}
