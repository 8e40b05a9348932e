"""`doppel` starts without the benchmarks and the LLM SDKs (seconds of imports) unless the
command is `bench` or `load`: every CLI call, and every test that runs one, pays for start-up."""

from __future__ import annotations

import subprocess
import sys

PROBE = (
    "import sys\n"
    "from doppel.cli import build_parser\n"
    "build_parser({wanted!r}).parse_args({argv!r})\n"
    "print(sorted(m for m in ('bench.load', 'bench.main', 'anthropic', 'openai') "
    "if m in sys.modules))\n"
)


def _loaded(wanted: str, argv: list[str]) -> str:
    code = PROBE.format(wanted=wanted, argv=argv)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return result.stdout.strip()


def test_an_episode_command_does_not_import_the_benchmarks_or_the_sdks() -> None:
    assert _loaded("episodes", ["episodes", "--json"]) == "[]"


def test_the_bench_command_still_has_its_options() -> None:
    assert "bench.main" in _loaded("bench", ["bench", "--quick", "--suite", "craft"])
