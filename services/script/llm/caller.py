"""One model of one provider behind the rate limiter, the retry loop, the budget and telemetry.

`LLMCaller.chat` sends a request until it succeeds, a failure is not worth retrying, or the
attempts run out. Before each attempt it reserves the episode budget and the caller's caps and
waits for the (shared) limiter; after it, it settles them with the real usage, pauses every
replica's limiter when the provider says so (`retry-after`, rate-limit headers) and waits the
jittered backoff, never less than asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import replace
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.script.llm import telemetry as genai
from services.script.llm.budget import EpisodeBudget, Prices, Usage
from services.script.llm.progress import output_sink
from services.script.llm.provenance import current_part
from services.script.llm.providers import ChatProvider, ChatRequest, ChatResult, ProviderFailure
from services.script.llm.quota import QueueTimeout, SharedLimiter, SharedPermit
from services.script.llm.retry import RetryPolicy, pause_from_headers, retry_after_seconds
from services.script.llm.tokens import TokenCounter, min_cacheable_tokens
from services.script.writing import DeadlineExceeded, ProviderError, RateLimitQueueFull
from shared.faults import STORM_RETRY_AFTER_MS, Faults

log = logging.getLogger(__name__)

# time.monotonic() by which the client wants its answer; set per RPC by the script service.
_DEADLINE: ContextVar[float | None] = ContextVar("doppel_llm_deadline", default=None)


@contextlib.contextmanager
def client_deadline(remaining_seconds: float | None) -> Iterator[None]:
    """Bounds every LLM attempt made inside the block by the client's remaining time."""
    deadline = None if remaining_seconds is None else time.monotonic() + remaining_seconds
    token = _DEADLINE.set(deadline)
    try:
        yield
    finally:
        _DEADLINE.reset(token)


def time_left() -> float | None:
    deadline = _DEADLINE.get()
    return None if deadline is None else deadline - time.monotonic()


class LLMCaller:
    """Calls one model; shared by every episode and scene of the replica."""

    def __init__(
        self,
        provider: ChatProvider,
        model: str,
        limiter: SharedLimiter,
        policy: RetryPolicy,
        prices: Prices,
        tracer: trace.Tracer,
        instruments: genai.GenAIInstruments,
        capture_content: bool = False,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        faults: Faults | None = None,
        cache_reads_count: bool = True,
    ) -> None:
        self.provider = provider
        self.model = model
        self.limiter = limiter
        self.policy = policy
        self._prices = prices
        self._tracer = tracer
        self._instruments = instruments
        self.instruments = instruments  # The writer counts repairs and parse failures on them.
        self.tokens = TokenCounter(provider, model)
        self._capture = capture_content
        self._sleep = sleep
        self._faults = faults
        self._cache_reads_count = cache_reads_count

    def prepare(self, request: ChatRequest) -> ChatRequest:
        """The request as this caller sends it (its model; temperature only where the provider
        takes one); `provider.body(caller.prepare(r))` is the exact body, e.g. for a batch."""
        temperature = request.temperature if self.provider.sends_temperature else None
        return replace(request, model=self.model, temperature=temperature)

    async def chat(self, request: ChatRequest, task: str, budget: EpisodeBudget) -> ChatResult:
        """The provider's reply; raises ProviderError or BudgetExceeded."""
        request = replace(self.prepare(request), call_id=uuid.uuid4().hex)
        prefixes = self.tokens.prefixes(request)
        minimum = min_cacheable_tokens(self.provider.name, self.model)
        marks = (prefixes[0] >= minimum, prefixes[1] >= minimum, prefixes[2] >= minimum)
        request = replace(request, cache_breakpoints=marks)
        input_estimate = self.tokens.estimate(request, prefixes)
        tokens = input_estimate + request.max_tokens
        cost = self._prices.cost(
            self.model, Usage(input_tokens=input_estimate, output_tokens=request.max_tokens)
        )
        for attempt in range(1, self.policy.max_attempts + 1):
            attempt_request = replace(request, attempt=attempt)
            reservation = await budget.reserve(tokens, cost)
            try:
                permit = await self._acquire(input_estimate, request.max_tokens)
            except BaseException:
                budget.settle_soon(reservation)
                raise
            try:
                result = await self._attempt(attempt_request, task, permit)
            except ProviderFailure as failure:
                pause = self._failure_pause(failure)
                await permit.settle(0, 0, min(pause, self.policy.max_wait_seconds))
                await budget.settle(reservation)
                await self._sleep(self._after_failure(failure, attempt, pause))
                continue
            except BaseException:
                permit.settle_soon(0, 0)
                budget.settle_soon(reservation)
                raise
            spent = self._prices.cost(self.model, result.usage)
            self.tokens.calibrate(request, result.usage)
            counted_input, counted_output = result.usage.counted(self._cache_reads_count)
            pause = min(pause_from_headers(result.headers), self.policy.max_wait_seconds)
            # The shared books settle in the background: the reply is not kept waiting on them.
            permit.settle_soon(counted_input, counted_output, pause)
            budget.settle_soon(reservation, result.usage.total, spent)
            self._record_usage(result, spent)
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _acquire(self, input_tokens: int, output_tokens: int) -> SharedPermit:
        """A rate-limit slot, waited for no longer than the client's deadline and
        DOPPEL_LLM_MAX_QUEUE_SECONDS: a queue that cannot drain in time refuses at once."""
        left = time_left()
        by_client = left is not None and left < self.policy.max_queue_seconds
        limit = left if by_client and left is not None else self.policy.max_queue_seconds
        try:
            # The limiter refuses as soon as its wait would pass the limit; the timeout also
            # bounds the cache service's answers.
            async with asyncio.timeout(max(0.0, limit)):
                return await self.limiter.acquire(input_tokens, output_tokens, max(0.0, limit))
        except (TimeoutError, QueueTimeout):
            where = f"{self.provider.name} {self.model}"
            if by_client:
                raise DeadlineExceeded(
                    f"{where}: no rate-limit slot before the client's deadline"
                ) from None
            raise RateLimitQueueFull(
                f"{where}: no rate-limit slot within {limit:.0f} s "
                "(DOPPEL_LLM_MAX_QUEUE_SECONDS, DOPPEL_LLM_REQUESTS_PER_MINUTE); retry later",
                error_type="rate_limit_queue",
            ) from None

    @staticmethod
    def _failure_pause(failure: ProviderFailure) -> float:
        """How long the provider asked every caller to hold off (retry-after, reset headers)."""
        return max(retry_after_seconds(failure.headers) or 0.0, pause_from_headers(failure.headers))

    def _after_failure(self, failure: ProviderFailure, attempt: int, pause: float) -> float:
        """The delay before the next attempt, or ProviderError when there is none."""
        asked = retry_after_seconds(failure.headers)
        where = f"{self.provider.name} {self.model}"
        if not failure.retryable:
            raise ProviderError(
                f"{where}: {failure}; not retried",
                error_type=failure.error_type,
                status=failure.status,
            )
        if attempt >= self.policy.max_attempts:
            raise ProviderError(
                f"{where}: {failure}; gave up after {attempt} attempts (DOPPEL_LLM_MAX_ATTEMPTS)",
                error_type=failure.error_type,
                status=failure.status,
            )
        if pause > self.policy.max_wait_seconds:
            raise ProviderError(
                f"{where}: {failure}; asked to wait {pause:.0f} s, more than "
                f"DOPPEL_LLM_MAX_WAIT_SECONDS ({self.policy.max_wait_seconds:.0f})",
                error_type=failure.error_type,
                status=failure.status,
            )
        delay = self.policy.delay(attempt, pause or None)
        log.warning(
            "%s: %s; retrying in %.2f s (attempt %d of %d)",
            where, failure, delay, attempt + 1, self.policy.max_attempts,
        )  # fmt: skip
        trace.get_current_span().add_event(
            "doppel.llm.retry",
            {"gen_ai.provider.name": self.provider.name, "error.type": failure.error_type,
             "doppel.llm.attempt": attempt, "doppel.llm.retry_after_seconds": asked or 0.0,
             "doppel.llm.delay_seconds": round(delay, 4)},
        )  # fmt: skip
        return delay

    async def _attempt(self, request: ChatRequest, task: str, permit: SharedPermit) -> ChatResult:
        """One HTTP request, in its own `chat {model}` CLIENT span."""
        provider = self.provider
        attributes = genai.request_attributes(
            provider.name, provider.server_address, provider.server_port, request, task
        )
        attributes["doppel.llm.queue_seconds"] = round(permit.waited, 4)
        attributes["doppel.llm.limiter"] = self.limiter.name
        attributes["doppel.llm.limiter.mode"] = permit.mode
        metric_attributes = genai.base_attributes(provider.name, self.model)
        part = current_part()
        if part is not None:
            part.llm_calls += 1
        with self._tracer.start_as_current_span(
            f"{genai.OPERATION} {self.model}",
            kind=SpanKind.CLIENT,
            attributes=attributes,
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            if self._capture:
                span.set_attributes(genai.content_attributes(request))
            started = time.perf_counter()
            try:
                result = await self._bounded_chat(request)
            except ProviderFailure as failure:
                span.set_attribute("error.type", failure.error_type)
                if failure.status is not None:
                    span.set_attribute("http.response.status_code", failure.status)
                span.set_status(Status(StatusCode.ERROR, str(failure)))
                failed = {**metric_attributes, "error.type": failure.error_type}
                self._instruments.duration.record(time.perf_counter() - started, failed)
                self._instruments.calls.add(1, {**metric_attributes, "doppel.outcome": "error",
                                                "error.type": failure.error_type})  # fmt: skip
                raise
            elapsed = time.perf_counter() - started
            cost = self._prices.cost(self.model, result.usage)
            span.set_attributes(genai.response_attributes(result, cost))
            if self._capture:
                span.set_attributes(genai.output_attributes(result))
        self._record_metrics(result, cost, elapsed, metric_attributes)
        return result

    async def _bounded_chat(self, request: ChatRequest) -> ChatResult:
        """The provider's answer within the client's deadline, after any injected fault."""
        left = time_left()
        if left is not None and left <= 0:
            raise DeadlineExceeded(
                f"{self.provider.name} {self.model}: the client's deadline passed"
            )
        try:
            async with asyncio.timeout(left):
                await self._inject_faults()
                return await self.provider.chat(request, output_sink())
        except TimeoutError:
            if left is None:
                raise
            raise DeadlineExceeded(
                f"{self.provider.name} {self.model}: no answer within the client's deadline"
            ) from None

    async def _inject_faults(self) -> None:
        """DOPPEL_FAULTS / FaultService: fails the attempt as the provider would, so the same
        retry, backoff and fallback path handles it."""
        faults = self._faults
        if faults is None:
            return
        latency = faults.value("llm_latency_ms")
        if latency > 0:
            faults.count("llm_latency_ms")
            await asyncio.sleep(latency / 1000.0)
        if faults.active("llm_429_storm"):
            faults.count("llm_429_storm")
            raise ProviderFailure(
                f"{self.provider.name} answered HTTP 429 (injected: llm_429_storm)",
                error_type="429",
                retryable=True,
                status=429,
                headers={"retry-after-ms": str(STORM_RETRY_AFTER_MS)},
            )
        if faults.roll("llm_error_rate"):
            faults.count("llm_error_rate")
            raise ProviderFailure(
                f"{self.provider.name} answered HTTP 500 (injected: llm_error_rate)",
                error_type="500",
                retryable=True,
                status=500,
            )

    def _record_metrics(
        self, result: ChatResult, cost: float, elapsed: float, attributes: dict[str, Any]
    ) -> None:
        done = {**attributes, "gen_ai.response.model": result.response_model}
        usage = result.usage
        input_tokens = usage.input_tokens + usage.cache_creation_tokens + usage.cache_read_tokens
        instruments = self._instruments
        instruments.duration.record(elapsed, done)
        instruments.token_usage.record(input_tokens, {**done, "gen_ai.token.type": "input"})
        instruments.token_usage.record(usage.output_tokens, {**done, "gen_ai.token.type": "output"})
        instruments.calls.add(1, {**attributes, "doppel.outcome": "ok"})
        instruments.cost.add(cost, attributes)

    @staticmethod
    def _record_usage(result: ChatResult, cost: float) -> None:
        part = current_part()
        if part is None:
            return
        usage = result.usage
        part.input_tokens += usage.input_tokens
        part.cache_creation_tokens += usage.cache_creation_tokens
        part.cache_read_tokens += usage.cache_read_tokens
        part.output_tokens += usage.output_tokens
        part.cost_usd += cost
