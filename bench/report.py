"""Results as JSON (one file a run), a Markdown summary and charts (regressions: `regression`)."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.measure import Figure


def write_results(
    directory: Path, figures: Sequence[Figure], machine: dict[str, Any], commit: str, quick: bool
) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = directory / f"{stamp}-{commit}.json"
    payload = {
        "commit": commit,
        "time": stamp,
        "quick": quick,
        "machine": machine,
        "figures": [figure.to_dict() for figure in figures],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def summary(figures: Sequence[Figure], machine: dict[str, Any]) -> str:
    lines = [
        f"Machine: {machine['cpu_model']}, {machine['cpu_count']} cores, "
        f"{machine['memory_gib']} GiB, Python {machine['python']}",
        "",
        "| figure | median | min | max | unit | target |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for figure in figures:
        met = figure.meets_target()
        target = "" if figure.target is None else (
            f"{'>=' if figure.higher_is_better else '<='} {_fmt(figure.target)} "
            f"{'met' if met else 'MISSED'}"
        )  # fmt: skip
        lines.append(
            f"| {figure.name} | {_fmt(figure.median)} | {_fmt(figure.minimum)} | "
            f"{_fmt(figure.maximum)} | {figure.unit} | {target} |"
        )
    return "\n".join(lines)


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 10 else f"{value:.1f}"


def charts(directory: Path, figures: Sequence[Figure], history: Sequence[Path]) -> list[Path]:
    """PNG charts: ratios against targets, speedup against N, latencies, history."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    ratios = [f for f in figures if f.is_ratio and f.values]
    if ratios:
        fig, ax = plt.subplots(figsize=(9, 0.5 + 0.45 * len(ratios)))
        names = [f.name for f in ratios]
        ax.barh(names, [f.median for f in ratios], xerr=_spread(ratios), color="#4c72b0")
        for row, figure in enumerate(ratios):
            if figure.target is not None:
                ax.plot([figure.target] * 2, [row - 0.4, row + 0.4], color="#c44e52", lw=2)
        ax.set_xlabel("ratio (median, min-max; red: target)")
        ax.set_title("Ratios measured side by side in one run")
        fig.tight_layout()
        written.append(_save(fig, directory / "ratios.png"))
    speedups = sorted(
        (f for f in figures if f.name.startswith("llm.speedup_n")),
        key=lambda f: int(f.name.rsplit("n", 1)[1]),
    )
    if speedups:
        fig, ax = plt.subplots(figsize=(6, 4))
        counts = [int(f.name.rsplit("n", 1)[1]) for f in speedups]
        ax.plot(counts, [f.median for f in speedups], "o-", label="measured")
        ax.plot(counts, counts, "--", color="grey", label="ideal (N scenes at once)")
        ax.set_xlabel("scenes (N)")
        ax.set_ylabel("speedup over sequential")
        ax.legend()
        ax.set_title("Parallel scene generation")
        fig.tight_layout()
        written.append(_save(fig, directory / "speedup.png"))
    latencies = [f for f in figures if f.name.startswith("llm.overhead_samples_ms")]
    if latencies:
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.hist(latencies[0].values, bins=40, color="#55a868")
        ax.set_xlabel("added latency per LLM call (ms)")
        ax.set_ylabel("calls")
        ax.set_title("Platform overhead per LLM call")
        fig.tight_layout()
        written.append(_save(fig, directory / "overhead.png"))
    if len(history) > 1:
        written.append(_history_chart(directory, history, plt))
    return written


def _spread(figures: Sequence[Figure]) -> list[list[float]]:
    return [
        [f.median - f.minimum for f in figures],
        [f.maximum - f.median for f in figures],
    ]


def _history_chart(directory: Path, history: Sequence[Path], plt: Any) -> Path:
    # Only benchmark runs: `doppel load` writes its results (no figures) beside them.
    runs = [run for run in map(json.loads, (p.read_text() for p in history)) if "figures" in run]
    names = sorted({f["name"] for run in runs for f in run["figures"] if f.get("is_ratio")})
    fig, ax = plt.subplots(figsize=(9, 4))
    for name in names:
        points = [
            (index, f["median"])
            for index, run in enumerate(runs)
            for f in run["figures"]
            if f["name"] == name
        ]
        ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=name)
    ax.set_xticks(range(len(runs)), [run["commit"][:7] for run in runs], rotation=45)
    ax.set_ylabel("ratio (median)")
    ax.set_title("Ratios across runs")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return _save(fig, directory / "history.png")


def _save(fig: Any, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
