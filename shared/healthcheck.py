"""`python -m shared.healthcheck [TARGET]`: a gRPC health probe for containers.

Asks `grpc.health.v1.Health/Check` and exits 0 only on SERVING (1 otherwise, 2 on bad usage), so
a Docker HEALTHCHECK or compose healthcheck speaks gRPC health instead of checking that a port is
open (grpc_health_probe is a separate binary the image would have to download).

TARGET is `host:port`, or a service name (script, scene, cache, monitor) probed on 127.0.0.1 at
its configured port (`DOPPEL_<NAME>_PORT`). Without TARGET it probes the service this container
runs: the process started as `python -m services.<name>` (found in /proc). It speaks TLS (with
the client certificate under mutual TLS) when `DOPPEL_TLS_CA` is set, as every client does.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from shared import security
from shared.config import ConfigError, Settings

SERVICE_PORTS = {
    "script": "script_port",
    "scene": "scene_port",
    "cache": "cache_port",
    "monitor": "monitor_port",
}


class ProbeUsageError(ValueError):
    """The target cannot be resolved to an address."""


def running_service(proc: Path = Path("/proc")) -> str:
    """The name of the `python -m services.<name>` process on this machine (one per container)."""
    found = {name for cmdline in _command_lines(proc) if (name := _service_of(cmdline))}
    if len(found) != 1:
        raise ProbeUsageError(
            f"expected one running service, found {sorted(found) or 'none'}: pass TARGET"
        )
    return found.pop()


def _command_lines(proc: Path) -> Iterable[list[str]]:
    for entry in proc.glob("[0-9]*/cmdline"):
        try:
            raw = entry.read_bytes()
        except OSError:  # The process exited, or is not ours to read.
            continue
        yield [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _service_of(cmdline: list[str]) -> str | None:
    for flag, module in itertools.pairwise(cmdline):
        if flag == "-m" and module.startswith("services."):
            name = module.removeprefix("services.")
            return name if name in SERVICE_PORTS else None
    return None


def resolve_address(target: str | None, settings: Settings) -> str:
    """`host:port` as given, or the local address of a named (or the running) service."""
    name = running_service() if target is None else target
    if name in SERVICE_PORTS:
        return f"127.0.0.1:{getattr(settings, SERVICE_PORTS[name])}"
    if ":" not in name:
        raise ProbeUsageError(
            f"TARGET {name!r}: expected host:port or one of {list(SERVICE_PORTS)}"
        )
    return name


def check(
    address: str, service: str = "", timeout: float = 3.0, settings: Settings | None = None
) -> str:
    """The health status name the server reports, or the gRPC error code when the call fails.

    With `settings`, over TLS (and mutual TLS) when they configure it (`DOPPEL_TLS_CA`, ...).
    """
    with security.probe_channel(address, settings) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as exc:
            return str(exc.code().name)  # type: ignore[attr-defined]
    return str(health_pb2.HealthCheckResponse.ServingStatus.Name(response.status))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shared.healthcheck", description=__doc__)
    parser.add_argument("target", nargs="?", help="host:port or script|scene|cache|monitor")
    parser.add_argument("--service", default="", help="gRPC service name to ask about")
    parser.add_argument("--timeout", type=float, default=3.0, help="seconds (default 3)")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        address = resolve_address(args.target, settings)
        security.channel_credentials(settings)  # A bad TLS setting is a usage error.
    except (ProbeUsageError, ConfigError) as exc:
        print(f"healthcheck: {exc}", file=sys.stderr)
        return 2
    status = check(address, args.service, args.timeout, settings)
    print(f"{address} {status}")
    return 0 if status == "SERVING" else 1


if __name__ == "__main__":
    raise SystemExit(main())
