"""REDIS_URL: the cache's Redis client, its start-up check, and the URL as it may be logged.

REDIS_URL goes to redis-py unchanged (`redis://`, `rediss://` for TLS, `unix://`; user and
password in the URL, TLS options such as `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile`,
`ssl_cert_reqs` as query parameters). Only `redact_url(url)` is ever logged: the password is
replaced by `***`. At start the cache pings Redis once: credentials Redis refuses stop the service
with a message saying so (a configuration error that waiting will not fix); a Redis that cannot be
reached yet is logged, and calls fail UNAVAILABLE until it can.
"""

from __future__ import annotations

import asyncio
import logging
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import AuthenticationError, RedisError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

STARTUP_PING_SECONDS = 5.0
REDACTED = "***"


def redact_url(url: str) -> str:
    """`url` with its password replaced by `***` (user, host, path and query kept)."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return "<unparseable REDIS_URL>"
    if password is None:
        return url
    userinfo, _, hostinfo = parts.netloc.rpartition("@")
    user = userinfo.partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{user}:{REDACTED}@{hostinfo}"))


def credentials_refused(url: str) -> str:
    """What to say when Redis refuses the credentials of `url` (never the password)."""
    try:
        has_password = urlsplit(url).password is not None
    except ValueError:
        has_password = False
    if has_password:
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


def connect_redis(url: str) -> aioredis.Redis:
    """A client that reconnects by itself after Redis restarts. Raises OSError for a URL that
    redis-py cannot use (its message, never the URL)."""
    try:
        return aioredis.from_url(
            url,
            socket_timeout=5.0,
            socket_connect_timeout=2.0,
            health_check_interval=30,
            retry=Retry(ExponentialBackoff(cap=1.0, base=0.05), retries=3),
            retry_on_error=[RedisConnectionError, RedisTimeoutError],
        )
    except ValueError as exc:
        raise OSError(f"cache: REDIS_URL {redact_url(url)} is not usable: {exc}") from None


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
