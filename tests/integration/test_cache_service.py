"""CacheService against a real redis-server process, through a real gRPC channel."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
import pytest
import redis

from doppelganger.v1 import cache_pb2, cache_pb2_grpc
from services.cache.server import MAX_GET_MANY_KEYS, create_cache_server, entry_key
from shared.config import Settings
from shared.redis_server import RedisServer
from shared.server import ServiceServer
from shared.telemetry import Telemetry


@pytest.fixture
async def cache_server(
    settings: Settings, redis_server: RedisServer
) -> AsyncIterator[ServiceServer]:
    config = settings.with_changes(redis_url=redis_server.url, cache_max_value_bytes=1024)
    server = await create_cache_server(config, Telemetry("cache", config))
    yield server
    await server.stop(0)


@pytest.fixture
async def cache(cache_server: ServiceServer) -> AsyncIterator[cache_pb2_grpc.CacheServiceStub]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{cache_server.port}") as channel:
        yield cache_pb2_grpc.CacheServiceStub(channel)


async def test_set_get_delete_round_trip(
    cache: cache_pb2_grpc.CacheServiceStub, redis_server: RedisServer
) -> None:
    await cache.Set(cache_pb2.SetRequest(namespace="rt", key="k1", value=b"v1", ttl_seconds=60))
    got = await cache.Get(cache_pb2.GetRequest(namespace="rt", key="k1"))
    assert got.found and got.value == b"v1"
    assert 0 < got.ttl_seconds <= 60
    # The value really is in Redis, under the documented key.
    direct = redis.Redis(unix_socket_path=str(redis_server.socket_path))
    assert direct.get(entry_key("rt", "k1")) == b"v1"
    direct.close()
    deleted = await cache.Delete(cache_pb2.DeleteRequest(namespace="rt", key="k1"))
    assert deleted.deleted
    assert not (await cache.Get(cache_pb2.GetRequest(namespace="rt", key="k1"))).found
    again = await cache.Delete(cache_pb2.DeleteRequest(namespace="rt", key="k1"))
    assert not again.deleted


async def test_set_if_absent_keeps_the_first_value(cache: cache_pb2_grpc.CacheServiceStub) -> None:
    first = cache_pb2.SetRequest(namespace="claims", key="job-1", value=b"ep-a", if_absent=True)
    second = cache_pb2.SetRequest(namespace="claims", key="job-1", value=b"ep-b", if_absent=True)
    assert (await cache.Set(first)).stored
    assert not (await cache.Set(second)).stored
    got = await cache.Get(cache_pb2.GetRequest(namespace="claims", key="job-1"))
    assert got.value == b"ep-a"
    plain = cache_pb2.SetRequest(namespace="claims", key="job-1", value=b"ep-c")
    assert (await cache.Set(plain)).stored  # Without if_absent a set overwrites, as before.


async def test_namespaces_are_separate_and_counted(cache: cache_pb2_grpc.CacheServiceStub) -> None:
    await cache.Set(cache_pb2.SetRequest(namespace="ns-a", key="same", value=b"a"))
    await cache.Set(cache_pb2.SetRequest(namespace="ns-b", key="same", value=b"b"))
    a = await cache.Get(cache_pb2.GetRequest(namespace="ns-a", key="same"))
    b = await cache.Get(cache_pb2.GetRequest(namespace="ns-b", key="same"))
    await cache.Get(cache_pb2.GetRequest(namespace="ns-a", key="absent"))
    assert (a.value, b.value) == (b"a", b"b")
    stats = await cache.Stats(cache_pb2.StatsRequest())
    by_name = {ns.namespace: ns for ns in stats.namespaces}
    assert (by_name["ns-a"].hits, by_name["ns-a"].misses, by_name["ns-a"].sets) == (1, 1, 1)
    assert (by_name["ns-b"].hits, by_name["ns-b"].misses) == (1, 0)
    assert stats.hits >= 2 and stats.misses >= 1
    assert 0 < stats.hit_rate < 1
    assert stats.keys >= 2 and stats.used_memory_bytes > 0


async def test_get_many_answers_in_order_and_counts_each_lookup(
    cache: cache_pb2_grpc.CacheServiceStub,
) -> None:
    for key in ("one", "three"):
        await cache.Set(cache_pb2.SetRequest(namespace="many", key=key, value=key.encode()))
    keys = ["one", "two", "three", "four"]
    got = await cache.GetMany(cache_pb2.GetManyRequest(namespace="many", keys=keys))
    assert [(e.found, e.value) for e in got.entries] == [
        (True, b"one"), (False, b""), (True, b"three"), (False, b""),
    ]  # fmt: skip
    assert got.omitted == 0 and all(e.ttl_seconds > 0 for e in got.entries if e.found)
    stats = await cache.Stats(cache_pb2.StatsRequest())
    (many,) = [ns for ns in stats.namespaces if ns.namespace == "many"]
    assert (many.hits, many.misses) == (2, 2)


async def test_get_many_refuses_bad_keys_by_index_and_too_many(
    cache: cache_pb2_grpc.CacheServiceStub,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as bad_key:
        await cache.GetMany(cache_pb2.GetManyRequest(namespace="many", keys=["ok", "has space"]))
    assert bad_key.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "keys[1]" in (bad_key.value.details() or "")
    for keys in ([], [f"k{i}" for i in range(MAX_GET_MANY_KEYS + 1)]):
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await cache.GetMany(cache_pb2.GetManyRequest(namespace="many", keys=keys))
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"1-{MAX_GET_MANY_KEYS} keys" in (refused.value.details() or "")


async def test_get_many_leaves_out_values_past_its_byte_budget(
    settings: Settings, redis_server: RedisServer
) -> None:
    size = 1_200_000  # Two fit in an answer (at most the value size limit in all); three do not.
    config = settings.with_changes(redis_url=redis_server.url, cache_max_value_bytes=3_000_000)
    server = await create_cache_server(config, Telemetry("cache", config))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = cache_pb2_grpc.CacheServiceStub(channel)
            for key in ("a", "b", "c"):
                value = key.encode() * size
                await stub.Set(cache_pb2.SetRequest(namespace="big", key=key, value=value))
            got = await stub.GetMany(
                cache_pb2.GetManyRequest(namespace="big", keys=["a", "b", "c"])
            )
    finally:
        await server.stop(0)
    assert [e.found for e in got.entries] == [True, True, False]
    assert got.omitted == 1 and got.entries[1].value == b"b" * size


async def test_ttl_expires_entries(cache: cache_pb2_grpc.CacheServiceStub) -> None:
    await cache.Set(cache_pb2.SetRequest(namespace="ttl", key="short", value=b"x", ttl_seconds=1))
    got = await cache.Get(cache_pb2.GetRequest(namespace="ttl", key="short"))
    assert got.found and got.ttl_seconds in (0, 1)


@pytest.mark.parametrize(
    ("request_message", "field"),
    [
        (cache_pb2.SetRequest(namespace="", key="k", value=b"v"), "namespace"),
        (cache_pb2.SetRequest(namespace="Bad Name", key="k", value=b"v"), "namespace"),
        (cache_pb2.SetRequest(namespace="ok", key="", value=b"v"), "key"),
        (cache_pb2.SetRequest(namespace="ok", key="k" * 257, value=b"v"), "key"),
        (cache_pb2.SetRequest(namespace="ok", key="k", value=b"v" * 1025), "value"),
        (cache_pb2.SetRequest(namespace="ok", key="k", value=b"v", ttl_seconds=-1), "ttl_seconds"),
    ],
)
async def test_bad_requests_name_the_field(
    cache: cache_pb2_grpc.CacheServiceStub, request_message: cache_pb2.SetRequest, field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await cache.Set(request_message)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert field in (raised.value.details() or "")
    # Nothing was written, and the service still answers.
    got = await cache.Get(cache_pb2.GetRequest(namespace="ok", key="k"))
    assert not got.found


async def test_redis_down_gives_unavailable(settings: Settings) -> None:
    with RedisServer() as private:
        config = settings.with_changes(redis_url=private.url)
        server = await create_cache_server(config, Telemetry("cache", config))
        private.stop()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = cache_pb2_grpc.CacheServiceStub(channel)
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await stub.Get(cache_pb2.GetRequest(namespace="x", key="y"))
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE
            assert "redis unavailable" in (raised.value.details() or "")
        finally:
            await server.stop(0)


async def test_full_redis_pool_waits_then_refuses_with_a_retry_hint(settings: Settings) -> None:
    """Two pooled connections, five concurrent Sets on a Redis paused for writes: two Sets hold
    the connections (stuck in the paused Redis), three wait for one, and once the pool's wait
    expires are refused RESOURCE_EXHAUSTED with `retry-after-ms`; no third connection is opened.
    Unpaused, the two held Sets complete and the service answers as before."""
    with RedisServer() as private:
        config = settings.with_changes(redis_url=private.url)
        server = await create_cache_server(
            config, Telemetry("cache", config), pool_connections=2, pool_wait_seconds=0.25
        )
        direct = redis.Redis(unix_socket_path=str(private.socket_path))
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                stub = cache_pb2_grpc.CacheServiceStub(channel)
                direct.client_pause(600_000, all=False)  # WRITE mode: writes wait, reads run.
                try:
                    keys = {
                        asyncio.ensure_future(
                            stub.Set(
                                cache_pb2.SetRequest(namespace="pool", key=f"k{n}", value=b"v")
                            )
                        ): f"k{n}"
                        for n in range(5)
                    }
                    done: set[asyncio.Future[cache_pb2.SetResponse]] = set()
                    pending = set(keys)
                    while len(done) < 3:
                        finished, pending = await asyncio.wait(
                            pending, return_when=asyncio.FIRST_COMPLETED
                        )
                        done |= finished
                    assert len(done) == 3 and len(pending) == 2
                    for call in done:
                        error = call.exception()
                        assert isinstance(error, grpc.aio.AioRpcError)
                        assert error.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
                        assert "2 Redis connections" in (error.details() or "")
                        hint = dict(error.trailing_metadata() or ())["retry-after-ms"]
                        assert int(hint) == 250  # The pool's wait: about when to try again.
                    # The pool opened exactly its two connections (plus this test's own one).
                    own = direct.client_id()
                    others = [c for c in direct.client_list() if int(c["id"]) != own]
                    assert len(others) == 2
                finally:
                    direct.client_unpause()
                # The two held Sets complete once Redis resumes, and their values are there.
                assert await asyncio.gather(*pending) == [cache_pb2.SetResponse(stored=True)] * 2
                held = sorted(keys[call] for call in pending)
                stored = [n for n in range(5) if direct.exists(entry_key("pool", f"k{n}"))]
                assert sorted(f"k{n}" for n in stored) == held
                got = await stub.Get(cache_pb2.GetRequest(namespace="pool", key=held[0]))
                assert got.found and got.value == b"v"
                await stub.Set(cache_pb2.SetRequest(namespace="pool", key="after", value=b"ok"))
                after = await stub.Get(cache_pb2.GetRequest(namespace="pool", key="after"))
                assert after.found and after.value == b"ok"
        finally:
            direct.close()
            await server.stop(0)
