"""Server bootstrap: grpc.aio server with telemetry, access control, health, reflection and
graceful shutdown.

A service module provides a factory `create_<name>_server(settings, telemetry, ...)` that calls
`start_server` and returns the running `ServiceServer`; `serve()` runs one until SIGTERM or SIGINT.
Every server checks who is calling (shared/access.py) and accepts messages up to its own limit
(`DOPPEL_<NAME>_MAX_RECEIVE_BYTES`; larger ones get RESOURCE_EXHAUSTED from gRPC). FaultService
is registered only when `DOPPEL_FAULTS_ENABLED` is true (shared/faults.py).
On a signal: health flips to NOT_SERVING, new calls are refused, in-flight calls get
`grace_seconds`, the service's own resources are closed, telemetry is flushed, exit code 0.
A configuration error (a bad variable, an unreadable TLS or tokens file) stops it at start with
exit code 2 and a message naming the variable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from shared import access, security
from shared.config import ConfigError, Settings
from shared.faults import SERVICE_NAME as FAULT_SERVICE
from shared.faults import Faults, add_fault_service, spec_of
from shared.grpc_telemetry import ServerTelemetryInterceptor, client_interceptors
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

# What clients (between services, the CLI) send and receive at most; each server's own receive
# limit is its DOPPEL_<NAME>_MAX_RECEIVE_BYTES (`max_receive_bytes`).
MAX_MESSAGE_BYTES = 16 * 1024 * 1024
# A server not listed in `max_receive_bytes` (none today) accepts gRPC's own default.
DEFAULT_RECEIVE_BYTES = 4 * 1024 * 1024


def max_receive_bytes(name: str, settings: Settings) -> int:
    """The largest message server `name` accepts."""
    limits = {
        "script": settings.script_max_receive_bytes,
        "scene": settings.scene_max_receive_bytes,
        "cache": settings.cache_max_receive_bytes,
        "monitor": settings.monitor_max_receive_bytes,
    }
    return limits.get(name, DEFAULT_RECEIVE_BYTES)


def server_options(receive_bytes: int) -> list[tuple[str, Any]]:
    return [
        ("grpc.max_receive_message_length", receive_bytes),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.so_reuseport", 0),  # A second server on a taken port must fail, not share it.
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
        # A client that vanished without closing its connection (a killed pod, a dropped
        # network) is found within about 80 s, and its calls are cancelled, instead of holding
        # an episode slot for gRPC's default of two hours.
        ("grpc.keepalive_time_ms", 60_000),
        ("grpc.keepalive_timeout_ms", 20_000),
    ]


CHANNEL_OPTIONS: list[tuple[str, Any]] = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.enable_retries", 1),
]

Cleanup = Callable[[], Awaitable[None]]


class ServiceServer:
    """A started server: its bound port, its health servicer, and how to stop it."""

    def __init__(
        self,
        name: str,
        server: grpc.aio.Server,
        port: int,
        health_servicer: health.aio.HealthServicer,
        telemetry: Telemetry,
        cleanups: Sequence[Cleanup],
    ) -> None:
        self.name = name
        self.server = server
        self.port = port
        self.health = health_servicer
        self.telemetry = telemetry
        self._cleanups = list(cleanups)
        self._stopped = False

    def add_cleanup(self, cleanup: Cleanup) -> None:
        self._cleanups.append(cleanup)

    async def stop(self, grace: float) -> None:
        """NOT_SERVING, then refuse new calls and give in-flight ones `grace` seconds."""
        if self._stopped:
            return
        self._stopped = True
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        for cleanup in reversed(self._cleanups):
            try:
                await cleanup()
            except Exception:
                log.exception("%s: cleanup failed", self.name)
        await asyncio.to_thread(self.telemetry.shutdown)


async def start_server(
    *,
    name: str,
    settings: Settings,
    telemetry: Telemetry,
    port: int,
    register: Callable[[grpc.aio.Server], Sequence[str]],
    cleanups: Sequence[Cleanup] = (),
    extra_interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
) -> ServiceServer:
    """Builds, binds and starts a server; `register` adds servicers and returns their names."""
    server = grpc.aio.server(
        interceptors=[
            ServerTelemetryInterceptor(telemetry),
            access.access_interceptor(name, settings),
            *extra_interceptors,
        ],
        options=server_options(max_receive_bytes(name, settings)),
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    health_servicer = health.aio.HealthServicer()
    service_names = list(register(server))
    if settings.faults_enabled:
        service_names.append(_enable_faults(name, server, telemetry.faults, health_servicer))
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection(
        [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], server
    )
    address = f"{settings.host}:{port}"
    credentials = security.server_credentials(settings)
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:
        raise OSError(f"{name}: cannot bind {address}: {exc}") from exc
    await server.start()
    for service_name in ["", *service_names]:
        await health_servicer.set(service_name, health_pb2.HealthCheckResponse.SERVING)
    if settings.faults_enabled:
        await _show_faults(health_servicer, telemetry.faults)
    log.info("%s serving on %s:%d", name, settings.host, bound)
    return ServiceServer(name, server, bound, health_servicer, telemetry, cleanups)


def _enable_faults(
    name: str, server: grpc.aio.Server, faults: Faults, health_servicer: health.aio.HealthServicer
) -> str:
    """Registers FaultService (DOPPEL_FAULTS_ENABLED): loudly, since it lets an admin degrade
    this server on purpose."""
    log.warning("%s: FaultService enabled (DOPPEL_FAULTS_ENABLED); admin callers can set faults",
                name)  # fmt: skip
    if faults.switched_on():
        log.warning("%s: fault switches on from DOPPEL_FAULTS: %s", name,
                    spec_of(faults.switched_on()))  # fmt: skip

    async def on_change(changed: Faults) -> None:
        await _show_faults(health_servicer, changed)

    return add_fault_service(server, faults, on_change)


async def _show_faults(health_servicer: health.aio.HealthServicer, faults: Faults) -> None:
    """FaultService's health on this server: NOT_SERVING while a switch is on (a local sign
    that survives `monitor_unreachable`), SERVING when all are off."""
    status = health_pb2.HealthCheckResponse
    await health_servicer.set(
        FAULT_SERVICE, status.NOT_SERVING if faults.switched_on() else status.SERVING
    )


def create_channel(
    target: str, telemetry: Telemetry, settings: Settings | None = None
) -> grpc.aio.Channel:
    """A channel whose calls carry trace context and are traced.

    With `settings`: TLS when `DOPPEL_TLS_CA` is set, and the bearer token `DOPPEL_AUTH_TOKEN`.
    """
    interceptors = client_interceptors(telemetry, target)
    if settings is None:
        return grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS, interceptors=interceptors)
    return security.secure_channel(target, settings, CHANNEL_OPTIONS, interceptors)


def configure_logging(level: str, service: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        format=f"%(asctime)s {service} %(levelname)s %(name)s: %(message)s",
    )


async def wait_for_signal() -> int:
    """Returns the number of the first SIGTERM or SIGINT received."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[int] = loop.create_future()

    def on_signal(signum: int) -> None:
        if not received.done():
            received.set_result(signum)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        return await received
    finally:
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(signum)


async def serve(
    name: str,
    settings: Settings,
    factory: Callable[[Settings, Telemetry], Awaitable[ServiceServer]],
) -> int:
    """Runs one service until a signal, then shuts it down gracefully. Returns the exit code."""
    configure_logging(settings.log_level, name)
    try:
        security.check_tls(settings)  # Before anything starts: a bad TLS file stops us here.
        access.AccessPolicy.from_settings(settings)  # Likewise a bad token or tokens file.
    except ConfigError as exc:
        log.error("%s: configuration: %s", name, exc)
        return 2
    if settings.tls_client_auth == "require" and not settings.tls_client_cert:
        log.warning(
            "%s: mutual TLS without DOPPEL_TLS_CLIENT_CERT/_KEY: its own calls and telemetry "
            "exports present no certificate, so mutual-TLS peers refuse them",
            name,
        )
    telemetry = Telemetry(name, settings)
    try:
        running = await factory(settings, telemetry)
    except ConfigError as exc:  # Found while starting, e.g. a database schema that is behind.
        log.error("%s: configuration: %s", name, exc)
        telemetry.shutdown()
        return 2
    except OSError as exc:
        log.error("%s", exc)
        telemetry.shutdown()
        return 1
    signum = await wait_for_signal()
    log.info(
        "%s: %s, stopping (grace %.1fs)", name, signal.Signals(signum).name, settings.grace_seconds
    )
    await running.stop(settings.grace_seconds)
    log.info("%s stopped", name)
    return 0


def run(name: str, factory: Callable[[Settings, Telemetry], Awaitable[ServiceServer]]) -> None:
    """Entry point of `python -m services.<name>`: reads the environment once and serves."""
    try:
        settings = Settings.from_env()
    except ConfigError as exc:
        print(f"{name}: configuration: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    with contextlib.suppress(KeyboardInterrupt):
        raise SystemExit(asyncio.run(serve(name, settings, factory)))
