"""Benchmark bookkeeping: statistics, targets, summary and charts (regression checks:
test_bench_regression.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

from bench.measure import Figure, percentile
from bench.report import charts, summary


def figure(name: str, median: float, *, higher: bool = True, ratio: bool = True) -> dict:
    return {"name": name, "median": median, "higher_is_better": higher, "is_ratio": ratio}


def test_figure_statistics_and_targets() -> None:
    measured = Figure("x", "ratio", [0.8, 0.95, 0.9], target=0.85)
    assert (measured.median, measured.minimum, measured.maximum) == (0.9, 0.8, 0.95)
    assert measured.meets_target() is True
    assert Figure("rss", "MB", [250.0], higher_is_better=False, target=200).meets_target() is False
    assert Figure("none", "x").meets_target() is None
    assert math.isnan(Figure("empty", "x").median)


def test_percentile_is_nearest_rank() -> None:
    sample = [float(n) for n in range(1, 101)]
    assert percentile(sample, 50) == 50.0
    assert percentile(sample, 99) == 99.0
    assert percentile(sample, 100) == 100.0
    assert percentile([3.0], 99) == 3.0


def test_summary_marks_missed_targets() -> None:
    text = summary(
        [Figure("eff", "ratio", [0.5], target=0.9), Figure("ok", "ratio", [0.95], target=0.9)],
        {"cpu_model": "cpu", "cpu_count": 2, "memory_gib": 24, "python": "3.11"},
    )
    assert "MISSED" in text.splitlines()[4] and "met" in text.splitlines()[5]


def test_history_chart_skips_load_results_beside_the_runs(tmp_path: Path) -> None:
    run = {"commit": "abcdef0123", "figures": [{**figure("eff", 0.9), "values": [0.9]}]}
    (tmp_path / "20260101T000000Z-abc.json").write_text(json.dumps(run))
    (tmp_path / "load.json").write_text(json.dumps({"steady": [], "machine": {}}))
    pictures = charts(
        tmp_path / "charts", [Figure("eff", "ratio", [0.9])], sorted(tmp_path.glob("*.json"))
    )
    assert tmp_path / "charts" / "history.png" in pictures
    assert (tmp_path / "charts" / "history.png").stat().st_size > 1000
