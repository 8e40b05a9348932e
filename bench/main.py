"""`doppel bench`: runs the suites, writes results and charts, checks against the baseline.

`--check` judges ratio figures as `bench.regression` explains: a figure past its threshold is
only suspect until the suites it came from have been measured again and the combined samples
still put it past; the verdicts are printed and recorded in the run's results file ("check").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench import regression, report
from bench.measure import Figure, git_commit, machine
from bench.suites import cache, cost, craft, episodes, library, llm, monitor, quota
from bench.suites.common import Scale

SUITES: dict[str, Callable[[Scale], Awaitable[list[Figure]]]] = {
    "cache": cache.run,
    "cost": cost.run,
    "craft": craft.run,
    "episodes": episodes.run,
    "library": library.run,
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
        "--check",
        action="store_true",
        help="exit 1 when a ratio regressed against the baseline (suspects measured again first)",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=regression.DEFAULT_FLOOR,
        help="smallest regression threshold, relative (a noisier figure's is half its "
        "baseline's relative range)",
    )
    parser.add_argument(
        "--save-baseline", action="store_true", help="make this run the committed baseline"
    )
    parser.add_argument(
        "--baseline", default=str(BASELINE), help="baseline to check against or save to"
    )


async def measure(names: list[str], scale: Scale) -> list[Figure]:
    figures: list[Figure] = []
    for name in names:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        measured = await SUITES[name](scale)
        for figure in measured:
            figure.suite = name
        figures.extend(measured)
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
    baseline = Path(args.baseline)
    if args.save_baseline:
        baseline.write_text(json.dumps({"figures": current}, indent=2) + "\n")
        print(f"baseline {baseline}")
    if args.check:
        return check(path, baseline, scale, args.tolerance)
    return 0


def check(results: Path, baseline: Path, scale: Scale, floor: float) -> int:
    """Judges the run in `results` against `baseline`, measuring suspects' suites again."""
    if not baseline.exists():
        print(f"no baseline at {baseline}; run with --save-baseline first")
        return 1
    run = json.loads(results.read_text())
    suite_of = {figure["name"]: figure.get("suite", "") for figure in run["figures"]}
    remeasured: list[dict[str, object]] = []

    def remeasure(suites: list[str]) -> list[dict[str, object]]:
        print(f"measuring {', '.join(suites)} again for suspect figures", file=sys.stderr)
        again = [figure.to_dict() for figure in asyncio.run(measure(suites, scale))]
        remeasured.extend(again)
        return again

    reference = json.loads(baseline.read_text())["figures"]
    outcome = regression.check(run["figures"], reference, suite_of.__getitem__, remeasure, floor)
    for verdict in outcome.suspects:
        print(f"suspect    {verdict.describe()}")
    for verdict in outcome.cleared:
        print(f"noise      {verdict.describe()}")
    for verdict in outcome.regressions:
        print(f"REGRESSION {verdict.describe()}")
    run["check"] = {
        "baseline": str(baseline),
        "floor": floor,
        "suspects": [verdict.describe() for verdict in outcome.suspects],
        "remeasured_suites": outcome.remeasured_suites,
        "remeasured": remeasured,
        "cleared": [verdict.describe() for verdict in outcome.cleared],
        "regressions": [verdict.describe() for verdict in outcome.regressions],
    }
    results.write_text(json.dumps(run, indent=2) + "\n")
    found = len(outcome.regressions)
    judged = len(outcome.verdicts)
    if outcome.suspects:  # A busy machine slows the service side of a ratio more.
        load = run["machine"].get("load_average") or [float("nan")]
        print(f"load average {load[0]:.1f} on {run['machine'].get('cpu_count')} CPUs at start")
    print(
        f"no regressions against the baseline ({judged} ratio figures judged)"
        if not found
        else f"{found} regression(s)"
    )
    return 1 if found else 0
