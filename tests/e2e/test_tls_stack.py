"""The studio on mutual TLS as real processes: `doppel up`, `doppel generate`, `doppel health`.

Every service serves mutual TLS and calls the others (and exports its telemetry to the monitor)
with the client certificate; the CLI runs with the client half only (CA, certificate, key).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from doppel.local_tokens import LOCAL_FILE
from doppelganger.v1 import monitor_pb2, monitor_pb2_grpc
from shared import security
from shared.config import Settings
from testkit import eventually_sync, free_port
from tests.e2e.processes import read_until_ready, stop_up
from tests.tls_certs import TlsFiles, make_tls_files

pytestmark = pytest.mark.e2e

SERVICES = ("script", "scene", "cache", "monitor")
SERVER_ONLY = (
    "DOPPEL_TLS_CERT", "DOPPEL_TLS_KEY", "DOPPEL_TLS_CLIENT_AUTH", "DOPPEL_TLS_CLIENT_ROLES",
)  # fmt: skip
CLIENT_CERT = ("DOPPEL_TLS_CLIENT_CERT", "DOPPEL_TLS_CLIENT_KEY")
CA = "DOPPEL_TLS_CA"


@dataclass
class TlsStack:
    process: subprocess.Popen[str]
    client_env: dict[str, str]  # CA and client certificate: what an operator's CLI has.


def tls_env(tls: TlsFiles) -> dict[str, str]:
    return {
        "DOPPEL_TLS_CERT": str(tls.server_cert),
        "DOPPEL_TLS_KEY": str(tls.server_key),
        "DOPPEL_TLS_CA": str(tls.ca),
        "DOPPEL_TLS_CLIENT_AUTH": "require",
        "DOPPEL_TLS_CLIENT_CERT": str(tls.client_cert),
        "DOPPEL_TLS_CLIENT_KEY": str(tls.client_key),
        # No tokens: the certificate decides. The services share this one and need the service
        # role (script -> cache); the CLI presents it too.
        "DOPPEL_TLS_CLIENT_ROLES": "doppel client=service",
    }


def stack_env(tls: TlsFiles, data_dir: Path) -> dict[str, str]:
    ports = {name: str(free_port()) for name in (*SERVICES, "monitor_http")}
    env = {**os.environ, **tls_env(tls)}
    env.update({f"DOPPEL_{name.upper()}_PORT": port for name, port in ports.items()})
    env.update(DOPPEL_GRACE_SECONDS="5", OTEL_BSP_SCHEDULE_DELAY="200", PYTHONUNBUFFERED="1")
    env.update(OTEL_METRIC_EXPORT_INTERVAL="1000")
    for name in ("REDIS_URL", "OTEL_SDK_DISABLED", "OTEL_EXPORTER_OTLP_ENDPOINT"):
        env.pop(name, None)
    for name in ("DOPPEL_AUTH_TOKENS", "DOPPEL_AUTH_TOKENS_FILE", "DOPPEL_AUTH_TOKEN"):
        env.pop(name, None)
    env["XDG_DATA_HOME"] = str(data_dir)  # Mutual TLS: `doppel up` must make no tokens here.
    return env


def without(env: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    return {key: value for key, value in env.items() if key not in names}


def doppel(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "doppel.cli", *args],
        env=env, capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsStack]:
    """One `doppel up` under mutual TLS for the whole module; SIGTERM stops it at the end."""
    data_dir = tmp_path_factory.mktemp("data")
    env = stack_env(make_tls_files(tmp_path_factory.mktemp("pki")), data_dir)
    log_dir = tmp_path_factory.mktemp("logs")
    process = subprocess.Popen(
        [sys.executable, "-m", "doppel.cli", "up", "--log-dir", str(log_dir)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        read_until_ready(process, timeout=90)
        # The library lives there now; the local token file must not.
        assert not (data_dir / "doppelganger" / LOCAL_FILE).exists()
        yield TlsStack(process, without(env, SERVER_ONLY))
    finally:
        stop_up(process)


def test_generate_over_mutual_tls_writes_the_episode(stack: TlsStack, tmp_path: Path) -> None:
    result = doppel(
        "generate", "--show", "Seinfeld", "--setting", "a lunar mining station", "--scenes", "2",
        "--seed", "5", "--out", str(tmp_path), "--quiet", env=stack.client_env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "render failed" not in result.stderr  # script -> scene answered over mutual TLS.
    json_path = Path(re.search(r"^json\s+(\S+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    fountain_path = Path(re.search(r"^fountain\s+(\S+)$", result.stdout, re.M).group(1))  # type: ignore[union-attr]
    trace_id = re.search(r"^trace id\s+([0-9a-f]{32})$", result.stdout, re.M).group(1)  # type: ignore[union-attr]
    episode = json.loads(json_path.read_text())
    assert len(episode["scenes"]) == 2
    assert fountain_path.read_text().startswith("Title:")
    wanted = {"doppel-cli", "script", "cache", "scene"}
    assert wanted <= traced_services(stack.client_env, trace_id, wanted)


def traced_services(env: dict[str, str], trace_id: str, wanted: set[str]) -> set[str]:
    """Services with spans in the trace: their OTLP exporters reached the mutual-TLS monitor."""
    settings = Settings.from_env(env)
    seen: set[str] = set()
    with security.blocking_channel(settings.monitor_address, settings) as channel:
        stub = monitor_pb2_grpc.MonitorServiceStub(channel)

        def complete() -> bool:
            nonlocal seen
            try:
                trace = stub.GetTrace(monitor_pb2.GetTraceRequest(trace_id=trace_id), timeout=5)
                seen = {span.service for span in trace.spans}
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.NOT_FOUND:
                    raise
            return wanted <= seen

        with contextlib.suppress(AssertionError):  # The caller's check says what is missing.
            eventually_sync(complete, timeout=30, interval=0.2)
    return seen


def test_health_over_mutual_tls(stack: TlsStack) -> None:
    result = doppel("health", "--json", env=stack.client_env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)["health"]
    assert 0 <= report["score"] <= 100
    assert int(report["spansReceived"]) > 0
    plain = doppel("health", env=stack.client_env)
    assert plain.returncode == 0, plain.stderr
    assert re.search(r"^health score\s+\d+\.\d / 100$", plain.stdout, re.M), plain.stdout


def test_the_cli_without_a_client_certificate_is_refused(stack: TlsStack) -> None:
    no_cert = doppel("health", "--json", env=without(stack.client_env, CLIENT_CERT))
    assert no_cert.returncode == 1
    assert "UNAVAILABLE" in no_cert.stderr
    misconfigured = doppel("health", "--json", env=without(stack.client_env, (CA,)))
    assert misconfigured.returncode == 2  # A certificate but no CA: a configuration error.
    assert "DOPPEL_TLS_CLIENT_CERT needs DOPPEL_TLS_CA" in misconfigured.stderr


@pytest.mark.parametrize("service", SERVICES)
def test_the_container_probe_speaks_mutual_tls(stack: TlsStack, service: str) -> None:
    probe = subprocess.run(
        [sys.executable, "-m", "shared.healthcheck", service],
        env=stack.client_env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stdout + probe.stderr
    assert probe.stdout.strip().endswith("SERVING")
