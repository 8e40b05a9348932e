"""Who is calling, and may they: the server side of access control.

Every server runs `AccessInterceptor`. It finds the caller one of three ways, decided once at
start from the settings (`AccessPolicy.from_settings`):
- tokens (`DOPPEL_AUTH_TOKENS`/`_FILE`, shared/tokens.py): the `authorization: Bearer` token
  names the caller and its role; none or an unknown one: UNAUTHENTICATED. With tokens set, a
  mutual-TLS certificate alone is not enough (the token decides).
- mutual TLS without tokens (`DOPPEL_TLS_CLIENT_AUTH=require`): the verified client
  certificate. Its CN and SANs are looked up in `DOPPEL_TLS_CLIENT_ROLES` (the highest listed
  role wins); a certificate listed nowhere gets `DOPPEL_TLS_CLIENT_DEFAULT_ROLE` (writer). The
  identity is `cert:<CN>` (or the first SAN without a CN).
- neither: open (every caller is `anonymous` with every role), which a server allows on a
  loopback DOPPEL_HOST only, unless DOPPEL_ALLOW_OPEN=true (then with a warning at start).
Then the method's role (shared/roles.py) is checked: too low a role gets PERMISSION_DENIED
naming the role needed and the caller's identity, never the token. The caller is set for the
handler (`current_caller()`) and on the server span (`doppel.caller`); it is safe to log.
"""

from __future__ import annotations

import contextvars
import inspect
import ipaddress
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import trace

from shared.config import ConfigError, Settings
from shared.roles import Role, is_open, required_role
from shared.security import presented_token
from shared.tokens import TokenEntry, find, token_entries

log = logging.getLogger(__name__)

UNAUTHENTICATED_MESSAGE = "missing or invalid bearer token (authorization: Bearer <token>)"
CALLER_ATTRIBUTE = "doppel.caller"


@dataclass(frozen=True)
class Caller:
    """Who made a call: `name` is safe to log (never the token); `via` says how we know."""

    name: str
    role: Role
    via: str  # "token", "certificate" or "open"


ANONYMOUS = Caller("anonymous", Role.ADMIN, "open")
UNKNOWN = Caller("unknown", Role.READER, "none")  # Outside any call the interceptor admitted.
_CALLER: contextvars.ContextVar[Caller] = contextvars.ContextVar("doppel_caller", default=UNKNOWN)


def current_caller() -> Caller:
    """The caller of the RPC being handled (set by AccessInterceptor for the handler's task)."""
    return _CALLER.get()


def is_loopback_host(host: str) -> bool:
    """Whether `host` (a name or an address, IPv6 in brackets or not) is this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class AccessPolicy:
    """How a server identifies callers: by token, by client certificate, or not at all."""

    mode: str  # "tokens", "certificates" or "open"
    tokens: tuple[TokenEntry, ...] = ()
    certificate_roles: tuple[tuple[str, Role], ...] = ()
    default_certificate_role: Role = Role.WRITER

    @classmethod
    def from_settings(cls, settings: Settings) -> AccessPolicy:
        """Reads the tokens (and their file) now; ConfigError naming the variable otherwise."""
        entries = token_entries(settings)
        mutual = settings.tls_client_auth == "require"
        if settings.tls_client_roles and not mutual:
            raise ConfigError("DOPPEL_TLS_CLIENT_ROLES needs DOPPEL_TLS_CLIENT_AUTH=require")
        if entries:
            return cls("tokens", tokens=entries)
        if mutual:
            roles = tuple((name, Role.parse(role)) for name, role in settings.tls_client_roles)
            default = Role.parse(settings.tls_client_default_role)
            return cls("certificates", certificate_roles=roles, default_certificate_role=default)
        if not is_loopback_host(settings.host) and not settings.allow_open:
            raise ConfigError(
                f"DOPPEL_HOST={settings.host} with no DOPPEL_AUTH_TOKENS(_FILE) and no mutual TLS "
                "would let anyone who reaches it call everything: configure tokens (README, "
                "Security), or set DOPPEL_ALLOW_OPEN=true"
            )
        return cls("open")

    def warnings(self, settings: Settings) -> list[str]:
        """What an operator should hear at start: bare tokens, or an open non-loopback port."""
        found = []
        bare = sum(entry.bare for entry in self.tokens)
        if bare:
            found.append(
                f"{bare} token(s) in DOPPEL_AUTH_TOKENS/_FILE have no role and are readers; "
                "write them as role:name:token"
            )
        if self.mode == "tokens" and settings.tls_client_roles:
            found.append("DOPPEL_TLS_CLIENT_ROLES is ignored: with tokens set, the token decides")
        if self.mode == "open" and not is_loopback_host(settings.host):
            found.append(
                f"no DOPPEL_AUTH_TOKENS and no mutual TLS: anyone who reaches {settings.host} "
                "may call everything"
            )
        return found

    def identify(self, context: grpc.aio.ServicerContext) -> Caller | None:
        """The caller of this call, or None when it cannot be authenticated."""
        if self.mode == "tokens":
            entry = find(self.tokens, presented_token(context.invocation_metadata()))
            return None if entry is None else Caller(entry.name, entry.role, "token")
        if self.mode == "certificates":
            return self._certificate_caller(context.auth_context() or {})
        return ANONYMOUS

    def _certificate_caller(self, auth: dict[str, list[bytes]]) -> Caller | None:
        common = [value.decode(errors="replace") for value in auth.get("x509_common_name", [])]
        alternative = [
            value.decode(errors="replace")
            for value in auth.get("x509_subject_alternative_name", [])
        ]
        names = [*common, *alternative]
        if not names:
            return None
        listed = [role for name, role in self.certificate_roles if name in names]
        role = max(listed) if listed else self.default_certificate_role
        return Caller(f"cert:{names[0]}", role, "certificate")


async def _admit(
    policy: AccessPolicy, method: str, needed: Role, context: grpc.aio.ServicerContext
) -> Caller:
    """The caller, allowed to call `method`; otherwise the call is aborted."""
    caller = policy.identify(context)
    if caller is None:
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        raise AssertionError("unreachable: abort raises")
    if caller.role < needed:
        name = method.lstrip("/")
        log.info("%s refused to %s (%s, needs %s)", name, caller.name, caller.role.label,
                 needed.label)  # fmt: skip
        await context.abort(
            grpc.StatusCode.PERMISSION_DENIED,
            f"{name} needs the {needed.label} role; caller {caller.name} has {caller.role.label}",
        )
    _CALLER.set(caller)  # This call's task only: grpc.aio runs each call in a task of its own.
    trace.get_current_span().set_attribute(CALLER_ATTRIBUTE, caller.name)
    return caller


Behavior = Callable[..., Any]


def _guard(behavior: Behavior, admit: Callable[[Any], Awaitable[Caller]]) -> Behavior:
    if inspect.isasyncgenfunction(behavior):

        async def streaming(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
            await admit(context)
            async for response in behavior(request_or_iterator, context):
                yield response

        return streaming

    async def unary(request_or_iterator: Any, context: Any) -> Any:
        await admit(context)
        return await behavior(request_or_iterator, context)

    return unary


def _rewrap(handler: grpc.RpcMethodHandler, wrap: Callable[[Behavior], Behavior]) -> Any:
    """A handler of the same shape as `handler`, its behavior passed through `wrap`."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    if handler.unary_unary:
        return grpc.unary_unary_rpc_method_handler(wrap(handler.unary_unary), **kwargs)
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(wrap(handler.unary_stream), **kwargs)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(wrap(handler.stream_unary), **kwargs)
    return grpc.stream_stream_rpc_method_handler(wrap(handler.stream_stream), **kwargs)


class AccessInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Identifies the caller of every call but the open ones, and checks its role."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        method = handler_call_details.method or ""
        if handler is None or is_open(method):
            return handler
        needed = required_role(method)

        async def admit(context: grpc.aio.ServicerContext) -> Caller:
            return await _admit(self.policy, method, needed, context)

        return _rewrap(handler, lambda behavior: _guard(behavior, admit))


def access_interceptor(name: str, settings: Settings) -> AccessInterceptor:
    """The interceptor for server `name`; logs what an operator should know about its policy."""
    policy = AccessPolicy.from_settings(settings)
    for warning in policy.warnings(settings):
        log.warning("%s: %s", name, warning)
    log.info("%s: callers identified by %s", name, policy.mode)
    return AccessInterceptor(policy)
