"""The CLI's blocking clients send the bearer token: `doppel health` against a guarded monitor."""

from __future__ import annotations

import asyncio
import json
import os
import sys

from services.monitor.server import create_monitor_server
from shared.config import Settings
from shared.telemetry import Telemetry

TOKEN = "cli-test-token-7f3b"


async def doppel(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "shared.cli", *args, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, out.decode(), err.decode()


async def test_health_sends_the_token_and_is_refused_without_it(settings: Settings) -> None:
    guarded = settings.with_changes(auth_tokens=TOKEN)
    monitor = await create_monitor_server(guarded, Telemetry("monitor", guarded))
    env = {**os.environ, "DOPPEL_MONITOR_PORT": str(monitor.port), "OTEL_SDK_DISABLED": "true"}
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
