"""The CLI's blocking clients send the bearer token: `doppel health` against a guarded monitor,
with DOPPEL_AUTH_TOKEN or, when it is unset, the local stack's token `doppel up` made."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from doppel.local_tokens import data_dir, ensure_local_tokens
from services.monitor.server import create_monitor_server
from shared.config import Settings
from shared.telemetry import Telemetry

TOKEN = "cli-test-token-7f3b"


async def doppel(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "doppel.cli", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_health_sends_the_token_and_is_refused_without_it(
    settings: Settings, tmp_path: Path
) -> None:
    guarded = settings.with_changes(auth_tokens=f"reader:dashboard:{TOKEN}")
    monitor = await create_monitor_server(guarded, Telemetry("monitor", guarded))
    env = {**os.environ, "DOPPEL_MONITOR_PORT": str(monitor.port), "OTEL_SDK_DISABLED": "true",
           "XDG_DATA_HOME": str(tmp_path)}  # fmt: skip
    env.pop("DOPPEL_AUTH_TOKEN", None)
    try:
        code, out, _ = await doppel("health", "--json", env={**env, "DOPPEL_AUTH_TOKEN": TOKEN})
        assert code == 0
        assert json.loads(out)["health"]["score"] == 100
        code, _, err = await doppel("health", "--json", env=env)
        assert code == 1 and "UNAUTHENTICATED" in err
        assert TOKEN not in err
    finally:
        await monitor.stop(0)


async def test_without_a_token_the_cli_uses_the_local_stacks(
    settings: Settings, tmp_path: Path
) -> None:
    env = {**os.environ, "OTEL_SDK_DISABLED": "true", "XDG_DATA_HOME": str(tmp_path)}
    env.pop("DOPPEL_AUTH_TOKEN", None)
    tokens = ensure_local_tokens(data_dir(env))  # What `doppel up` makes on its first run.
    guarded = settings.with_changes(auth_tokens_file=str(tokens.path))
    monitor = await create_monitor_server(guarded, Telemetry("monitor", guarded))
    env["DOPPEL_MONITOR_PORT"] = str(monitor.port)
    try:
        code, out, err = await doppel("health", "--json", env=env)
        assert code == 0, err
        assert json.loads(out)["health"]["score"] == 100
        tokens.path.chmod(0o644)  # Readable by others: refused, not used.
        code, _, err = await doppel("health", "--json", env=env)
        assert code == 2 and "readable by others" in err
        assert tokens.cli not in err
    finally:
        await monitor.stop(0)
