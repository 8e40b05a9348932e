"""OpenTelemetry for grpc.aio: server and client interceptors.

Spans follow the RPC semantic conventions and carry both attribute sets (see docs/telemetry.md):
current (`rpc.system.name`, `rpc.method` = `package.Service/Method`, `rpc.status_code` as a
string) and older (`rpc.system`, `rpc.service`, `rpc.grpc.status_code` as an int). The older
`rpc.method` (method name alone) would clash with the current one, so only the current is set.
Durations go to `rpc.server.call.duration` / `rpc.client.call.duration` in seconds.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from shared.telemetry import Telemetry

# Seconds; LLM calls are slow, so the buckets reach two minutes.
DURATION_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
)  # fmt: skip

# Status codes that count as server errors (semantic conventions); on the client, all but OK.
SERVER_ERROR_CODES = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)

# Probes and tooling would drown the real traffic; tracing OTLP ingestion would feed on itself.
UNTRACED_PREFIXES = ("/grpc.health.v1.Health/", "/grpc.reflection.", "/opentelemetry.proto.")


def rpc_attributes(full_method: str) -> dict[str, Any]:
    """Attributes of both conventions for a method path like '/pkg.Service/Method'."""
    path = full_method.lstrip("/")
    service, _, _method = path.partition("/")
    return {
        "rpc.system.name": "grpc",
        "rpc.method": path,
        "rpc.system": "grpc",
        "rpc.service": service,
    }


def status_attributes(code: grpc.StatusCode) -> dict[str, Any]:
    return {"rpc.status_code": code.name, "rpc.grpc.status_code": code.value[0]}


def _finish_span(
    span: trace.Span, code: grpc.StatusCode, details: str | None, is_error: bool
) -> None:
    span.set_attributes(status_attributes(code))
    if is_error:
        span.set_attribute("error.type", code.name)
        span.set_status(Status(StatusCode.ERROR, details or code.name))
    span.end()


class ServerTelemetryInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Continues the caller's trace in a SERVER span and records the call duration."""

    def __init__(self, telemetry: Telemetry) -> None:
        self._tracer = telemetry.tracer
        self._duration = telemetry.meter.create_histogram(
            "rpc.server.call.duration",
            unit="s",
            description="Duration of incoming RPCs.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(details)
        method = details.method
        if handler is None or method.startswith(UNTRACED_PREFIXES):
            return handler
        if handler.unary_unary:
            return grpc.unary_unary_rpc_method_handler(
                self._wrap(handler.unary_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(
                self._wrap(handler.unary_stream, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.stream_unary:
            return grpc.stream_unary_rpc_method_handler(
                self._wrap(handler.stream_unary, method),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return grpc.stream_stream_rpc_method_handler(
            self._wrap(handler.stream_stream, method),
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )

    def _start(self, method: str, context: grpc.aio.ServicerContext) -> tuple[trace.Span, Any]:
        carrier = {key: value for key, value in (context.invocation_metadata() or ())}
        parent = propagate.extract(carrier)
        span = self._tracer.start_span(
            method.lstrip("/"), context=parent, kind=SpanKind.SERVER,
            attributes=rpc_attributes(method),
        )  # fmt: skip
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        return span, token

    def _end(
        self,
        span: trace.Span,
        token: Any,
        method: str,
        context: grpc.aio.ServicerContext,
        started: float,
        error: BaseException | None,
    ) -> None:
        code = _server_code(context, error)
        if error is not None and not isinstance(
            error, asyncio.CancelledError | grpc.aio.AbortError
        ):
            span.record_exception(error)
        details = context.details() if hasattr(context, "details") else None
        _finish_span(span, code, details, code in SERVER_ERROR_CODES)
        otel_context.detach(token)
        attributes = rpc_attributes(method) | status_attributes(code)
        self._duration.record(time.perf_counter() - started, attributes)

    def _wrap(self, behavior: Callable[..., Any], method: str) -> Callable[..., Any]:
        if inspect.isasyncgenfunction(behavior):

            async def streaming(request_or_iterator: Any, context: Any) -> AsyncIterator[Any]:
                started = time.perf_counter()
                span, token = self._start(method, context)
                error: BaseException | None = None
                try:
                    async for response in behavior(request_or_iterator, context):
                        yield response
                except BaseException as exc:
                    error = exc
                    raise
                finally:
                    self._end(span, token, method, context, started, error)

            return streaming

        async def unary(request_or_iterator: Any, context: Any) -> Any:
            started = time.perf_counter()
            span, token = self._start(method, context)
            error: BaseException | None = None
            try:
                return await behavior(request_or_iterator, context)
            except BaseException as exc:
                error = exc
                raise
            finally:
                self._end(span, token, method, context, started, error)

        return unary


def _server_code(context: grpc.aio.ServicerContext, error: BaseException | None) -> grpc.StatusCode:
    if isinstance(error, asyncio.CancelledError):
        return grpc.StatusCode.CANCELLED
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.OK


class _ClientInterceptorBase:
    def __init__(self, telemetry: Telemetry, target: str) -> None:
        self._tracer = telemetry.tracer
        host, _, port = target.rpartition(":")
        self._server_attributes: dict[str, Any] = {"server.address": host or target}
        if port.isdigit():
            self._server_attributes["server.port"] = int(port)
        self._duration = telemetry.meter.create_histogram(
            "rpc.client.call.duration",
            unit="s",
            description="Duration of outgoing RPCs.",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    def _start(
        self, details: grpc.aio.ClientCallDetails
    ) -> tuple[trace.Span, grpc.aio.ClientCallDetails, str]:
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        span = self._tracer.start_span(
            method.lstrip("/"), kind=SpanKind.CLIENT,
            attributes=rpc_attributes(method) | self._server_attributes,
        )  # fmt: skip
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        metadata = grpc.aio.Metadata(*(tuple(details.metadata or ())))
        for key, value in carrier.items():
            metadata.add(key, value)
        new_details = grpc.aio.ClientCallDetails(
            method=details.method,
            timeout=details.timeout,
            metadata=metadata,
            credentials=details.credentials,
            wait_for_ready=details.wait_for_ready,
        )
        return span, new_details, method

    def _end(
        self, span: trace.Span, method: str, started: float, code: grpc.StatusCode, details: str
    ) -> None:
        _finish_span(span, code, details, code is not grpc.StatusCode.OK)
        attributes = rpc_attributes(method) | status_attributes(code) | self._server_attributes
        self._duration.record(time.perf_counter() - started, attributes)


class UnaryUnaryTelemetryInterceptor(
    _ClientInterceptorBase,
    grpc.aio.UnaryUnaryClientInterceptor,  # type: ignore[misc]
):
    """CLIENT span around a unary call; trace context goes out in the metadata."""

    async def intercept_unary_unary(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> Any:
        started = time.perf_counter()
        span, new_details, method = self._start(details)
        code, message = grpc.StatusCode.OK, ""
        try:
            call = await continuation(new_details, request)
            return await call
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), exc.details() or ""
            raise
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        finally:
            self._end(span, method, started, code, message)


class UnaryStreamTelemetryInterceptor(
    _ClientInterceptorBase,
    grpc.aio.UnaryStreamClientInterceptor,  # type: ignore[misc]
):
    """CLIENT span that lasts until the response stream ends."""

    async def intercept_unary_stream(
        self, continuation: Callable[..., Any], details: grpc.aio.ClientCallDetails, request: Any
    ) -> AsyncIterator[Any]:
        started = time.perf_counter()
        span, new_details, method = self._start(details)
        try:
            call = await continuation(new_details, request)
        except BaseException:
            self._end(span, method, started, grpc.StatusCode.UNKNOWN, "call failed to start")
            raise
        return self._responses(call, span, method, started)

    async def _responses(
        self, call: Any, span: trace.Span, method: str, started: float
    ) -> AsyncIterator[Any]:
        code, message = grpc.StatusCode.OK, ""
        try:
            async for response in call:
                yield response
        except grpc.aio.AioRpcError as exc:
            code, message = exc.code(), exc.details() or ""
            raise
        except (asyncio.CancelledError, GeneratorExit):
            code = grpc.StatusCode.CANCELLED
            call.cancel()
            raise
        finally:
            self._end(span, method, started, code, message)


def client_interceptors(telemetry: Telemetry, target: str) -> list[Any]:
    return [
        UnaryUnaryTelemetryInterceptor(telemetry, target),
        UnaryStreamTelemetryInterceptor(telemetry, target),
    ]
