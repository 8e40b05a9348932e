"""A real gRPC server-streaming RPC whose time limit runs out while gRPC is sending: the client
(without a deadline of its own) gets DEADLINE_EXCEEDED. With `asyncio.timeout` around the
handler's `yield`, the timer cancelled gRPC's send, gRPC took it for a client cancel and the RPC
never ended (a CI run hung for 120 s on this)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from grpc import aio

from services.script.time_limits import steps_within, timeout_message

MESSAGE = b"x" * 1_000_000  # Big enough that sending waits on the slow client's window.


async def _messages() -> AsyncIterator[bytes]:
    while True:
        await asyncio.sleep(0)
        yield MESSAGE


async def _handler(request: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[bytes]:
    try:
        async for message in steps_within(_messages(), 0.3):
            yield message
    except TimeoutError:
        await context.abort(grpc.StatusCode.DEADLINE_EXCEEDED, timeout_message(0.3))


async def test_the_limit_ends_the_rpc_while_messages_are_being_sent() -> None:
    server = aio.server()
    method = grpc.unary_stream_rpc_method_handler(
        _handler, request_deserializer=bytes, response_serializer=bytes
    )
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.T", {"S": method}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    received = 0
    try:
        options = [("grpc.max_receive_message_length", 2 * len(MESSAGE))]
        async with aio.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
            call = channel.unary_stream("/t.T/S", request_serializer=bytes)(b"")
            try:
                async with asyncio.timeout(60):  # Only so a regression fails instead of hanging.
                    async for _ in call:
                        received += 1
                        await asyncio.sleep(0.01)  # A slow reader: the server's sends wait.
            except grpc.aio.AioRpcError as exc:
                stopped = exc
            else:
                raise AssertionError("the stream ended without the time limit")
    finally:
        await server.stop(0)
    assert stopped.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "DOPPEL_EPISODE_TIMEOUT_SECONDS" in (stopped.details() or "")
    assert received >= 1
