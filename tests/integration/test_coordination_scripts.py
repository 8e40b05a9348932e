"""The coordination Lua scripts' logic, run on a real redis-server (no fake).

Each test uses its own limiter, scope or lease name. Pacing (grants window / requests apart) is
tested on its own; tests of the other rules clear the pacing state between grants (`unpace`)
rather than sleep through it. Nothing here waits for wall time except for expiries, which are
polled for with a deadline.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis.crc import key_slot

from services.cache import coordination_lua as lua
from services.cache.coordination import lease_key, rate_keys, spend_keys
from shared.redis_server import RedisServer
from testkit import eventually_sync

LONG = 60_000  # ms: a window no test outlives


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(redis_server.url)
    yield connection
    connection.close()


class Limiter:
    """One limiter's scripts, with its limits."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        window: int = LONG,
        requests: int = 100,
        tokens: int = 0,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        self.name = f"test:{uuid.uuid4().hex[:12]}:m"
        self.keys = rate_keys(self.name)
        self.client = client
        self.window, self.requests = window, requests
        self.limits = (tokens, input_tokens, output_tokens)
        self._acquire = client.register_script(lua.RATE_ACQUIRE)
        self._settle = client.register_script(lua.RATE_SETTLE)

    def acquire(self, permit: str, tokens_in: int = 0, tokens_out: int = 0,
                lease: int = LONG) -> tuple[bool, int, str]:  # fmt: skip
        granted, wait, reason, _ = self._acquire(
            keys=self.keys,
            args=[permit, self.window, self.requests, *self.limits, tokens_in, tokens_out, lease],
        )
        return bool(granted), int(wait), reason.decode()

    def settle(self, permit: str, used_in: int = 0, used_out: int = 0, pause: int = 0) -> int:
        return int(self._settle(keys=self.keys, args=[permit, self.window, used_in, used_out,
                                                      pause]))  # fmt: skip

    def unpace(self) -> None:
        self.client.hdel(self.keys[3], "tat")


def test_the_keys_of_one_script_share_a_cluster_slot() -> None:
    for keys in (rate_keys("anthropic:0123abcd:claude-x"), spend_keys("caller:abc")):
        assert len({key_slot(key.encode()) for key in keys}) == 1
        assert all("{" in key and "}" in key for key in keys)
    assert "{lease:episode:ep-1}" in lease_key("episode:ep-1")


def test_grants_are_paced_a_window_over_the_limit_apart(client: redis.Redis) -> None:
    limiter = Limiter(client, window=LONG, requests=4)
    assert limiter.acquire("a")[0]
    granted, wait, reason = limiter.acquire("b")
    assert not granted and reason == "pacing"
    assert 0 < wait <= LONG / 4


def test_no_more_than_the_limit_in_flight_or_finished_within_a_window(
    client: redis.Redis,
) -> None:
    limiter = Limiter(client, window=LONG, requests=2)
    for permit in ("a", "b"):
        assert limiter.acquire(permit)[0]
        limiter.unpace()
    granted, wait, reason = limiter.acquire("c")
    # Both in flight: only one finishing frees a slot, one window after it finished.
    assert (granted, wait, reason) == (False, LONG, "requests")
    limiter.settle("a")
    granted, wait, reason = limiter.acquire("c")
    assert not granted and reason == "requests" and LONG - 5_000 < wait <= LONG


def test_a_retried_acquire_is_not_counted_twice(client: redis.Redis) -> None:
    limiter = Limiter(client, requests=3)
    assert limiter.acquire("a")[0]
    assert limiter.acquire("a")[0]  # The same permit again (a retried call): granted, once.
    assert client.zcard(limiter.keys[0]) == 1


def test_a_permit_never_settled_comes_back_when_its_lease_ends(client: redis.Redis) -> None:
    limiter = Limiter(client, window=50, requests=1)
    assert limiter.acquire("dead-replica", lease=100)[0]
    limiter.unpace()
    assert limiter.acquire("next")[2] == "requests"

    def granted() -> bool:
        limiter.unpace()
        return limiter.acquire("next")[0]

    eventually_sync(granted)  # Lease over (it counts as finished then), then one window.
    assert client.zscore(limiter.keys[0], "dead-replica") is None


def test_tokens_are_held_until_settled_then_corrected(client: redis.Redis) -> None:
    limiter = Limiter(client, requests=100, tokens=100)
    assert limiter.acquire("a", 60)[0]
    limiter.unpace()
    granted, wait, reason = limiter.acquire("b", 60)
    assert not granted and reason == "tokens"
    assert wait <= LONG / 20  # Asks again soon: a settle may free tokens.
    limiter.settle("a", 10)  # It really used 10.
    assert limiter.acquire("b", 60)[0]
    limiter.unpace()
    granted, wait, reason = limiter.acquire("c", 60)  # 10 finished + 60 in flight + 60 > 100
    assert not granted and reason == "tokens"
    limiter.settle("b", 50)
    granted, wait, reason = limiter.acquire("c", 60)  # 60 finished: only their leaving helps.
    assert not granted and reason == "tokens" and LONG - 5_000 < wait <= LONG


def test_input_and_output_tokens_have_their_own_limits(client: redis.Redis) -> None:
    limiter = Limiter(client, requests=100, tokens=1_000, input_tokens=100, output_tokens=50)
    assert limiter.acquire("a", 10, 40)[0]
    limiter.unpace()
    assert limiter.acquire("b", 10, 20)[2] == "output_tokens"
    assert limiter.acquire("b", 95, 0)[2] == "input_tokens"
    assert limiter.acquire("b", 90, 10)[0]


def test_a_pause_holds_every_grant_and_is_never_shortened(client: redis.Redis) -> None:
    limiter = Limiter(client, requests=100)
    assert limiter.acquire("a")[0]
    assert limiter.settle("a", pause=30_000) > 29_000
    limiter.unpace()
    granted, wait, reason = limiter.acquire("b")
    assert not granted and reason == "paused" and 29_000 < wait <= 30_000
    assert limiter.acquire("c")[0] is False
    assert limiter.settle("x", pause=10) > 29_000  # A shorter pause does not lower it.


def test_a_settle_after_the_lease_ended_counts_from_then(client: redis.Redis) -> None:
    limiter = Limiter(client, window=LONG, requests=1)
    assert limiter.acquire("slow", 100, lease=1)[0]

    def lease_over() -> bool:
        limiter.acquire("probe")  # Refused (one slot), but it moves an expired lease along.
        return client.zscore(limiter.keys[0], "slow") is None

    eventually_sync(lease_over)
    assert client.zscore(limiter.keys[1], "slow") is not None  # Finished at its lease's end.
    limiter.settle("slow", 7)  # It still settles, once.
    assert client.zcard(limiter.keys[1]) == 1 and client.zcard(limiter.keys[0]) == 0
    assert client.hget(limiter.keys[2], "slow") == b"7 0"


class Scope:
    """One spending scope's scripts."""

    def __init__(self, client: redis.Redis) -> None:
        self.keys = spend_keys(f"test:{uuid.uuid4().hex[:12]}")
        self._reserve = client.register_script(lua.SPEND_RESERVE)
        self._settle = client.register_script(lua.SPEND_SETTLE)

    @staticmethod
    def _limits(limits: list[tuple[int, int, float]]) -> list[Any]:
        flat: list[Any] = [len(limits)]
        for period, tokens, cost in limits:
            flat += [period, tokens, f"{cost:.9f}"]
        return flat

    def reserve(self, rid: str, tokens: int, cost: float, limits: list[tuple[int, int, float]],
                lease: int = LONG) -> list[Any]:  # fmt: skip
        args = [rid, tokens, f"{cost:.9f}", lease, 3_600_000, *self._limits(limits)]
        return list(self._reserve(keys=self.keys, args=args))

    def settle(self, rid: str, tokens: int, cost: float,
               limits: list[tuple[int, int, float]]) -> list[Any]:  # fmt: skip
        args = [rid, tokens, f"{cost:.9f}", 0, 3_600_000, *self._limits(limits)]
        return list(self._settle(keys=self.keys, args=args))


def test_a_reservation_past_a_lifetime_limit_is_refused_and_settles_correct_it(
    client: redis.Redis,
) -> None:
    scope, limits = Scope(client), [(0, 10_000, 0.0)]
    assert scope.reserve("a", 6_000, 0.0, limits)[0] == 1
    refused = scope.reserve("b", 6_000, 0.0, limits)
    assert refused[:4] == [0, 0, b"tokens", 0]  # No period: only settling can free it.
    assert scope.settle("a", 2_000, 0.0, limits)[:2] == [2_000, 0]
    assert scope.reserve("b", 6_000, 0.0, limits)[0] == 1
    totals = scope.settle("b", 7_000, 0.0, limits)
    assert totals[:2] == [9_000, 0]
    assert scope.reserve("c", 1_001, 0.0, limits)[0] == 0


def test_cost_limits_and_the_limit_that_refused(client: redis.Redis) -> None:
    scope = Scope(client)
    limits = [(3600, 0, 1.0), (86400, 0, 0.05)]
    assert scope.reserve("a", 1, 0.04, limits)[0] == 1
    scope.settle("a", 1, 0.045, limits)
    granted, refused_by, exhausted, retry_ms, *totals = scope.reserve("b", 1, 0.01, limits)
    assert (granted, refused_by, exhausted) == (0, 1, b"cost_usd")
    assert 0 < retry_ms <= 86_400_000  # The day's end.
    assert float(totals[6]) == pytest.approx(0.045)  # The day's spent USD.


def test_a_reservation_never_settled_is_released_when_its_lease_ends(
    client: redis.Redis,
) -> None:
    scope, limits = Scope(client), [(0, 100, 0.0)]
    assert scope.reserve("dead-replica", 100, 0.0, limits, lease=50)[0] == 1
    assert scope.reserve("next", 1, 0.0, limits)[0] == 0
    eventually_sync(lambda: scope.reserve("next", 1, 0.0, limits)[0] == 1)


def test_a_retried_reservation_is_held_once(client: redis.Redis) -> None:
    scope, limits = Scope(client), [(0, 100, 0.0)]
    assert scope.reserve("a", 60, 0.0, limits)[0] == 1
    again = scope.reserve("a", 60, 0.0, limits)
    assert again[0] == 1 and again[4:6] == [0, 60]  # spent 0, reserved 60: once


class Lease:
    def __init__(self, client: redis.Redis) -> None:
        self.key = lease_key(f"test:{uuid.uuid4().hex[:12]}")
        sources = {"acquire": lua.LEASE_ACQUIRE, "renew": lua.LEASE_RENEW}
        sources["release"] = lua.LEASE_RELEASE
        self._scripts = {name: client.register_script(text) for name, text in sources.items()}

    def __call__(self, action: str, holder: str, ttl: int = LONG) -> tuple[bool, int]:
        held, ttl_left = self._scripts[action](keys=[self.key], args=[holder, ttl])
        return bool(held), int(ttl_left)


def test_a_lease_has_one_holder_who_alone_renews_and_releases_it(client: redis.Redis) -> None:
    lease = Lease(client)
    assert lease("acquire", "first") == (True, LONG)
    held, ttl = lease("acquire", "second")
    assert not held and 0 < ttl <= LONG
    assert not lease("renew", "second")[0]
    assert lease("renew", "first")[0]
    assert lease("acquire", "first")[0]  # Re-entrant for its holder.
    lease("release", "second")  # Not the holder: nothing happens.
    assert not lease("acquire", "second")[0]
    lease("release", "first")
    assert lease("acquire", "second")[0]


def test_a_lease_not_renewed_expires(client: redis.Redis) -> None:
    lease = Lease(client)
    assert lease("acquire", "crashed", ttl=50)[0]
    eventually_sync(lambda: lease("acquire", "next")[0])
