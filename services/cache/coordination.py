"""CacheService's coordination RPCs: shared rate limiters, spending ledgers and leases on Redis.

The script replicas share one provider quota, one budget per episode, one cap per caller and one
writer per episode through these (the client side is services/script/coordination.py). Each
RPC is one Lua script (services/cache/coordination_lua.py) on Redis's own clock, so the replicas'
clocks never matter. Keys:

    doppel:v1:{rl:<limiter>}:inflight|finished|tokens|state      rate limiter
    doppel:v1:{spend:<scope>}:ledger|expiry|detail                spending scope
    doppel:v1:{lease:<name>}                                      lease

Names carry no secrets: the script service names a limiter by provider, a fingerprint of the
key and the model class. Every field is checked (INVALID_ARGUMENT names it and its limit); Redis
failures answer UNAVAILABLE, a full Redis pool RESOURCE_EXHAUSTED with `retry-after-ms`, as the
other cache RPCs do. `CoordinationRpcs` is mixed into `CacheService`.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NoReturn

import grpc
import redis.asyncio as aioredis
from opentelemetry import metrics, trace
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from doppelganger.v1 import cache_pb2
from services.cache import coordination_lua as lua
from services.cache.redis_url import PoolExhausted
from shared.faults import Faults

log = logging.getLogger(__name__)

KEY_PREFIX = "doppel:v1"
NAME_PATTERN = re.compile(r"[a-z0-9._:-]{1,128}")
ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,64}")
DAY_MS = 24 * 3600 * 1000
HOUR_MS = 3600 * 1000
MAX_PERIOD_SECONDS = 31 * 24 * 3600
MAX_REQUESTS = 100_000  # A window's requests: the limiter's records are at most this many.
MAX_LIMIT_TOKENS = 10**12
MAX_CALL_TOKENS = 10**9
MAX_SPEND_TOKENS = 10**12
MAX_COST_USD = 10**6
MAX_SPEND_LIMITS = 4
RETRY_AFTER_MS_RANGE = (100, 30_000)


class InvalidRequest(ValueError):
    """A field breaks a documented limit; the message names it."""


def rate_keys(limiter: str) -> list[str]:
    base = f"{KEY_PREFIX}:{{rl:{limiter}}}"
    return [f"{base}:inflight", f"{base}:finished", f"{base}:tokens", f"{base}:state"]


def spend_keys(scope: str) -> list[str]:
    base = f"{KEY_PREFIX}:{{spend:{scope}}}"
    return [f"{base}:ledger", f"{base}:expiry", f"{base}:detail"]


def lease_key(name: str) -> str:
    return f"{KEY_PREFIX}:{{lease:{name}}}"


def _name(field: str, value: str) -> None:
    if not NAME_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{field} must be 1-128 characters of [a-z0-9._:-]")


def _id(field: str, value: str) -> None:
    if not ID_PATTERN.fullmatch(value):
        raise InvalidRequest(f"{field} must be 1-64 characters of [A-Za-z0-9_-]")


def _within(field: str, value: int | float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise InvalidRequest(f"{field} must be between {low:g} and {high:g} (got {value:g})")


def check_rate_limits(limits: cache_pb2.RateLimits) -> None:
    _within("limits.window_ms", limits.window_ms, 1, DAY_MS)
    _within("limits.requests", limits.requests, 1, MAX_REQUESTS)
    for field in ("tokens", "input_tokens", "output_tokens"):
        _within(f"limits.{field}", getattr(limits, field), 0, MAX_LIMIT_TOKENS)


def check_acquire_rate(request: cache_pb2.AcquireRateRequest) -> None:
    _name("limiter", request.limiter)
    _id("permit_id", request.permit_id)
    check_rate_limits(request.limits)
    _within("input_tokens", request.input_tokens, 0, MAX_CALL_TOKENS)
    _within("output_tokens", request.output_tokens, 0, MAX_CALL_TOKENS)
    _within("lease_ms", request.lease_ms, 1, HOUR_MS)


def check_settle_rate(request: cache_pb2.SettleRateRequest) -> None:
    _name("limiter", request.limiter)
    _id("permit_id", request.permit_id)
    check_rate_limits(request.limits)
    _within("input_tokens", request.input_tokens, 0, MAX_CALL_TOKENS)
    _within("output_tokens", request.output_tokens, 0, MAX_CALL_TOKENS)
    _within("pause_ms", request.pause_ms, 0, DAY_MS)


def capped_estimate(
    limits: cache_pb2.RateLimits, input_tokens: int, output_tokens: int
) -> tuple[int, int]:
    """The estimate a limiter can ever grant: a request bigger than a limit goes alone (its
    input first, then what output still fits), rather than waiting for ever."""
    if limits.input_tokens:
        input_tokens = min(input_tokens, limits.input_tokens)
    if limits.output_tokens:
        output_tokens = min(output_tokens, limits.output_tokens)
    if limits.tokens:
        input_tokens = min(input_tokens, limits.tokens)
        output_tokens = min(output_tokens, limits.tokens - input_tokens)
    return input_tokens, output_tokens


def _check_spend_limits(limits: Sequence[cache_pb2.SpendLimit]) -> None:
    if not 1 <= len(limits) <= MAX_SPEND_LIMITS:
        raise InvalidRequest(f"limits must hold 1-{MAX_SPEND_LIMITS} limits")
    periods = [limit.period_seconds for limit in limits]
    if len(set(periods)) != len(periods):
        raise InvalidRequest("limits must have distinct period_seconds")
    for index, limit in enumerate(limits):
        _within(f"limits[{index}].period_seconds", limit.period_seconds, 0, MAX_PERIOD_SECONDS)
        _within(f"limits[{index}].max_tokens", limit.max_tokens, 0, MAX_SPEND_TOKENS * 1000)
        _within(f"limits[{index}].max_cost_usd", limit.max_cost_usd, 0, MAX_COST_USD * 1000)


def _check_spend(scope: str, reservation_id: str, limits: Any, tokens: int, cost: float) -> None:
    _name("scope", scope)
    _id("reservation_id", reservation_id)
    _check_spend_limits(limits)
    _within("tokens", tokens, 0, MAX_SPEND_TOKENS)
    _within("cost_usd", cost, 0, MAX_COST_USD)


def check_reserve_spend(request: cache_pb2.ReserveSpendRequest) -> None:
    _check_spend(request.scope, request.reservation_id, request.limits, request.tokens,
                 request.cost_usd)  # fmt: skip
    _within("lease_ms", request.lease_ms, 1, HOUR_MS)
    _within("idle_seconds", request.idle_seconds, 1, MAX_PERIOD_SECONDS)


def check_settle_spend(request: cache_pb2.SettleSpendRequest) -> None:
    _check_spend(request.scope, request.reservation_id, request.limits, request.tokens,
                 request.cost_usd)  # fmt: skip
    _within("idle_seconds", request.idle_seconds, 1, MAX_PERIOD_SECONDS)


def check_lease(request: cache_pb2.LeaseRequest, needs_ttl: bool) -> None:
    _name("name", request.name)
    _id("holder", request.holder)
    if needs_ttl:
        _within("ttl_ms", request.ttl_ms, 1, DAY_MS)


def _spend_argv(
    request: cache_pb2.ReserveSpendRequest | cache_pb2.SettleSpendRequest, lease_ms: int
) -> list[str | int]:
    """The scripts' ARGV: id, tokens, cost, lease, idle (at least the longest period and the
    lease, so a ledger outlives its periods and reservations), then the limits."""
    longest = max(limit.period_seconds for limit in request.limits)
    idle_ms = max(request.idle_seconds, longest) * 1000 + lease_ms
    argv: list[str | int] = [
        request.reservation_id, request.tokens, f"{request.cost_usd:.9f}", lease_ms, idle_ms,
        len(request.limits),
    ]  # fmt: skip
    for limit in request.limits:
        argv += [limit.period_seconds, limit.max_tokens, f"{limit.max_cost_usd:.9f}"]
    return argv


def _totals(
    flat: Sequence[Any], limits: Sequence[cache_pb2.SpendLimit]
) -> list[cache_pb2.SpendTotal]:
    return [
        cache_pb2.SpendTotal(
            period_seconds=limit.period_seconds,
            spent_tokens=int(flat[4 * i]),
            reserved_tokens=int(flat[4 * i + 1]),
            spent_cost_usd=float(flat[4 * i + 2]),
            reserved_cost_usd=float(flat[4 * i + 3]),
        )
        for i, limit in enumerate(limits)
    ]


@dataclass
class CoordinationScripts:
    """The registered scripts and what the RPCs need besides them."""

    rate_acquire: Any
    rate_settle: Any
    spend_reserve: Any
    spend_settle: Any
    lease_acquire: Any
    lease_renew: Any
    lease_release: Any
    faults: Faults
    requests: metrics.Counter

    @classmethod
    def register(
        cls, client: aioredis.Redis, faults: Faults, meter: metrics.Meter
    ) -> CoordinationScripts:
        return cls(
            client.register_script(lua.RATE_ACQUIRE),
            client.register_script(lua.RATE_SETTLE),
            client.register_script(lua.SPEND_RESERVE),
            client.register_script(lua.SPEND_SETTLE),
            client.register_script(lua.LEASE_ACQUIRE),
            client.register_script(lua.LEASE_RENEW),
            client.register_script(lua.LEASE_RELEASE),
            faults,
            meter.create_counter(
                "doppel.cache.coordination",
                unit="{request}",
                description="Coordination calls by operation and result (granted, waited, "
                "refused, held, lost, ok, error, overloaded).",
            ),
        )


class CoordinationRpcs:
    """The coordination RPCs; the servicer sets `_coordination` (CoordinationScripts)."""

    _coordination: CoordinationScripts

    async def AcquireRate(
        self, request: cache_pb2.AcquireRateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.AcquireRateResponse:
        await _validate(context, check_acquire_rate, request)
        limits = request.limits
        input_tokens, output_tokens = capped_estimate(
            limits, request.input_tokens, request.output_tokens
        )
        argv = [
            request.permit_id, limits.window_ms, limits.requests, limits.tokens,
            limits.input_tokens, limits.output_tokens, input_tokens, output_tokens,
            request.lease_ms,
        ]  # fmt: skip
        granted, wait_ms, reason, paused_ms = await self._run(
            context,
            "acquire_rate",
            self._coordination.rate_acquire,
            rate_keys(request.limiter),
            argv,
        )
        self._counted("acquire_rate", "granted" if granted else "waited")
        trace.get_current_span().set_attributes(
            {
                "doppel.coordination.limiter": request.limiter,
                "doppel.coordination.granted": bool(granted),
            }
        )
        return cache_pb2.AcquireRateResponse(
            granted=bool(granted),
            wait_ms=int(wait_ms),
            reason=_text(reason),
            paused_ms=int(paused_ms),
        )

    async def SettleRate(
        self, request: cache_pb2.SettleRateRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.SettleRateResponse:
        await _validate(context, check_settle_rate, request)
        input_tokens, output_tokens = capped_estimate(
            request.limits, request.input_tokens, request.output_tokens
        )
        argv = [
            request.permit_id,
            request.limits.window_ms,
            input_tokens,
            output_tokens,
            request.pause_ms,
        ]
        paused_ms = await self._run(
            context, "settle_rate", self._coordination.rate_settle, rate_keys(request.limiter), argv
        )
        self._counted("settle_rate", "ok")
        return cache_pb2.SettleRateResponse(paused_ms=int(paused_ms))

    async def ReserveSpend(
        self, request: cache_pb2.ReserveSpendRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.ReserveSpendResponse:
        await _validate(context, check_reserve_spend, request)
        flat = await self._run(
            context, "reserve_spend", self._coordination.spend_reserve, spend_keys(request.scope),
            _spend_argv(request, request.lease_ms),
        )  # fmt: skip
        granted, refused_by, exhausted, retry_ms, *totals = flat
        self._counted("reserve_spend", "granted" if granted else "refused")
        return cache_pb2.ReserveSpendResponse(
            granted=bool(granted),
            refused_by=int(refused_by),
            exhausted=_text(exhausted),
            retry_after_ms=max(0, int(retry_ms)),
            totals=_totals(totals, request.limits),
        )

    async def SettleSpend(
        self, request: cache_pb2.SettleSpendRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.SettleSpendResponse:
        await _validate(context, check_settle_spend, request)
        flat = await self._run(
            context, "settle_spend", self._coordination.spend_settle, spend_keys(request.scope),
            _spend_argv(request, 0),
        )  # fmt: skip
        self._counted("settle_spend", "ok")
        return cache_pb2.SettleSpendResponse(totals=_totals(flat, request.limits))

    async def AcquireLease(
        self, request: cache_pb2.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LeaseResponse:
        return await self._lease(
            request, context, "acquire_lease", self._coordination.lease_acquire
        )

    async def RenewLease(
        self, request: cache_pb2.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LeaseResponse:
        return await self._lease(request, context, "renew_lease", self._coordination.lease_renew)

    async def ReleaseLease(
        self, request: cache_pb2.LeaseRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.LeaseResponse:
        return await self._lease(
            request, context, "release_lease", self._coordination.lease_release
        )

    async def _lease(
        self,
        request: cache_pb2.LeaseRequest,
        context: grpc.aio.ServicerContext,
        operation: str,
        script: Any,
    ) -> cache_pb2.LeaseResponse:
        needs_ttl = operation != "release_lease"
        await _validate(context, check_lease, request, needs_ttl)
        ttl = request.ttl_ms if needs_ttl else 0
        held, ttl_left = await self._run(
            context, operation, script, [lease_key(request.name)], [request.holder, ttl]
        )
        self._counted(operation, "held" if held else "lost")
        return cache_pb2.LeaseResponse(held=bool(held), ttl_ms=int(ttl_left))

    async def _run(
        self,
        context: grpc.aio.ServicerContext,
        operation: str,
        script: Any,
        keys: list[str],
        argv: list[Any],
    ) -> Any:
        """The script's answer; UNAVAILABLE or RESOURCE_EXHAUSTED when Redis fails."""
        try:
            if self._coordination.faults.active("cache_unavailable"):
                self._coordination.faults.count("cache_unavailable")
                raise RedisConnectionError("injected: cache_unavailable")
            return await script(keys=keys, args=argv)
        except RedisError as exc:
            await self._refuse(context, operation, exc)

    async def _refuse(
        self, context: grpc.aio.ServicerContext, operation: str, exc: RedisError
    ) -> NoReturn:
        if isinstance(exc, PoolExhausted):
            low, high = RETRY_AFTER_MS_RANGE
            retry_ms = int(min(high, max(low, 1000 * exc.wait_seconds)))
            self._counted(operation, "overloaded")
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"cache overloaded: {exc}; retry in {retry_ms} ms",
                trailing_metadata=(("retry-after-ms", str(retry_ms)),),
            )
        self._counted(operation, "error")
        # The exception's type only: never the URL, so never its password.
        log.warning("redis %s failed: %s", operation, type(exc).__name__)
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"redis unavailable: {type(exc).__name__}")
        raise AssertionError("unreachable: abort raises")

    def _counted(self, operation: str, result: str) -> None:
        self._coordination.requests.add(
            1, {"doppel.coordination.operation": operation, "doppel.coordination.result": result}
        )


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


async def _validate(context: grpc.aio.ServicerContext, check: Any, *args: object) -> None:
    try:
        check(*args)
    except InvalidRequest as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
