"""`doppel bench` and `doppel load` run end to end on real processes (tiny scales; no timings)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def doppel(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.cli", *args],
        capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
    )  # fmt: skip


def test_bench_writes_results_charts_and_checks(tmp_path: Path) -> None:
    result = doppel("bench", "--quick", "--suite", "cache", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    (results,) = tmp_path.glob("*.json")
    data = json.loads(results.read_text())
    names = {figure["name"] for figure in data["figures"]}
    assert {"cache.grpc_get_per_s", "cache.redis_get_per_s", "cache.get_ratio_vs_redis"} <= names
    assert all(len(figure["values"]) == 3 for figure in data["figures"])
    assert all(figure["median"] > 0 for figure in data["figures"])
    assert data["machine"]["cpu_count"] >= 1 and data["commit"]
    assert (tmp_path / "charts" / "ratios.png").stat().st_size > 1000
    assert "| cache.get_ratio_vs_redis |" in result.stdout


def test_load_runs_every_scenario_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    result = doppel(
        "load", "--rate", "2", "--ramp", "2", "4", "--seconds", "1", "--soak-seconds", "1",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert {"steady", "ramp", "spike", "soak", "breaking_point_episodes_per_s"} <= set(data)
    assert data["steady"][0]["completed"] == 2
    assert [phase["target_rate"] for phase in data["ramp"]] == [2, 4]
    assert set(data["soak_rss_growth"]) == {"monitor", "cache", "scene", "script"}
    for phase in data["spike"]:
        assert set(phase["services"]) == {"monitor", "cache", "scene", "script"}
        assert 0 <= phase["health_score"] <= 100
