"""The script service's view of the cache: content-addressed keys and calls that fail soft.

A cache that is down or slow must not stop an episode, so every call here returns None (or does
nothing) on failure, records why on the current span, and counts it.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from opentelemetry import trace

from doppelganger.v1 import cache_pb2, cache_pb2_grpc

log = logging.getLogger(__name__)

OUTLINES = "outlines"
SCENES = "scenes"
EPISODES = "episodes"
REQUESTS = "requests"
PART_USAGE = "part_usage"  # Who wrote a cached part and what it cost, under the part's key.


def content_key(*parts: Any) -> str:
    """SHA-256 of everything that shapes an output; the same inputs give the same key."""
    encoded = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(encoded.encode()).hexdigest()


class SoftCache:
    """Get and set through CacheService; failures are logged, counted and swallowed."""

    def __init__(self, stub: cache_pb2_grpc.CacheServiceStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout
        self.failures = 0

    async def get(self, namespace: str, key: str) -> bytes | None:
        try:
            response = await self._stub.Get(
                cache_pb2.GetRequest(namespace=namespace, key=key), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            self._failed("get", namespace, exc)
            return None
        return response.value if response.found else None

    async def get_many(self, namespace: str, keys: Sequence[str]) -> list[bytes | None]:
        """Values of `keys` in order (None: absent), in one call; all None when it fails."""
        if not keys:
            return []
        try:
            response = await self._stub.GetMany(
                cache_pb2.GetManyRequest(namespace=namespace, keys=keys), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as exc:
            self._failed("get", namespace, exc)
            return [None] * len(keys)
        return [entry.value if entry.found else None for entry in response.entries]

    async def set(self, namespace: str, key: str, value: bytes, ttl_seconds: int = 0) -> None:
        try:
            await self._stub.Set(
                cache_pb2.SetRequest(
                    namespace=namespace, key=key, value=value, ttl_seconds=ttl_seconds
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as exc:
            self._failed("set", namespace, exc)

    async def claim(self, namespace: str, key: str, value: bytes) -> bytes | None:
        """Stores `value` unless the key has one (atomically); returns the value that was
        already there, or None when this call stored it or the cache is unavailable."""
        request = cache_pb2.SetRequest(namespace=namespace, key=key, value=value, if_absent=True)
        try:
            response = await self._stub.Set(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as exc:
            self._failed("set", namespace, exc)
            return None
        if response.stored:
            return None
        return await self.get(namespace, key)

    def _failed(self, operation: str, namespace: str, exc: grpc.aio.AioRpcError) -> None:
        self.failures += 1
        log.warning("cache %s %s failed: %s", operation, namespace, exc.code().name)
        trace.get_current_span().add_event(
            "cache.unavailable",
            {"doppel.cache.operation": operation, "rpc.status_code": exc.code().name},
        )
