"""What an LLM writer raises, and the gRPC status each should end the RPC with.

`WriterError` is the base the pipeline catches; `grpc_code` tells it how to answer the client
(`await context.abort(exc.grpc_code, str(exc))`). Messages name the writer and the cause, never a
key or a prompt.
"""

from __future__ import annotations

import grpc


class WriterError(Exception):
    """A writer could not produce a part of the episode."""

    grpc_code = grpc.StatusCode.UNAVAILABLE
    error_type = "writer_error"  # Low-cardinality name for `error.type` and fallback records.


class ProviderError(WriterError):
    """The provider failed: a status we do not retry, retries exhausted, or a wait too long."""

    def __init__(self, message: str, *, error_type: str, status: int | None = None) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.status = status


class RateLimitQueueFull(ProviderError):
    """No client-side rate-limit slot within DOPPEL_LLM_MAX_QUEUE_SECONDS: the replica is
    asking more of the provider than its limits allow. The chain may fall back on it."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class InvalidOutputError(WriterError):
    """The model's reply did not match the schema, even after the one repair attempt."""

    grpc_code = grpc.StatusCode.INTERNAL
    error_type = "invalid_output"


class BudgetExceeded(WriterError):
    """The episode's token or cost budget would be exceeded; the chain does not fall back on it."""

    grpc_code = grpc.StatusCode.RESOURCE_EXHAUSTED
    error_type = "budget_exceeded"


class SpendingCapExceeded(BudgetExceeded):
    """The caller's hourly or daily cap (DOPPEL_LLM_CALLER_*) would be exceeded; `retry_after_ms`
    is when its period ends. The chain does not fall back on it either."""

    error_type = "spending_cap"

    def __init__(self, message: str, retry_after_ms: int) -> None:
        super().__init__(message)
        self.retry_after_ms = retry_after_ms


class DeadlineExceeded(WriterError):
    """The client's deadline leaves no time for the call; the chain does not fall back on it."""

    grpc_code = grpc.StatusCode.DEADLINE_EXCEEDED
    error_type = "deadline_exceeded"
