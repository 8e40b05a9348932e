"""REDIS_URL: the cache's Redis client, its start-up check, and the URL as it may be logged.

REDIS_URL goes to redis-py unchanged (`redis://`, `rediss://` for TLS, `unix://`; user and
password in the URL, TLS options such as `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
`ssl_cert_reqs` as query parameters). Only `redact_url(url)` is ever logged: the password is
replaced by `***`, wherever it is (`redis://:pw@host`, `redis://user:pw@host`, and query
parameters such as `?password=pw` or `ssl_password=pw`), and `Settings` keeps REDIS_URL out of
its repr. At start the cache pings Redis once: credentials Redis refuses stop the service
with a message saying so (a configuration error that waiting will not fix); a Redis that cannot be
reached yet is logged, and calls fail UNAVAILABLE until it can.

The client's connections come from a `BoundedPool`: at most `max_connections` (the cache sizes it
to DOPPEL_MAX_CONCURRENT_RPCS, so every admitted call can hold one), and a command that finds them
all busy waits up to `POOL_WAIT_SECONDS` for one, then fails with `PoolExhausted` (which the
service answers RESOURCE_EXHAUSTED with a retry hint) instead of opening one more connection or
failing at once as redis-py's default pool does.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import unquote, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

STARTUP_PING_SECONDS = 5.0
REDACTED = "***"
# How long a command waits for a free pooled connection before PoolExhausted. Short: a Redis
# command takes well under a millisecond, so a pool still full after a second means Redis is
# slow or stuck, and the caller is better told so (with a retry hint) than kept waiting.
POOL_WAIT_SECONDS = 1.0


class PoolExhausted(RedisConnectionError):
    """Every pooled connection stayed busy for the pool's whole wait (not a Redis failure)."""

    def __init__(self, max_connections: int, wait_seconds: float) -> None:
        super().__init__(
            f"all {max_connections} Redis connections stayed busy for {wait_seconds:g} s"
        )
        self.wait_seconds = wait_seconds


class BoundedPool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, with its wait timeout told apart from connection errors."""

    async def get_connection(self, *args: object, **kwargs: object) -> Connection:
        try:
            return await super().get_connection(*args, **kwargs)  # type: ignore[no-any-return]
        except RedisConnectionError as exc:
            # The pool raises ConnectionError("No connection available.") from the expired wait
            # (a builtin TimeoutError); a failed connect raises redis' own TimeoutError or a
            # ConnectionError from an OSError instead.
            if isinstance(exc.__cause__, TimeoutError):
                raise PoolExhausted(self.max_connections, self.timeout or 0.0) from exc
            raise


# Query parameters whose value is a secret: redis-py passes `password`, `ssl_password` and any
# other parameter to the connection as it is.
SECRET_PARAMETER_WORDS = ("password", "secret", "token")


def _redact_query(query: str) -> str:
    items = []
    for item in query.split("&"):
        name, sep, _ = item.partition("=")
        secret = any(word in unquote(name).lower() for word in SECRET_PARAMETER_WORDS)
        items.append(f"{name}={REDACTED}" if sep and secret else item)
    return "&".join(items)


def redact_url(url: str) -> str:
    """`url` with every password replaced by `***` (user, host, path and the other query
    parameters kept)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable REDIS_URL>"
    if parts.query:
        parts = parts._replace(query=_redact_query(parts.query))
    if password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}:{REDACTED}@{hostinfo}")
    return urlunsplit(parts)


def _has_password(url: str) -> bool:
    try:
        parts = urlsplit(url)
        in_query = _redact_query(parts.query) != parts.query
        return parts.password is not None or in_query
    except ValueError:
        return False


def credentials_refused(url: str) -> str:
    """What to say when Redis refuses the credentials of `url` (never the password)."""
    if _has_password(url):
        return "Redis refused the user/password in REDIS_URL (wrong password, or user disabled)"
    return "Redis requires a password and REDIS_URL has none (redis://:PASSWORD@host:port/db)"


def refused_credentials(exc: BaseException) -> bool:
    """Whether Redis refused the credentials: redis-py may wrap the AuthenticationError of the
    log-in on a new connection in a ConnectionError, so the causes are searched too."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return False
        if isinstance(seen, AuthenticationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def connect_redis(
    url: str, *, max_connections: int, pool_wait_seconds: float = POOL_WAIT_SECONDS
) -> aioredis.Redis:
    """A client that reconnects by itself after Redis restarts, on a `BoundedPool` of
    `max_connections` that waits `pool_wait_seconds` for a free one. Raises OSError for a URL
    that redis-py cannot use (its message, never the URL)."""
    if max_connections < 1 or pool_wait_seconds <= 0:
        raise ValueError("the Redis pool needs at least one connection and a positive wait")
    try:
        pool = BoundedPool.from_url(
            url,
            max_connections=max_connections,
            timeout=pool_wait_seconds,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            # No idle health check: redis-py 8.1 runs it inside a new connection's own log-in,
            # and when Redis refuses that log-in (NOAUTH) the check reconnects, logs in, checks
            # again... recursing until the caller's timeout (a start that hung for minutes). A
            # connection that went stale while idle fails its command, which the retry below
            # repeats on a fresh connection.
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
    except ValueError as exc:
        raise OSError(f"cache: REDIS_URL {redact_url(url)} is not usable: {exc}") from None
    return aioredis.Redis.from_pool(pool)  # The client closes the pool with itself.


async def check_redis(client: aioredis.Redis, url: str) -> None:
    """Pings Redis once. Raises OSError when it refuses the credentials; logs when it is
    unreachable (the service starts anyway and reconnects)."""
    where = redact_url(url)
    try:
        await asyncio.wait_for(client.ping(), STARTUP_PING_SECONDS)
    except (RedisError, TimeoutError) as exc:
        if refused_credentials(exc):
            raise OSError(f"cache: {credentials_refused(url)}; Redis at {where}") from None
        log.warning(
            "cache: Redis at %s not reachable yet (%s); calls fail UNAVAILABLE until it is",
            where,
            type(exc).__name__,
        )
        return
    log.info("cache: Redis at %s", where)
