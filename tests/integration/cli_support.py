"""Running `doppel` as a subprocess against a stack, and reading what it printed."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from pathlib import Path

from google.protobuf import json_format

from doppelganger.v1 import episode_pb2

ROOT = Path(__file__).resolve().parents[2]


async def doppel(targets: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **targets, "OTEL_SDK_DISABLED": "true"}
    command = [sys.executable, "-m", "doppel.cli", *args]
    return await asyncio.to_thread(
        subprocess.run, command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def printed(label: str, stdout: str) -> list[str]:
    return re.findall(rf"^{label}\s+(.+)$", stdout, re.M)


def read(path: str | Path) -> episode_pb2.Episode:
    return json_format.Parse(Path(path).read_text(), episode_pb2.Episode())
