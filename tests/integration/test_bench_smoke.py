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
        "--soak-warmup-episodes", "0", "--out", str(out),
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
    busiest = max(data["ramp"], key=lambda phase: phase["completed"])
    assert busiest["services"]["script"]["cpu_percent"] > 0  # Episodes cost the script CPU.
    assert data["soak_rss_timeline_mb"][0].keys() == data["soak_rss_growth"].keys()


def test_load_with_a_seed_pool_repeats_episodes_from_the_cache(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    result = doppel(
        "load", "--phases", "steady", "--rate", "4", "--seconds", "2", "--seed-pool", "2",
        "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert set(data) >= {"steady"} and "ramp" not in data and "soak" not in data
    (steady,) = data["steady"]
    assert steady["completed"] == 8
    # Two distinct episodes, six repeats: the cache hit-rate alert of new-seed runs stays quiet.
    assert not [alert for alert in steady["firing_alerts"] if alert.startswith("cache_hit_rate")]


def test_load_with_llm_faults_drives_the_llm_writer_and_reports_what_bit(tmp_path: Path) -> None:
    out = tmp_path / "load.json"
    result = doppel(
        "load", "--phases", "steady", "--rate", "2", "--seconds", "2", "--writer", "chain",
        "--llm-latency-ms", "0", "--faults", "llm_error_rate=1", "--out", str(out),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    data = json.loads(out.read_text())
    assert data["steady"][0]["completed"] == 4  # The chain fell back to the procedural writer.
    assert data["faults_injected"]["script"]["llm_error_rate"] >= 4


def test_load_refuses_llm_faults_on_the_procedural_writer(tmp_path: Path) -> None:
    result = doppel("load", "--faults", "llm_error_rate=1", "--out", str(tmp_path / "x.json"))
    assert result.returncode == 2
    assert "--writer anthropic or chain" in result.stdout
