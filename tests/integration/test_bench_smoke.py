"""`doppel bench` and `doppel load` run end to end on real processes (tiny scales; no timings)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

# A whole stack through every phase: ~30 s on a quiet 2-core machine, several times that when the
# machine is busy. The command's own limit stays below the test's, so a stalled run fails with its
# output (which phase it reached) instead of pytest-timeout's thread dump.
STACK_RUN_SECONDS = 240
stack_run = pytest.mark.timeout(STACK_RUN_SECONDS + 60)


def doppel(*args: str) -> subprocess.CompletedProcess[str]:
    """`doppel *args` to its end; past STACK_RUN_SECONDS it is interrupted (SIGINT: its stack stops
    cleanly) and the test fails with what it printed so far."""
    command = [sys.executable, "-m", "doppel.cli", *args]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=STACK_RUN_SECONDS)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)
            try:
                stdout, stderr = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            pytest.fail(
                f"doppel {' '.join(args)} ran past {STACK_RUN_SECONDS} s\n"
                f"stdout:\n{stdout}\nstderr:\n{stderr}"
            )
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def cache_baseline(path: Path, ratio: float) -> Path:
    """A baseline whose cache ratios are `ratio` with no spread (the floor decides)."""
    figures = [
        {"name": name, "median": ratio, "min": ratio, "max": ratio, "values": [ratio] * 3,
         "higher_is_better": True, "is_ratio": True}
        for name in ("cache.set_ratio_vs_redis", "cache.get_ratio_vs_redis")
    ]  # fmt: skip
    path.write_text(json.dumps({"figures": figures}))
    return path


@stack_run
def test_bench_writes_results_charts_and_checks(tmp_path: Path) -> None:
    baseline = cache_baseline(tmp_path / "baseline.json", 1e-6)  # Any real run is better.
    out = tmp_path / "results"
    result = doppel(
        "bench", "--quick", "--suite", "cache", "--out", str(out),
        "--check", "--baseline", str(baseline),
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no regressions against the baseline (2 ratio figures judged)" in result.stdout
    assert "again" not in result.stderr  # Nothing suspect, nothing measured twice.
    (results,) = out.glob("*.json")
    data = json.loads(results.read_text())
    names = {figure["name"] for figure in data["figures"]}
    assert {"cache.grpc_get_per_s", "cache.redis_get_per_s", "cache.get_ratio_vs_redis"} <= names
    assert all(len(figure["values"]) == 3 for figure in data["figures"])
    assert all(figure["median"] > 0 for figure in data["figures"])
    assert data["machine"]["cpu_count"] >= 1 and data["commit"]
    assert (out / "charts" / "ratios.png").stat().st_size > 1000
    assert "| cache.get_ratio_vs_redis |" in result.stdout
    assert data["check"]["suspects"] == [] and data["check"]["remeasured"] == []


@stack_run
def test_bench_check_measures_a_suspect_again_before_calling_it_a_regression(
    tmp_path: Path,
) -> None:
    baseline = cache_baseline(tmp_path / "baseline.json", 1e6)  # No real run comes close.
    out = tmp_path / "results"
    result = doppel(
        "bench", "--quick", "--suite", "cache", "--out", str(out),
        "--check", "--baseline", str(baseline),
    )  # fmt: skip
    assert result.returncode == 1, result.stdout + result.stderr
    assert "measuring cache again for suspect figures" in result.stderr
    assert result.stdout.count("suspect    cache.") == 2
    assert "REGRESSION cache.get_ratio_vs_redis" in result.stdout
    assert "threshold 10%, 6 samples)" in result.stdout  # Judged on both runs' samples.
    assert "2 regression(s)" in result.stdout
    (results,) = out.glob("*.json")
    check = json.loads(results.read_text())["check"]
    assert check["remeasured_suites"] == ["cache"]
    remeasured = {figure["name"]: figure for figure in check["remeasured"]}
    assert len(remeasured["cache.get_ratio_vs_redis"]["values"]) == 3
    assert len(check["regressions"]) == 2


@stack_run
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


@stack_run
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


@stack_run
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
