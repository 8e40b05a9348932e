"""`doppel bench`: runs the suites, writes results and charts, checks against the baseline."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import report
from bench.measure import Figure, git_commit, machine
from bench.suites import cache, episodes, llm, monitor, quota
from bench.suites.common import Scale

SUITES: dict[str, Callable[[Scale], Awaitable[list[Figure]]]] = {
    "cache": cache.run,
    "episodes": episodes.run,
    "llm": llm.run,
    "monitor": monitor.run,
    "quota": quota.run,
}
BASELINE = Path(__file__).with_name("baseline.json")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="less work per figure")
    parser.add_argument(
        "--suite", action="append", choices=sorted(SUITES), help="run only these (repeatable)"
    )
    parser.add_argument("--out", default="bench/results", help="where results and charts go")
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a ratio regressed against the baseline"
    )
    parser.add_argument("--tolerance", type=float, default=report.DEFAULT_TOLERANCE)
    parser.add_argument(
        "--save-baseline", action="store_true", help="make this run the committed baseline"
    )


async def measure(names: list[str], scale: Scale) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        figures.extend(await SUITES[name](scale))
    return figures


def run(args: argparse.Namespace) -> int:
    names = args.suite or list(SUITES)
    scale = Scale.named(args.quick)
    described = machine()
    figures = asyncio.run(measure(names, scale))
    out = Path(args.out)
    path = report.write_results(out, figures, described, git_commit(), args.quick)
    history = sorted(out.glob("*.json"))
    pictures = report.charts(out / "charts", figures, history)
    print(report.summary(figures, described))
    print(f"\nresults  {path}")
    for picture in pictures:
        print(f"chart    {picture}")
    current = json.loads(path.read_text())["figures"]
    if args.save_baseline:
        BASELINE.write_text(json.dumps({"figures": current}, indent=2) + "\n")
        print(f"baseline {BASELINE}")
    if args.check:
        return check(current, args.tolerance)
    return 0


def check(current: list[dict[str, object]], tolerance: float) -> int:
    if not BASELINE.exists():
        print("no committed baseline (bench/baseline.json); run with --save-baseline first")
        return 1
    baseline = json.loads(BASELINE.read_text())["figures"]
    found = report.regressions(current, baseline, tolerance)  # type: ignore[arg-type]
    for line in found:
        print(f"REGRESSION {line}")
    print("no regressions against the baseline" if not found else f"{len(found)} regression(s)")
    return 1 if found else 0
