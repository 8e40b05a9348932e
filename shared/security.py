"""TLS, mutual TLS and bearer tokens: credentials for every gRPC server and client.

Servers: `server_credentials` gives TLS credentials when `DOPPEL_TLS_CERT` and `DOPPEL_TLS_KEY`
are set (plaintext otherwise); `DOPPEL_TLS_CLIENT_AUTH=require` adds mutual TLS, client
certificates checked against `DOPPEL_TLS_CA`. Who may call what (tokens with roles, or the
client certificate) is shared/access.py's; `accepted_tokens` gives the monitor's HTTP port the
same tokens. Clients: `channel_credentials` trusts `DOPPEL_TLS_CA` (and presents
`DOPPEL_TLS_CLIENT_CERT`/`_KEY` for mutual TLS); `token_interceptors` send `DOPPEL_AUTH_TOKEN`.
Every client uses them: channels between services and from the CLI (`secure_channel`,
`blocking_channel`), health probes (`probe_channel`: TLS, no token) and the OTLP exporters
(shared/telemetry.py). Tokens are compared in constant time and never logged.
"""

from __future__ import annotations

import collections
import hmac
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from shared.config import ConfigError, Settings
from shared.tokens import token_entries

AUTHORIZATION = "authorization"
BEARER = "bearer "


def _read(path: str, variable: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {type(exc).__name__}") from exc


def _read_pem(path: str, variable: str) -> bytes:
    """A PEM file's bytes; ConfigError naming the variable (never the contents) otherwise."""
    data = _read(path, variable)
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{variable}: {path} is not a PEM file")
    return data


def accepted_tokens(settings: Settings) -> frozenset[str]:
    """Every accepted token, whatever its role (the monitor's HTTP routes only read)."""
    return frozenset(entry.secret.decode() for entry in token_entries(settings))


def server_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS (or mutual TLS) credentials for a server; None means plaintext."""
    require = settings.tls_client_auth == "require"
    if not (settings.tls_cert or settings.tls_key):
        if require:  # Asked for mutual TLS: never fall back to plaintext silently.
            raise ConfigError("DOPPEL_TLS_CLIENT_AUTH=require needs DOPPEL_TLS_CERT and _KEY")
        return None
    if not (settings.tls_cert and settings.tls_key):
        raise ConfigError("DOPPEL_TLS_CERT and DOPPEL_TLS_KEY must be set together")
    key = _read_pem(settings.tls_key, "DOPPEL_TLS_KEY")
    chain = _read_pem(settings.tls_cert, "DOPPEL_TLS_CERT")
    if require and not settings.tls_ca:
        raise ConfigError("DOPPEL_TLS_CLIENT_AUTH=require needs DOPPEL_TLS_CA")
    roots = _read_pem(settings.tls_ca, "DOPPEL_TLS_CA") if require else None
    return grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=roots, require_client_auth=require
    )


def channel_credentials(settings: Settings) -> grpc.ChannelCredentials | None:
    """TLS credentials for a client when `DOPPEL_TLS_CA` is set; None means plaintext."""
    cert = settings.tls_client_cert
    key = settings.tls_client_key
    if bool(cert) != bool(key):
        raise ConfigError("DOPPEL_TLS_CLIENT_CERT and DOPPEL_TLS_CLIENT_KEY must be set together")
    if not settings.tls_ca:
        if cert:  # A client certificate over plaintext would silently not be sent.
            raise ConfigError("DOPPEL_TLS_CLIENT_CERT needs DOPPEL_TLS_CA")
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read_pem(settings.tls_ca, "DOPPEL_TLS_CA"),
        private_key=_read_pem(key, "DOPPEL_TLS_CLIENT_KEY") if key else None,
        certificate_chain=_read_pem(cert, "DOPPEL_TLS_CLIENT_CERT") if cert else None,
    )


def check_tls(settings: Settings) -> None:
    """Reads every configured TLS file now, so a bad setting stops a process at start.

    Raises ConfigError naming the variable; the message holds paths, never file contents.
    """
    server_credentials(settings)
    channel_credentials(settings)


def presented_token(metadata: Sequence[tuple[str, Any]] | None) -> str:
    for key, value in metadata or ():
        is_bearer = isinstance(value, str) and value[: len(BEARER)].lower() == BEARER
        if key.lower() == AUTHORIZATION and is_bearer:
            return str(value)[len(BEARER) :].strip()
    return ""


def is_accepted(token: str, tokens: frozenset[str]) -> bool:
    """Constant-time comparison with every accepted token (no early exit on a match)."""
    presented = token.encode()
    matches = [hmac.compare_digest(presented, accepted.encode()) for accepted in tokens]
    return bool(token) and any(matches)


def _with_token(details: Any, token: str) -> Any:
    metadata = [*(details.metadata or ()), (AUTHORIZATION, f"Bearer {token}")]
    return details._replace(metadata=metadata)


class _TokenUnaryUnary(grpc.aio.UnaryUnaryClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)


class _TokenUnaryStream(grpc.aio.UnaryStreamClientInterceptor):
    def __init__(self, token: str) -> None:
        self._token = token

    async def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(_with_token(details, self._token), request)


def token_interceptors(settings: Settings) -> list[grpc.aio.ClientInterceptor]:
    """Client interceptors that send `DOPPEL_AUTH_TOKEN` on every call (none when unset)."""
    if not settings.auth_token:
        return []
    return [_TokenUnaryUnary(settings.auth_token), _TokenUnaryStream(settings.auth_token)]


def secure_channel(
    target: str,
    settings: Settings,
    options: Sequence[tuple[str, Any]] = (),
    interceptors: Sequence[grpc.aio.ClientInterceptor] = (),
) -> grpc.aio.Channel:
    """An asyncio channel with TLS when configured and the bearer token when set."""
    every = [*interceptors, *token_interceptors(settings)]
    credentials = channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=options, interceptors=every)
    return grpc.aio.secure_channel(target, credentials, options=options, interceptors=every)


class _BlockingCallDetails(
    collections.namedtuple(
        "_BlockingCallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,  # type: ignore[misc]
):
    """Call details with the bearer token added (grpc's own class is abstract)."""


class _BlockingToken(
    grpc.UnaryUnaryClientInterceptor,  # type: ignore[misc]
    grpc.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """Sends the bearer token on every call of a blocking channel."""

    def __init__(self, token: str) -> None:
        self._token = ((AUTHORIZATION, f"Bearer {token}"),)

    def _details(self, details: Any) -> _BlockingCallDetails:
        return _BlockingCallDetails(
            details.method, details.timeout, (*(details.metadata or ()), *self._token),
            details.credentials, details.wait_for_ready, getattr(details, "compression", None),
        )  # fmt: skip

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)


def probe_channel(target: str, settings: Settings | None) -> grpc.Channel:
    """A blocking channel with TLS when configured and no token (health checks are open)."""
    credentials = None if settings is None else channel_credentials(settings)
    if credentials is None:
        return grpc.insecure_channel(target)
    return grpc.secure_channel(target, credentials)


def blocking_channel(target: str, settings: Settings) -> grpc.Channel:
    """A blocking channel with TLS when configured and the bearer token when set."""
    channel = probe_channel(target, settings)
    if settings.auth_token:
        return grpc.intercept_channel(channel, _BlockingToken(settings.auth_token))
    return channel
