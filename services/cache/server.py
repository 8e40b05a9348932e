"""CacheService: namespaced get/set/delete with TTLs and hit statistics, on Redis.

Keys are `doppel:v1:{namespace}:{key}`. Statistics live in Redis too (a hash per namespace,
`doppel:v1:stats:{namespace}`), so they are shared by every replica and survive a restart of the
service. A lookup and its statistics update are one Lua call: one round trip per Get. REDIS_URL
(user, password, TLS) is read, checked at start and redacted for logs in
services/cache/redis_url.py.

Guarded: callers need the `service` role (Stats: `reader`; shared/roles.py), as on every
server. Namespaces that would reach the service's own keys are reserved (`stats`, `namespaces`,
and any starting with `_`, kept for internal keys to come): Get, GetMany, Set and Delete on one
get INVALID_ARGUMENT naming `namespace`.

Bounded: the Redis pool holds at most `max_concurrent_rpcs` connections (DOPPEL_MAX_CONCURRENT_RPCS,
so each call gRPC admits can have one); a command that finds none free within POOL_WAIT_SECONDS
(1 s) is answered RESOURCE_EXHAUSTED with trailing metadata `retry-after-ms` (the pool's wait
again), never left waiting and never given one connection more.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

import grpc
import redis.asyncio as aioredis
from opentelemetry import trace
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from doppelganger.v1 import cache_pb2, cache_pb2_grpc
from services.cache.coordination import CoordinationRpcs, CoordinationScripts
from services.cache.redis_url import (
    POOL_WAIT_SECONDS,
    PoolExhausted,
    check_redis,
    connect_redis,
    credentials_refused,
    refused_credentials,
)
from shared.config import Settings
from shared.server import ServiceServer, start_server
from shared.telemetry import Telemetry

log = logging.getLogger(__name__)

KEY_PREFIX = "doppel:v1"
NAMESPACES_KEY = f"{KEY_PREFIX}:namespaces"
NAMESPACE_PATTERN = re.compile(r"[a-z0-9_-]{1,64}")
# `stats` would address the statistics hashes (doppel:v1:stats:{namespace}); `namespaces` names
# the set of namespaces; `_` starts the names kept for the service's own keys to come.
RESERVED_NAMESPACES = frozenset({"stats", "namespaces"})
RESERVED_NAMESPACE_PREFIX = "_"
KEY_PATTERN = re.compile(r"[\x21-\x7e]{1,256}")
MAX_TTL_SECONDS = 365 * 24 * 3600
# The retry hint when the Redis pool stayed full for its whole wait: about as long again
# (POOL_WAIT_SECONDS, 1 s), within these bounds.
RETRY_AFTER_MS_RANGE = (100, 30_000)

# Returns {value or false, ttl}; counts the hit or miss in the namespace's stats hash.
GET_AND_COUNT = """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('HINCRBY', KEYS[2], 'hits', 1)
  return {value, redis.call('TTL', KEYS[1])}
end
redis.call('HINCRBY', KEYS[2], 'misses', 1)
return {false, -2}
"""

# GetMany: KEYS are the entries, then the stats hash; returns {value or false, ttl} per entry.
GET_MANY_AND_COUNT = """
local stats = KEYS[#KEYS]
local found, missed, out = 0, 0, {}
for i = 1, #KEYS - 1 do
  local value = redis.call('GET', KEYS[i])
  if value then
    found = found + 1
    out[#out + 1] = value
    out[#out + 1] = redis.call('TTL', KEYS[i])
  else
    missed = missed + 1
    out[#out + 1] = false
    out[#out + 1] = -2
  end
end
if found > 0 then redis.call('HINCRBY', stats, 'hits', found) end
if missed > 0 then redis.call('HINCRBY', stats, 'misses', missed) end
return out
"""
MAX_GET_MANY_KEYS = 64


class InvalidRequest(ValueError):
    """A request field breaks a documented limit; the message names the field."""


def entry_key(namespace: str, key: str) -> str:
    return f"{KEY_PREFIX}:{namespace}:{key}"


def stats_key(namespace: str) -> str:
    return f"{KEY_PREFIX}:stats:{namespace}"


def check_address(namespace: str, key: str) -> None:
    if not NAMESPACE_PATTERN.fullmatch(namespace):
        raise InvalidRequest("namespace must be 1-64 characters of [a-z0-9_-]")
    if namespace in RESERVED_NAMESPACES or namespace.startswith(RESERVED_NAMESPACE_PREFIX):
        raise InvalidRequest(
            f"namespace {namespace!r} is reserved for the cache's own keys (reserved: "
            f"{', '.join(sorted(RESERVED_NAMESPACES))} and names starting with "
            f"{RESERVED_NAMESPACE_PREFIX!r})"
        )
    if not KEY_PATTERN.fullmatch(key):
        raise InvalidRequest("key must be 1-256 printable ASCII characters without spaces")


def check_get_many(request: cache_pb2.GetManyRequest) -> None:
    if not 1 <= len(request.keys) <= MAX_GET_MANY_KEYS:
        raise InvalidRequest(f"keys must hold 1-{MAX_GET_MANY_KEYS} keys")
    for index, key in enumerate(request.keys):
        try:
            check_address(request.namespace, key)
        except InvalidRequest as exc:
            raise InvalidRequest(str(exc).replace("key must", f"keys[{index}] must")) from None


def check_set(request: cache_pb2.SetRequest, max_value_bytes: int) -> None:
    check_address(request.namespace, request.key)
    if len(request.value) > max_value_bytes:
        raise InvalidRequest(
            f"value is {len(request.value)} bytes; the limit is {max_value_bytes} bytes"
        )
    if not 0 <= request.ttl_seconds <= MAX_TTL_SECONDS:
        raise InvalidRequest(f"ttl_seconds must be between 0 and {MAX_TTL_SECONDS}")


class CacheService(CoordinationRpcs, cache_pb2_grpc.CacheServiceServicer):
    """The gRPC face of the Redis cache (and of the replicas' coordination, coordination.py)."""

    def __init__(self, client: aioredis.Redis, settings: Settings, telemetry: Telemetry) -> None:
        self._redis = client
        self._settings = settings
        self._faults = telemetry.faults
        self._get_and_count = client.register_script(GET_AND_COUNT)
        self._get_many_and_count = client.register_script(GET_MANY_AND_COUNT)
        self._coordination = CoordinationScripts.register(client, telemetry.faults, telemetry.meter)
        self._requests = telemetry.meter.create_counter(
            "doppel.cache.requests",
            unit="{request}",
            description=(
                "Cache requests by operation and result (hit, miss, ok, error, overloaded)."
            ),
        )

    async def Get(
        self, request: cache_pb2.GetRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.GetResponse:
        await _validate(context, check_address, request.namespace, request.key)
        try:
            self._injected_outage()
            value, ttl = await self._get_and_count(
                keys=[entry_key(request.namespace, request.key), stats_key(request.namespace)]
            )
        except RedisError as exc:
            await self._unavailable(context, "get", request.namespace, exc)
        found = value is not None
        self._count("get", "hit" if found else "miss", request.namespace)
        trace.get_current_span().set_attributes(
            {"doppel.cache.namespace": request.namespace, "doppel.cache.hit": found}
        )
        if not found:
            return cache_pb2.GetResponse(found=False)
        return cache_pb2.GetResponse(found=True, value=value, ttl_seconds=int(ttl))

    async def GetMany(
        self, request: cache_pb2.GetManyRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.GetManyResponse:
        await _validate(context, check_get_many, request)
        namespace = request.namespace
        keys = [entry_key(namespace, key) for key in request.keys]
        try:
            self._injected_outage()
            flat = await self._get_many_and_count(keys=[*keys, stats_key(namespace)])
        except RedisError as exc:
            await self._unavailable(context, "get", namespace, exc)
        budget = self._settings.cache_max_value_bytes  # So any client's default limit holds.
        response = _get_many_response(flat[0::2], flat[1::2], budget)
        hits = sum(entry.found for entry in response.entries)
        self._count("get", "hit", namespace, hits)
        self._count("get", "miss", namespace, len(keys) - hits)
        trace.get_current_span().set_attributes(
            {"doppel.cache.namespace": namespace, "doppel.cache.keys": len(keys),
             "doppel.cache.hits": hits}
        )  # fmt: skip
        return response

    async def Set(
        self, request: cache_pb2.SetRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.SetResponse:
        await _validate(context, check_set, request, self._settings.cache_max_value_bytes)
        ttl = request.ttl_seconds or self._settings.cache_ttl_seconds
        try:
            self._injected_outage()
            async with self._redis.pipeline(transaction=False) as pipe:
                key = entry_key(request.namespace, request.key)
                pipe.set(key, request.value, ex=ttl, nx=request.if_absent)
                pipe.hincrby(stats_key(request.namespace), "sets", 1)
                pipe.sadd(NAMESPACES_KEY, request.namespace)
                stored, *_ = await pipe.execute()
        except RedisError as exc:
            await self._unavailable(context, "set", request.namespace, exc)
        self._count("set", "ok", request.namespace)
        trace.get_current_span().set_attributes(
            {"doppel.cache.namespace": request.namespace, "doppel.cache.stored": bool(stored)}
        )
        return cache_pb2.SetResponse(stored=bool(stored))

    async def Delete(
        self, request: cache_pb2.DeleteRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.DeleteResponse:
        await _validate(context, check_address, request.namespace, request.key)
        try:
            self._injected_outage()
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.delete(entry_key(request.namespace, request.key))
                pipe.hincrby(stats_key(request.namespace), "deletes", 1)
                deleted, _ = await pipe.execute()
        except RedisError as exc:
            await self._unavailable(context, "delete", request.namespace, exc)
        self._count("delete", "ok", request.namespace)
        return cache_pb2.DeleteResponse(deleted=bool(deleted))

    async def Stats(
        self, request: cache_pb2.StatsRequest, context: grpc.aio.ServicerContext
    ) -> cache_pb2.StatsResponse:
        try:
            return await self._stats()
        except RedisError as exc:
            await self._unavailable(context, "stats", "", exc)
            raise  # unreachable: abort raises

    async def _stats(self) -> cache_pb2.StatsResponse:
        names = sorted(_text(name) for name in await self._redis.smembers(NAMESPACES_KEY))
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hgetall(stats_key(name))
            pipe.dbsize()
            pipe.info("memory")
            # A hash answering WRONGTYPE (a value Set into `stats` before that namespace was
            # reserved) costs its namespace's line, not the whole answer.
            *hashes, keys, memory = await pipe.execute(raise_on_error=False)
        for result in (keys, memory):
            if isinstance(result, Exception):
                raise result
        response = cache_pb2.StatsResponse(keys=keys, used_memory_bytes=memory["used_memory"])
        for name, counts in zip(names, hashes, strict=True):
            if isinstance(counts, Exception):
                why = type(counts).__name__
                log.warning("cache stats of namespace %s unreadable: %s", name, why)
                continue
            ns = cache_pb2.NamespaceStats(
                namespace=name, **{_text(k): int(v) for k, v in counts.items()}
            )
            response.namespaces.append(ns)
            response.hits += ns.hits
            response.misses += ns.misses
            response.sets += ns.sets
            response.deletes += ns.deletes
        lookups = response.hits + response.misses
        response.hit_rate = response.hits / lookups if lookups else 0.0
        return response

    def _count(self, operation: str, result: str, namespace: str, requests: int = 1) -> None:
        if requests <= 0:
            return
        self._requests.add(
            requests,
            {
                "doppel.cache.operation": operation,
                "doppel.cache.result": result,
                "doppel.cache.namespace": namespace,
            },
        )

    def _injected_outage(self) -> None:
        """Fault switch `cache_unavailable`: Redis fails as if it were down."""
        if self._faults.active("cache_unavailable"):
            self._faults.count("cache_unavailable")
            raise RedisConnectionError("injected: cache_unavailable")

    async def _unavailable(
        self, context: grpc.aio.ServicerContext, operation: str, namespace: str, exc: RedisError
    ) -> None:
        if isinstance(exc, PoolExhausted):
            await self._refuse_overload(context, operation, namespace, exc)
        self._count(operation, "error", namespace)
        # Only the exception's type and fixed text: never the URL, so never its password.
        why = type(exc).__name__
        if refused_credentials(exc):
            why = f"AuthenticationError: {credentials_refused(self._settings.redis_url)}"
        log.warning("redis %s failed: %s", operation, why)
        await context.abort(grpc.StatusCode.UNAVAILABLE, f"redis unavailable: {why}")

    async def _refuse_overload(
        self,
        context: grpc.aio.ServicerContext,
        operation: str,
        namespace: str,
        exc: PoolExhausted,
    ) -> None:
        """RESOURCE_EXHAUSTED with a retry hint: the pool stayed full for its whole wait, so
        about that long again."""
        low, high = RETRY_AFTER_MS_RANGE
        retry_ms = int(min(high, max(low, 1000 * exc.wait_seconds)))
        self._count(operation, "overloaded", namespace)
        trace.get_current_span().set_attribute("doppel.retry_after_ms", retry_ms)
        log.warning("redis %s refused: %s", operation, exc)
        await context.abort(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"cache overloaded: {exc}; retry in {retry_ms} ms",
            trailing_metadata=(("retry-after-ms", str(retry_ms)),),
        )


def _get_many_response(
    values: list[bytes | None], ttls: list[int], budget: int
) -> cache_pb2.GetManyResponse:
    """Entries in order; values past `budget` bytes in all are left out as not found."""
    response = cache_pb2.GetManyResponse()
    for value, ttl in zip(values, ttls, strict=True):
        if value is None:
            response.entries.add(found=False)
        elif len(value) > budget:
            response.entries.add(found=False)
            response.omitted += 1
        else:
            budget -= len(value)
            response.entries.add(found=True, value=value, ttl_seconds=int(ttl))
    return response


def _text(value: bytes | str) -> str:
    """Redis answers bytes (the client does not decode, values are binary)."""
    return value.decode() if isinstance(value, bytes) else value


async def _validate(
    context: grpc.aio.ServicerContext, check: Callable[..., None], *args: object
) -> None:
    try:
        check(*args)
    except InvalidRequest as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))


async def create_cache_server(
    settings: Settings,
    telemetry: Telemetry,
    *,
    pool_connections: int | None = None,
    pool_wait_seconds: float = POOL_WAIT_SECONDS,
) -> ServiceServer:
    """The cache service on `settings.cache_port`, backed by `settings.redis_url` through a pool
    of `pool_connections` (default: `settings.max_concurrent_rpcs`) Redis connections.

    Raises OSError when REDIS_URL is unset or unusable, or Redis refuses its credentials.
    """
    if not settings.redis_url:
        raise OSError("cache: REDIS_URL is not set (doppel up starts a private Redis for you)")
    client = connect_redis(
        settings.redis_url,
        max_connections=(
            settings.max_concurrent_rpcs if pool_connections is None else pool_connections
        ),
        pool_wait_seconds=pool_wait_seconds,
    )
    try:
        await check_redis(client, settings.redis_url)
    except OSError:
        await client.aclose()
        raise

    def register(server: grpc.aio.Server) -> list[str]:
        cache_pb2_grpc.add_CacheServiceServicer_to_server(
            CacheService(client, settings, telemetry), server
        )
        return [cache_pb2.DESCRIPTOR.services_by_name["CacheService"].full_name]

    async def close_redis() -> None:
        await client.aclose()

    return await start_server(
        name="cache",
        settings=settings,
        telemetry=telemetry,
        port=settings.cache_port,
        register=register,
        cleanups=[close_redis],
    )
