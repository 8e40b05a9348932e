"""Regression checks against the committed baseline that tell a regression from noise.

Only ratio figures are judged (absolute rates move with the machine). A figure is *suspect* when
its median is worse than the baseline's median by more than its threshold:

    threshold = max(floor, SPREAD_SHARE * (baseline max - baseline min) / baseline median)

that is, half the baseline's own relative range (the noise it measured itself, on a quiet
machine) and never less than the floor (`--tolerance`, 10%). A suspect is not yet a regression:
the suites it came from are measured again and the figure is judged once more on the combined
samples (first run and rerun together). Only a figure still past its threshold then is reported
as a regression; a burst of background load during the first run is diluted by a quiet rerun, a
real slowdown is measured twice.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

DEFAULT_FLOOR = 0.10
SPREAD_SHARE = 0.5

FigureDict = Mapping[str, Any]


@dataclass(frozen=True)
class Verdict:
    """One ratio figure judged against its baseline."""

    name: str
    median: float
    baseline_median: float
    worse: float  # Relative change in the bad direction: 0.2 is 20% worse.
    threshold: float
    samples: int

    @property
    def regressed(self) -> bool:
        return self.worse > self.threshold

    def describe(self) -> str:
        return (
            f"{self.name}: {self.median:.3g} against a baseline of {self.baseline_median:.3g} "
            f"({self.worse:.0%} worse; threshold {self.threshold:.0%}, {self.samples} samples)"
        )


@dataclass
class CheckOutcome:
    """What `check` found: the first verdicts, the suspects, and those the rerun confirmed."""

    verdicts: list[Verdict]
    suspects: list[Verdict] = field(default_factory=list)
    remeasured_suites: list[str] = field(default_factory=list)
    rejudged: list[Verdict] = field(default_factory=list)

    @property
    def regressions(self) -> list[Verdict]:
        return [verdict for verdict in self.rejudged if verdict.regressed]

    @property
    def cleared(self) -> list[Verdict]:
        """Suspects the combined samples put back within their threshold: noise."""
        return [verdict for verdict in self.rejudged if not verdict.regressed]


def relative_spread(reference: FigureDict) -> float:
    """(max - min) / median of a baseline figure; 0 when it records no spread."""
    median = reference.get("median") or 0.0
    values = reference.get("values") or []
    low = reference.get("min", min(values) if values else median)
    high = reference.get("max", max(values) if values else median)
    if not median:
        return 0.0
    return abs(high - low) / abs(median)


def threshold(reference: FigureDict, floor: float = DEFAULT_FLOOR) -> float:
    return max(floor, SPREAD_SHARE * relative_spread(reference))


def judge(
    figures: Sequence[FigureDict], baseline: Sequence[FigureDict], floor: float = DEFAULT_FLOOR
) -> list[Verdict]:
    """A verdict for every ratio figure that has a ratio baseline."""
    base = {figure["name"]: figure for figure in baseline if figure.get("is_ratio")}
    verdicts = []
    for figure in figures:
        reference = base.get(figure["name"])
        if reference is None or not figure.get("is_ratio"):
            continue
        now, then = figure["median"], reference["median"]
        change = (now - then) / then if then else 0.0
        verdicts.append(
            Verdict(
                name=figure["name"],
                median=now,
                baseline_median=then,
                worse=-change if figure["higher_is_better"] else change,
                threshold=threshold(reference, floor),
                samples=len(figure.get("values") or []),
            )
        )
    return verdicts


def combine(first: Sequence[FigureDict], again: Sequence[FigureDict]) -> list[dict[str, Any]]:
    """`first`'s figures with the samples of the same figures in `again` added, and their
    median, min and max recomputed (figures `again` lacks stay as they were)."""
    more = {figure["name"]: list(figure.get("values") or []) for figure in again}
    combined = []
    for figure in first:
        values = [*(figure.get("values") or []), *more.get(figure["name"], [])]
        merged = dict(figure)
        if values:
            merged.update(
                values=values,
                median=statistics.median(values),
                min=min(values),
                max=max(values),
            )
        combined.append(merged)
    return combined


def check(
    figures: Sequence[FigureDict],
    baseline: Sequence[FigureDict],
    suite_of: Callable[[str], str],
    remeasure: Callable[[list[str]], Sequence[FigureDict]],
    floor: float = DEFAULT_FLOOR,
) -> CheckOutcome:
    """Judges `figures`; measures the suites of any suspects again (`remeasure(suites)`) and
    judges the suspects once more on the combined samples."""
    outcome = CheckOutcome(judge(figures, baseline, floor))
    outcome.suspects = [verdict for verdict in outcome.verdicts if verdict.regressed]
    if not outcome.suspects:
        return outcome
    outcome.remeasured_suites = sorted({suite_of(verdict.name) for verdict in outcome.suspects})
    combined = combine(figures, remeasure(outcome.remeasured_suites))
    suspect_names = {verdict.name for verdict in outcome.suspects}
    outcome.rejudged = [
        verdict for verdict in judge(combined, baseline, floor) if verdict.name in suspect_names
    ]
    return outcome
