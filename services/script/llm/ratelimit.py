"""Client-side rate limits: requests and tokens per window, per (provider, model).

Why a rolling window rather than a classic refilling bucket: a bucket of capacity N that refills
continuously lets up to 2N requests through in one window (a full bucket, then the refill), and a
provider counting per window answers the excess with 429. Here a request holds its slot from the
moment it is granted until one window after it *finished*: the provider received it at or before
that moment, so no window of the provider's ever holds more than the limit, whatever the network
does. Tokens work the same way; a request reserves an estimate (prompt + max_tokens), corrected to
the real usage when it finishes.

One `WindowLimiter` per (provider, model) is shared by every scene of every episode of the replica.
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
from dataclasses import dataclass, field

Clock = Callable[[], float]


@dataclass
class Permit:
    """One granted request; `settle` it when the request is over, whatever the outcome."""

    limiter: WindowLimiter
    tokens: int
    granted_at: float
    waited: float
    settled: bool = field(default=False)

    def settle(self, tokens_used: int | None = None) -> None:
        """Frees the in-flight slot; the request keeps counting for one window from now."""
        if not self.settled:
            self.settled = True
            self.limiter._finish(self, self.tokens if tokens_used is None else tokens_used)


class WindowLimiter:
    """At most `requests` requests and `tokens` tokens in any `window` seconds."""

    def __init__(self, requests: int, tokens: int, window: float, clock: Clock = time.monotonic):
        if requests < 1 or tokens < 1 or window <= 0:
            raise ValueError("requests and tokens must be at least 1, window positive")
        self.requests = requests
        self.tokens = tokens
        self.window = window
        self._clock = clock
        self._in_flight: dict[int, int] = {}  # id(permit) -> tokens reserved
        self._finished: deque[tuple[float, int]] = deque()  # (finished at, tokens)
        self._finished_tokens = 0
        self._paused_until = 0.0
        self._turn = asyncio.Lock()
        self._changed = asyncio.Event()

    @classmethod
    def per_minute(
        cls, requests_per_minute: int, tokens_per_minute: int, window: float = 60.0
    ) -> WindowLimiter:
        """Limits given per minute, enforced over `window` seconds (scaled, at least 1)."""
        scale = window / 60.0
        return cls(
            max(1, math.floor(requests_per_minute * scale)),
            max(1, math.floor(tokens_per_minute * scale)),
            window,
        )

    async def acquire(self, tokens: int) -> Permit:
        """Waits for a request slot and `tokens` (capped at the window's capacity)."""
        tokens = max(0, min(tokens, self.tokens))
        started = self._clock()
        async with self._turn:
            while True:
                now = self._clock()
                wait = self._wait_needed(now, tokens)
                if wait <= 0:
                    permit = Permit(self, tokens, now, now - started)
                    self._in_flight[id(permit)] = tokens
                    return permit
                self._changed.clear()
                timeout = None if math.isinf(wait) else wait
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)

    def pause_for(self, seconds: float) -> None:
        """No request is granted for `seconds` from now (a longer pause already set stays)."""
        if seconds > 0:
            self._paused_until = max(self._paused_until, self._clock() + seconds)
            self._changed.set()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - self._clock())

    def _finish(self, permit: Permit, tokens_used: int) -> None:
        self._in_flight.pop(id(permit), None)
        used = max(0, tokens_used)
        self._finished.append((self._clock(), used))
        self._finished_tokens += used
        self._changed.set()

    def _expire(self, now: float) -> None:
        while self._finished and self._finished[0][0] + self.window <= now:
            self._finished_tokens -= self._finished.popleft()[1]

    def _wait_needed(self, now: float, tokens: int) -> float:
        """Seconds until a request of `tokens` fits; inf when only a finishing request helps."""
        self._expire(now)
        wait = self._paused_until - now
        if len(self._in_flight) + len(self._finished) >= self.requests:
            if len(self._in_flight) >= self.requests:
                return math.inf
            wait = max(wait, self._finished[0][0] + self.window - now)
        used = sum(self._in_flight.values()) + self._finished_tokens
        if used + tokens > self.tokens:
            wait = max(wait, self._token_wait(now, used + tokens - self.tokens))
        return wait

    def _token_wait(self, now: float, excess: int) -> float:
        """Seconds until `excess` tokens of finished requests leave the window."""
        freed = 0
        for finished_at, used in self._finished:
            freed += used
            if freed >= excess:
                return finished_at + self.window - now
        return math.inf


class RateLimits:
    """The limiters of one replica, one per (provider, model), built on first use."""

    def __init__(self, requests_per_minute: int, tokens_per_minute: int, window: float) -> None:
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute
        self._window = window
        self._limiters: dict[tuple[str, str], WindowLimiter] = {}

    def limiter(self, provider: str, model: str) -> WindowLimiter:
        key = (provider, model)
        if key not in self._limiters:
            self._limiters[key] = WindowLimiter.per_minute(self._rpm, self._tpm, self._window)
        return self._limiters[key]
