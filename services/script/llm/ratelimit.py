"""Client-side rate limits in one process: requests and tokens per window, paced.

This is the replica's own limiter. With the cache service reachable, the replicas share one
limiter in Redis (quota.py) and this one only mirrors what the replica sent; without it, this one
holds the replica to its share of the quota.

Why a rolling window rather than a classic refilling bucket: a bucket of capacity N that refills
continuously lets up to 2N requests through in one window (a full bucket, then the refill), and a
provider counting per window answers the excess with 429. Here a request holds its slot from the
moment it is granted until one window after it *finished*: the provider received it at or before
that moment, so no window of the provider's ever holds more than the limit, whatever the network
does. Tokens work the same way: a request reserves an estimate (input: prompt characters / 4;
output: max_tokens), corrected to the real usage when it finishes, against separate input and
output limits and the combined one. Grants are also paced, at least window / requests apart, so
a window's quota is never spent in one burst (providers enforce per-minute limits over shorter
intervals too).

Waiters are served first come, first served (an `asyncio.Lock` queues them) and sleep until a slot
frees or a pause ends: no busy-waiting. `pause_for` stops the whole limiter, e.g. on `retry-after`
or when the provider says no requests remain until its reset time.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace

Clock = Callable[[], float]


@dataclass(frozen=True)
class Limits:
    """A quota in any `window` seconds; a token limit of 0 means none."""

    requests: int
    tokens: int
    window: float
    input_tokens: int = 0
    output_tokens: int = 0

    def __post_init__(self) -> None:
        if self.requests < 1 or self.tokens < 0 or self.window <= 0:
            raise ValueError("requests must be at least 1, tokens 0 or more, window positive")
        if self.input_tokens < 0 or self.output_tokens < 0:
            raise ValueError("input and output token limits must be 0 or more")

    @classmethod
    def per_minute(
        cls,
        requests_per_minute: int,
        tokens_per_minute: int,
        window: float = 60.0,
        input_tokens_per_minute: int = 0,
        output_tokens_per_minute: int = 0,
    ) -> Limits:
        """Limits given per minute, enforced over `window` seconds (scaled, at least 1)."""
        scale = window / 60.0

        def scaled(per_minute: int) -> int:
            return max(1, math.floor(per_minute * scale)) if per_minute else 0

        return cls(
            max(1, math.floor(requests_per_minute * scale)),
            scaled(tokens_per_minute),
            window,
            scaled(input_tokens_per_minute),
            scaled(output_tokens_per_minute),
        )

    def share(self, replicas: int) -> Limits:
        """One replica's share when `replicas` share the quota (at least 1 of each limit)."""

        def part(limit: int) -> int:
            return max(1, limit // replicas) if limit else 0

        return replace(
            self,
            requests=part(self.requests),
            tokens=part(self.tokens),
            input_tokens=part(self.input_tokens),
            output_tokens=part(self.output_tokens),
        )

    @property
    def spacing(self) -> float:
        """The least time between two grants."""
        return self.window / self.requests

    def cap(self, input_tokens: int, output_tokens: int) -> tuple[int, int]:
        """The estimate the limits can ever grant: a request bigger than a limit goes alone
        (its input first, then what output still fits) rather than waiting for ever."""
        input_tokens, output_tokens = max(0, input_tokens), max(0, output_tokens)
        if self.input_tokens:
            input_tokens = min(input_tokens, self.input_tokens)
        if self.output_tokens:
            output_tokens = min(output_tokens, self.output_tokens)
        if self.tokens:
            input_tokens = min(input_tokens, self.tokens)
            output_tokens = min(output_tokens, self.tokens - input_tokens)
        return input_tokens, output_tokens


@dataclass
class Permit:
    """One granted request; `settle` it when the request is over, whatever the outcome."""

    limiter: WindowLimiter
    input_tokens: int
    output_tokens: int
    granted_at: float
    waited: float
    mirrored: bool = False  # Granted by the shared limiter; recorded here only.
    settled: bool = field(default=False)

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def settle(self, input_used: int | None = None, output_used: int = 0) -> None:
        """Frees the in-flight slot; the request keeps counting for one window from now.
        Without arguments, the estimate stands."""
        if self.settled:
            return
        self.settled = True
        if input_used is None:
            input_used, output_used = self.input_tokens, self.output_tokens
        self.limiter._finish(self, max(0, input_used), max(0, output_used))


@dataclass(frozen=True)
class Finished:
    at: float
    input_tokens: int
    output_tokens: int
    mirrored: bool

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens


class WindowLimiter:
    """At most `requests` requests and `tokens` tokens (0: no limit) in any `window` seconds,
    paced."""

    def __init__(
        self,
        requests: int,
        tokens: int,
        window: float,
        clock: Clock = time.monotonic,
        *,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        self.limits = Limits(requests, tokens, window, input_tokens, output_tokens)
        self._clock = clock
        self._in_flight: dict[int, Permit] = {}  # id(permit) -> permit
        self._finished: deque[Finished] = deque()
        self._next_grant = 0.0  # Pacing: no grant before this.
        self._paused_until = 0.0
        self._turn = asyncio.Lock()
        self._changed = asyncio.Event()

    @classmethod
    def from_limits(cls, limits: Limits, clock: Clock = time.monotonic) -> WindowLimiter:
        return cls(
            limits.requests, limits.tokens, limits.window, clock,
            input_tokens=limits.input_tokens, output_tokens=limits.output_tokens,
        )  # fmt: skip

    @classmethod
    def per_minute(
        cls, requests_per_minute: int, tokens_per_minute: int, window: float = 60.0
    ) -> WindowLimiter:
        """Limits given per minute, enforced over `window` seconds (scaled, at least 1)."""
        return cls.from_limits(Limits.per_minute(requests_per_minute, tokens_per_minute, window))

    @property
    def requests(self) -> int:
        return self.limits.requests

    @property
    def tokens(self) -> int:
        return self.limits.tokens

    @property
    def window(self) -> float:
        return self.limits.window

    async def acquire(self, input_tokens: int, output_tokens: int = 0) -> Permit:
        """Waits for a request slot and the tokens (capped at what the limits can grant)."""
        started = self._clock()
        async with self._turn:
            while True:
                granted = self.try_grant(input_tokens, output_tokens)
                if isinstance(granted, Permit):
                    granted.waited = granted.granted_at - started
                    return granted
                await self.wait_for_change(granted)

    def try_grant(
        self, input_tokens: int, output_tokens: int = 0, *, mirrored: bool = False
    ) -> Permit | float:
        """A permit now, or the seconds before one could be granted (inf: only a request
        settling can help). `mirrored`: the shared limiter granted it too (and knows of it)."""
        input_tokens, output_tokens = self.limits.cap(input_tokens, output_tokens)
        now = self._clock()
        wait = self.wait_needed(now, input_tokens, output_tokens)
        if wait > 0:
            return wait
        self._next_grant = max(self._next_grant, now) + self.limits.spacing
        return self._add(input_tokens, output_tokens, now, mirrored)

    def time_to_grant(self, input_tokens: int, output_tokens: int = 0) -> float:
        """What `try_grant` would wait, without granting."""
        input_tokens, output_tokens = self.limits.cap(input_tokens, output_tokens)
        return self.wait_needed(self._clock(), input_tokens, output_tokens)

    def record(self, input_tokens: int, output_tokens: int) -> Permit:
        """Counts a request granted elsewhere (the shared limiter), whatever the limits say."""
        input_tokens, output_tokens = self.limits.cap(input_tokens, output_tokens)
        return self._add(input_tokens, output_tokens, self._clock(), mirrored=True)

    async def wait_for_change(self, seconds: float) -> None:
        """Sleeps `seconds` (inf: until something settles), or less when a request settles."""
        self._changed.clear()
        timeout = None if math.isinf(seconds) else max(0.0, seconds)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    def wake(self) -> None:
        """Wakes the waiters to look again (something outside the limiter changed)."""
        self._changed.set()

    def pause_for(self, seconds: float) -> None:
        """No request is granted for `seconds` from now (a longer pause already set stays)."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._changed.set()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def granted_here(self) -> list[tuple[int, int]]:
        """(input, output) tokens of the requests this limiter granted itself (not mirrored)
        that still count: in flight, or finished less than a window ago."""
        self._expire(self._clock())
        flying = [(p.input_tokens, p.output_tokens) for p in self._in_flight.values()
                  if not p.mirrored]  # fmt: skip
        done = [(f.input_tokens, f.output_tokens) for f in self._finished if not f.mirrored]
        return flying + done

    def _add(self, input_tokens: int, output_tokens: int, now: float, mirrored: bool) -> Permit:
        permit = Permit(self, input_tokens, output_tokens, now, 0.0, mirrored)
        self._in_flight[id(permit)] = permit
        return permit

    def _finish(self, permit: Permit, input_used: int, output_used: int) -> None:
        now = self._clock()
        self._in_flight.pop(id(permit), None)
        self._expire(now)  # Also when only mirroring (nothing else would look).
        self._finished.append(Finished(now, input_used, output_used, permit.mirrored))
        self._changed.set()

    def _expire(self, now: float) -> None:
        while self._finished and self._finished[0].at + self.window <= now:
            self._finished.popleft()

    def wait_needed(self, now: float, input_tokens: int, output_tokens: int) -> float:
        """Seconds until a request of these tokens fits; inf when only a request settling below
        its estimate can help."""
        self._expire(now)
        limits = self.limits
        wait = max(self._paused_until, self._next_grant) - now
        in_flight = len(self._in_flight)
        if in_flight + len(self._finished) >= limits.requests:
            if in_flight >= limits.requests:
                # A slot frees one window after a request finishes: a window from now at best.
                return max(wait, self.window)
            leaving = self._finished[in_flight + len(self._finished) - limits.requests]
            wait = max(wait, leaving.at + self.window - now)
        kinds: tuple[tuple[int, Callable[[int, int], int], int], ...] = (
            (limits.tokens, lambda i, o: i + o, input_tokens + output_tokens),
            (limits.input_tokens, lambda i, o: i, input_tokens),
            (limits.output_tokens, lambda i, o: o, output_tokens),
        )
        for cap, count, wanted in kinds:
            if not cap:
                continue
            flying = sum(count(p.input_tokens, p.output_tokens) for p in self._in_flight.values())
            done = sum(count(f.input_tokens, f.output_tokens) for f in self._finished)
            if flying + done + wanted > cap:
                if flying + wanted > cap:
                    return math.inf
                wait = max(wait, self._token_wait(now, count, flying + done + wanted - cap))
        return wait

    def _token_wait(self, now: float, count: Callable[[int, int], int], excess: int) -> float:
        """Seconds until `excess` tokens of finished requests leave the window."""
        freed = 0
        for finished in self._finished:
            freed += count(finished.input_tokens, finished.output_tokens)
            if freed >= excess:
                return finished.at + self.window - now
        return math.inf
