"""One provider quota shared by every script replica, with each replica's share as the fallback.

Providers limit per organisation or key, not per process, and the HPA runs several script
replicas on one key. So a replica asks the limiter in Redis (through the cache service's
AcquireRate and SettleRate, services/cache/coordination_lua.py) for every request. The shared
limiter keeps the semantics of the replica's own (ratelimit.py): a slot is held from grant until
one window after the request finished; grants are paced window / requests apart; input, output
and combined tokens are reserved and settled; a 429 or a `remaining: 0` header pauses every
replica. When a request does not fit, the answer says how long to wait; the replica sleeps that
long (never past DOPPEL_LLM_MAX_QUEUE_SECONDS or the client's deadline) and asks again. One
waiter per limiter and replica asks at a time, first come, first served.

Modes of a replica's limiter:
- shared: every grant comes from Redis; the replica's own limiter records what it sent.
- fallback: the cache service did not answer. The replica holds itself to its share of the quota
  (limits / DOPPEL_LLM_REPLICAS_HINT), never to "no limit". Entering it, it first waits
  (hint + 1) grant intervals of the shared limiter: the requests the others were granted just
  before are still in the provider's window, and this keeps every window at the limit. It asks
  Redis again every PROBE_SECONDS, in the background.
- rejoining: Redis answers again. The replica first records there what it sent alone (as just
  finished), then for one window and two probe intervals grants only what both its share and the
  shared limiter allow: replicas that have not noticed yet (they ask within a probe interval, or
  two when the first probe comes too early) cannot push a window over.
- local: no cache service configured (writers built alone, e.g. in tests): the replica's limiter.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import trace

from services.script.coordination import (
    CoordinationClient,
    CoordinationUnavailable,
    model_class,
    new_id,
)
from services.script.llm.ratelimit import Clock, Limits, Permit, WindowLimiter

log = logging.getLogger(__name__)

SHARED, FALLBACK, REJOINING, LOCAL = "shared", "fallback", "rejoining", "local"
PROBE_SECONDS = 2.0  # How often a replica in fallback asks Redis again.
PROBE_LEASE = "doppel-probe"  # Never held: releasing it only reads Redis.
_background: set[asyncio.Task[None]] = set()


def in_background(work: Coroutine[Any, Any, None]) -> None:
    """Runs `work` without waiting for it (a shared settle nobody needs to wait for), keeping a
    reference so it is not collected half done."""
    task = asyncio.ensure_future(work)
    _background.add(task)
    task.add_done_callback(_background.discard)


class QueueTimeout(Exception):
    """No slot within the time the caller may wait; `wait` is what the limiter asked for."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"a slot needs {wait:.1f} s more")
        self.wait = wait


@dataclass
class SharedPermit:
    """One granted request; `settle` it when it is over, whatever the outcome."""

    limiter: SharedLimiter
    local: Permit
    shared_id: str  # "": granted by this replica alone
    mode: str
    waited: float = 0.0
    settled: bool = field(default=False)

    async def settle(
        self, input_used: int | None = None, output_used: int = 0, pause_seconds: float = 0.0
    ) -> None:
        """Records what the request used (without arguments: the estimate) and pauses every
        replica for `pause_seconds` when the provider asked for it."""
        shared = self._settle_here(input_used, output_used, pause_seconds)
        if shared is not None:
            await shared

    def settle_soon(
        self, input_used: int | None = None, output_used: int = 0, pause_seconds: float = 0.0
    ) -> None:
        """`settle`: this replica's books at once, the shared limiter's without waiting for the
        cache service (until it lands, the slot counts as in flight: the safe side)."""
        shared = self._settle_here(input_used, output_used, pause_seconds)
        if shared is not None:
            in_background(shared)

    def _settle_here(
        self, input_used: int | None, output_used: int, pause_seconds: float
    ) -> Coroutine[Any, Any, None] | None:
        """Settles this replica's limiter; returns the shared settle still to do."""
        if self.settled:
            return None
        self.settled = True
        if input_used is None:
            input_used, output_used = self.local.input_tokens, self.local.output_tokens
        self.limiter.local.pause_for(pause_seconds)
        self.local.settle(input_used, output_used)
        if not self.shared_id:
            return None
        return self.limiter._settle_shared(self.shared_id, input_used, output_used, pause_seconds)


class SharedLimiter:
    """The quota of one provider key and model class: shared through `client`, or this
    replica's share when the client is None or unreachable."""

    def __init__(
        self,
        name: str,
        limits: Limits,
        client: CoordinationClient | None,
        *,
        replicas_hint: int = 1,
        lease_seconds: float = 150.0,
        probe_seconds: float = PROBE_SECONDS,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self.limits = limits
        self.local = WindowLimiter.from_limits(limits.share(replicas_hint), clock)
        self.mode = SHARED if client is not None else LOCAL
        self._client = client
        self._hint = replicas_hint
        self._lease = lease_seconds
        self._probe = probe_seconds
        self._clock = clock
        self._answering = False  # In fallback: Redis answered the last probe.
        self._prober: asyncio.Task[None] | None = None
        self._rejoined_at = 0.0
        self._turn = asyncio.Lock()

    @property
    def paused_for(self) -> float:
        """Seconds of pause left, as this replica knows it (shared pauses are mirrored)."""
        return self.local.paused_for

    def pause_for(self, seconds: float) -> None:
        """Pauses this replica's grants (a shared pause travels with `SharedPermit.settle`)."""
        self.local.pause_for(seconds)

    async def acquire(
        self, input_tokens: int, output_tokens: int = 0, max_wait: float = math.inf
    ) -> SharedPermit:
        """A permit, waiting at most `max_wait` seconds; QueueTimeout as soon as it is clear
        that the wait would be longer."""
        input_tokens, output_tokens = self.limits.cap(input_tokens, output_tokens)
        started = self._clock()
        async with self._turn:
            while True:
                granted = await self._try(input_tokens, output_tokens)
                now = self._clock()
                if isinstance(granted, SharedPermit):
                    granted.waited = now - started
                    return granted
                left = max_wait - (now - started)
                if left <= 0 or (granted > left and not math.isinf(granted)):
                    raise QueueTimeout(granted)
                await self.local.wait_for_change(min(granted, left))

    async def _try(self, input_tokens: int, output_tokens: int) -> SharedPermit | float:
        """A permit, or the seconds to wait before trying again."""
        now = self._clock()
        if self.mode == LOCAL or (self.mode == FALLBACK and not self._answering):
            return self._grant_alone(input_tokens, output_tokens)
        rejoin_period = self.limits.window + 2 * self._probe
        if self.mode == REJOINING and now >= self._rejoined_at + rejoin_period:
            self.mode = SHARED
            log.info("rate limiter %s: shared again", self.name)
        if self.mode in (FALLBACK, REJOINING):
            wait = self.local.time_to_grant(input_tokens, output_tokens)
            if wait > 0:
                return wait  # Its share must allow it too.
        if self.mode == FALLBACK and not await self._replay():
            return self._grant_alone(input_tokens, output_tokens)
        return await self._grant_shared(input_tokens, output_tokens)

    def _grant_alone(self, input_tokens: int, output_tokens: int) -> SharedPermit | float:
        granted = self.local.try_grant(input_tokens, output_tokens)
        if isinstance(granted, Permit):
            return SharedPermit(self, granted, "", self.mode)
        return granted

    async def _grant_shared(self, input_tokens: int, output_tokens: int) -> SharedPermit | float:
        assert self._client is not None
        permit_id = new_id()
        try:
            decision = await self._client.acquire_rate(
                self.name, permit_id, self.limits, input_tokens, output_tokens, self._lease
            )
        except CoordinationUnavailable as exc:
            self._fall_back(str(exc))
            return 0.0  # Straight on, alone.
        if self.mode == FALLBACK:
            self.mode = REJOINING
            self._rejoined_at = self._clock()
            log.info("rate limiter %s: the shared limiter answers again; rejoining", self.name)
        self.local.pause_for(decision.paused_seconds)
        if not decision.granted:
            return max(decision.wait_seconds, 0.001)
        if self.mode == REJOINING:
            mine = self.local.try_grant(input_tokens, output_tokens, mirrored=True)
            local = (
                mine if isinstance(mine, Permit) else self.local.record(input_tokens, output_tokens)
            )
        else:
            local = self.local.record(input_tokens, output_tokens)
        return SharedPermit(self, local, permit_id, self.mode)

    def _fall_back(self, why: str) -> None:
        """From shared (or rejoining) to this replica's share, asking Redis again in the
        background (a probe never holds up a grant)."""
        self._answering = False
        if self._prober is None or self._prober.done():
            self._prober = asyncio.ensure_future(self._probe_until_answered())
        if self.mode == FALLBACK:
            return
        self.mode = FALLBACK
        # What the shared limiter may have granted the others meanwhile is still in the
        # provider's window: wait as long as it takes the shared pace to grant each replica one.
        self.local.pause_for((self._hint + 1) * self.limits.spacing)
        share = self.local.limits
        log.warning(
            "rate limiter %s: the shared limiter is unreachable (%s); this replica keeps to its "
            "share, %d requests a %.0f s window (DOPPEL_LLM_REPLICAS_HINT=%d), until it is back",
            self.name, why, share.requests, share.window, self._hint,
        )  # fmt: skip
        trace.get_current_span().add_event(
            "doppel.llm.limiter.fallback",
            {"doppel.llm.limiter": self.name, "doppel.llm.limiter.share": share.requests},
        )

    async def _probe_until_answered(self) -> None:
        """Every probe interval, a harmless call through the cache service to Redis (the
        release of a lease nobody holds), until one is answered; then wakes the waiters."""
        assert self._client is not None
        while self.mode == FALLBACK and not self._answering:
            await asyncio.sleep(self._probe)
            try:
                await self._client.release_lease(PROBE_LEASE, new_id())
            except CoordinationUnavailable:
                continue
            self._answering = True
            self.local.wake()

    async def _replay(self) -> bool:
        """Records in Redis what this replica sent alone (each as finished now); False when
        Redis cannot be reached after all."""
        assert self._client is not None
        pause = self.local.paused_for
        try:
            for input_tokens, output_tokens in self.local.granted_here():
                await self._client.settle_rate(
                    self.name, new_id(), self.limits, input_tokens, output_tokens, pause
                )
        except CoordinationUnavailable as exc:
            self._fall_back(str(exc))
            return False
        return True

    async def _settle_shared(
        self, permit_id: str, input_used: int, output_used: int, pause: float
    ) -> None:
        assert self._client is not None
        try:
            paused = await self._client.settle_rate(
                self.name, permit_id, self.limits, input_used, output_used, pause
            )
        except CoordinationUnavailable as exc:
            # The grant counts in Redis until its lease ends; the next acquire finds out.
            log.info("rate limiter %s: settle not recorded (%s)", self.name, exc)
            return
        self.local.pause_for(paused)


class RateLimits:
    """The limiters of one replica, one per provider key and model class, built on first use."""

    def __init__(
        self,
        limits: Limits,
        client: CoordinationClient | None,
        replicas_hint: int = 1,
        lease_seconds: float = 150.0,
    ) -> None:
        self._limits = limits
        self._client = client
        self._hint = replicas_hint
        self._lease = lease_seconds
        self._limiters: dict[str, SharedLimiter] = {}

    def limiter(self, provider: str, model: str, key_fingerprint: str) -> SharedLimiter:
        """The limiter named `provider:key fingerprint:model class` (never the key)."""
        name = f"{provider}:{key_fingerprint}:{model_class(model)}"
        if name not in self._limiters:
            self._limiters[name] = SharedLimiter(
                name, self._limits, self._client, replicas_hint=self._hint,
                lease_seconds=self._lease,
            )  # fmt: skip
        return self._limiters[name]
