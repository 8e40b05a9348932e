"""The script service's client for the cache service's coordination RPCs.

Every replica of the script service shares, through these: one rate limiter per provider key and
model class (llm/quota.py), the spending ledgers of episodes and callers (llm/spending.py), and a
lease per episode being written (`episode_lease`, used by server.py). Each call has a short
deadline and raises `CoordinationUnavailable` on any failure: the callers then fall back to what
one replica can do alone, and try the shared state again later.

Names sent to the cache never hold a secret: a provider key appears only as `fingerprint(...)`, a
truncated SHA-256 that cannot be turned back into the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import re
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from opentelemetry import trace

from doppelganger.v1 import cache_pb2, cache_pb2_grpc

log = logging.getLogger(__name__)

FINGERPRINT_CHARS = 16
_DATED_SNAPSHOT = re.compile(r"-(\d{8}|latest)$")
_NAME_UNSAFE = re.compile(r"[^a-z0-9._-]+")


class Limits(Protocol):
    """A rate limiter's limits (services/script/llm/ratelimit.py `Limits`)."""

    @property
    def requests(self) -> int: ...
    @property
    def tokens(self) -> int: ...
    @property
    def window(self) -> float: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...


class CoordinationUnavailable(Exception):
    """The cache service (or its Redis) did not answer a coordination call."""


def fingerprint(*parts: str) -> str:
    """A non-reversible name for secret material (a provider key with its base URL)."""
    digest = hashlib.sha256("\x00".join(("doppel-fingerprint-v1", *parts)).encode())
    return digest.hexdigest()[:FINGERPRINT_CHARS]


def model_class(model: str) -> str:
    """The family providers limit together: a dated snapshot is its family
    (claude-sonnet-4-5-20250929 -> claude-sonnet-4-5), in a name the cache accepts."""
    family = _DATED_SNAPSHOT.sub("", model.strip().lower())
    return _NAME_UNSAFE.sub("_", family)[:64] or "default"


def new_id() -> str:
    return uuid.uuid4().hex


@dataclass(frozen=True)
class SpendLimit:
    """At most `max_tokens` tokens and `max_cost_usd` dollars (0: no limit) per period of
    `period_seconds` on the server's clock (an hour from :00, a day from 00:00 UTC); 0: over the
    scope's whole life."""

    period_seconds: int
    max_tokens: int
    max_cost_usd: float

    @property
    def active(self) -> bool:
        return bool(self.max_tokens or self.max_cost_usd)

    def share(self, replicas: int) -> SpendLimit:
        """One replica's share of the limit (at least 1 token, when there is a token limit)."""
        tokens = max(1, self.max_tokens // replicas) if self.max_tokens else 0
        return SpendLimit(self.period_seconds, tokens, self.max_cost_usd / replicas)


@dataclass(frozen=True)
class SpendTotal:
    spent_tokens: int
    reserved_tokens: int
    spent_cost_usd: float
    reserved_cost_usd: float


@dataclass(frozen=True)
class SpendDecision:
    """A reservation's answer: granted, or which limit refused, on what, and when its period
    ends (0: never by itself)."""

    granted: bool
    refused_by: int
    exhausted: str
    retry_after_seconds: float
    totals: tuple[SpendTotal, ...]


@dataclass(frozen=True)
class RateDecision:
    granted: bool
    wait_seconds: float
    reason: str
    paused_seconds: float


@dataclass(frozen=True)
class LeaseState:
    held: bool
    ttl_seconds: float


def _ms(seconds: float) -> int:
    return max(0, round(seconds * 1000))


def _rate_limits(limits: Limits) -> cache_pb2.RateLimits:
    return cache_pb2.RateLimits(
        window_ms=max(1, _ms(limits.window)), requests=limits.requests, tokens=limits.tokens,
        input_tokens=limits.input_tokens, output_tokens=limits.output_tokens,
    )  # fmt: skip


def _spend_limits(limits: Sequence[SpendLimit]) -> list[cache_pb2.SpendLimit]:
    return [
        cache_pb2.SpendLimit(
            period_seconds=limit.period_seconds,
            max_tokens=limit.max_tokens,
            max_cost_usd=limit.max_cost_usd,
        )
        for limit in limits
    ]


def _totals(totals: Sequence[cache_pb2.SpendTotal]) -> tuple[SpendTotal, ...]:
    return tuple(
        SpendTotal(t.spent_tokens, t.reserved_tokens, t.spent_cost_usd, t.reserved_cost_usd)
        for t in totals
    )


class CoordinationClient:
    """The coordination RPCs of one CacheService channel, each bounded by `timeout`."""

    def __init__(self, stub: cache_pb2_grpc.CacheServiceStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def _call(self, operation: str, method: object, request: object) -> object:
        try:
            return await method(request, timeout=self._timeout)  # type: ignore[operator]
        except grpc.aio.AioRpcError as exc:
            trace.get_current_span().add_event(
                "doppel.coordination.unavailable",
                {"doppel.coordination.operation": operation, "rpc.status_code": exc.code().name},
            )
            raise CoordinationUnavailable(f"{operation}: {exc.code().name}") from None

    async def acquire_rate(
        self,
        limiter: str,
        permit_id: str,
        limits: Limits,
        input_tokens: int,
        output_tokens: int,
        lease_seconds: float,
    ) -> RateDecision:
        request = cache_pb2.AcquireRateRequest(
            limiter=limiter, permit_id=permit_id, limits=_rate_limits(limits),
            input_tokens=input_tokens, output_tokens=output_tokens,
            lease_ms=max(1, _ms(lease_seconds)),
        )  # fmt: skip
        answer = await self._call("acquire_rate", self._stub.AcquireRate, request)
        assert isinstance(answer, cache_pb2.AcquireRateResponse)
        return RateDecision(
            answer.granted, answer.wait_ms / 1000, answer.reason, answer.paused_ms / 1000
        )

    async def settle_rate(
        self,
        limiter: str,
        permit_id: str,
        limits: Limits,
        input_tokens: int,
        output_tokens: int,
        pause_seconds: float = 0.0,
    ) -> float:
        """Records what a request used; returns the seconds of shared pause left."""
        request = cache_pb2.SettleRateRequest(
            limiter=limiter, permit_id=permit_id, limits=_rate_limits(limits),
            input_tokens=input_tokens, output_tokens=output_tokens, pause_ms=_ms(pause_seconds),
        )  # fmt: skip
        answer = await self._call("settle_rate", self._stub.SettleRate, request)
        assert isinstance(answer, cache_pb2.SettleRateResponse)
        return answer.paused_ms / 1000

    async def reserve_spend(
        self,
        scope: str,
        reservation_id: str,
        limits: Sequence[SpendLimit],
        tokens: int,
        cost_usd: float,
        lease_seconds: float,
        idle_seconds: int,
    ) -> SpendDecision:
        request = cache_pb2.ReserveSpendRequest(
            scope=scope, reservation_id=reservation_id, limits=_spend_limits(limits),
            tokens=tokens, cost_usd=cost_usd, lease_ms=max(1, _ms(lease_seconds)),
            idle_seconds=idle_seconds,
        )  # fmt: skip
        answer = await self._call("reserve_spend", self._stub.ReserveSpend, request)
        assert isinstance(answer, cache_pb2.ReserveSpendResponse)
        return SpendDecision(
            answer.granted, answer.refused_by, answer.exhausted, answer.retry_after_ms / 1000,
            _totals(answer.totals),
        )  # fmt: skip

    async def settle_spend(
        self,
        scope: str,
        reservation_id: str,
        limits: Sequence[SpendLimit],
        tokens: int,
        cost_usd: float,
        idle_seconds: int,
    ) -> tuple[SpendTotal, ...]:
        request = cache_pb2.SettleSpendRequest(
            scope=scope, reservation_id=reservation_id, limits=_spend_limits(limits),
            tokens=tokens, cost_usd=cost_usd, idle_seconds=idle_seconds,
        )  # fmt: skip
        answer = await self._call("settle_spend", self._stub.SettleSpend, request)
        assert isinstance(answer, cache_pb2.SettleSpendResponse)
        return _totals(answer.totals)

    async def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> LeaseState:
        return await self._lease("acquire_lease", self._stub.AcquireLease, name, holder,
                                 ttl_seconds)  # fmt: skip

    async def renew_lease(self, name: str, holder: str, ttl_seconds: float) -> LeaseState:
        return await self._lease("renew_lease", self._stub.RenewLease, name, holder, ttl_seconds)

    async def release_lease(self, name: str, holder: str) -> LeaseState:
        return await self._lease("release_lease", self._stub.ReleaseLease, name, holder, 0.0)

    async def _lease(
        self, operation: str, method: object, name: str, holder: str, ttl_seconds: float
    ) -> LeaseState:
        request = cache_pb2.LeaseRequest(name=name, holder=holder, ttl_ms=_ms(ttl_seconds))
        answer = await self._call(operation, method, request)
        assert isinstance(answer, cache_pb2.LeaseResponse)
        return LeaseState(answer.held, answer.ttl_ms / 1000)


class LeaseHeld(Exception):
    """Another request holds the lease; it has `ttl_seconds` left unless renewed."""

    def __init__(self, name: str, ttl_seconds: float) -> None:
        super().__init__(f"{name} is held by another request")
        self.ttl_seconds = ttl_seconds


@contextlib.asynccontextmanager
async def held_lease(
    client: CoordinationClient, name: str, ttl_seconds: float
) -> AsyncIterator[bool]:
    """Holds the lease `name` for the block, renewing it every third of its TTL, and releases it
    after (only if still ours). Raises LeaseHeld when another holder has it. Yields False when
    the cache service cannot be reached: the block then runs unguarded, as without a lease."""
    holder = new_id()
    state: LeaseState | None = None
    try:
        state = await client.acquire_lease(name, holder, ttl_seconds)
    except CoordinationUnavailable as exc:
        log.warning("lease %s not taken (%s); going on without it", name, exc)
    if state is None:
        yield False
        return
    if not state.held:
        raise LeaseHeld(name, state.ttl_seconds)
    renewer = asyncio.create_task(_renew(client, name, holder, ttl_seconds))
    try:
        yield True
    finally:
        renewer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewer
        with contextlib.suppress(CoordinationUnavailable):
            await client.release_lease(name, holder)


async def _renew(client: CoordinationClient, name: str, holder: str, ttl_seconds: float) -> None:
    while True:
        await asyncio.sleep(ttl_seconds / 3)
        try:
            state = await client.renew_lease(name, holder, ttl_seconds)
        except CoordinationUnavailable as exc:
            log.warning("lease %s not renewed (%s); trying again", name, exc)
            continue
        if not state.held:
            # Expired (the cache was unreachable for a whole TTL) and maybe taken: the work goes
            # on, content-keyed, so at worst a part is written twice.
            log.warning("lease %s lost; the episode goes on without it", name)
            return
