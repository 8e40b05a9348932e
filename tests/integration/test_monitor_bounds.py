"""The monitor's bounds against real servers on loopback: beyond each, a clear refusal with a
retry hint, never a hang or unbounded memory.

- HTTP: connections over the cap get 503 with Retry-After, and service resumes once they close;
  one peer's idle sockets beyond its per-peer cap are refused while other peers are served, and
  idle sockets are closed after the idle timeout; a body that does not fit in the shared body
  budget gets 429 with Retry-After without being read (gzip bodies are charged their decoded
  size); a handler that takes too long gets 503; a client that does not read its response is
  cut off. Peers are told apart by address: 127.0.0.2 and up are other loopback peers.
- Ingestion: an export over the pending-bytes bound is refused RESOURCE_EXHAUSTED with RetryInfo
  on gRPC and 429 with Retry-After on OTLP/HTTP.
- Forwarding: with the upstream stalled, exports over the forward queue's byte bound are dropped
  and counted (spans, bytes, the telemetry_loss alert).
- WatchAlerts beyond its subscriber cap: RESOURCE_EXHAUSTED with `retry-after-ms`.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator

import grpc
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

from doppelganger.v1 import monitor_pb2
from services.monitor import http
from services.monitor.alerts import MAX_SUBSCRIBERS
from services.monitor.http import HttpServer, Request, Response
from services.monitor.server import WATCH_RETRY_AFTER_MS, MonitorServer
from shared.config import Settings
from testkit import eventually
from tests.integration.monitor_support import (
    PROTOBUF,
    Monitor,
    connect,
    exchange,
    export,
    get,
    read_reply,
    span,
    start_monitor,
)


def post(path: str, length: int, *extra: str) -> str:
    lines = "".join(f"{line}\r\n" for line in extra)
    return (
        f"POST {path} HTTP/1.1\r\nHost: monitor\r\nContent-Type: {PROTOBUF}\r\n"
        f"Content-Length: {length}\r\n{lines}\r\n"
    )


@pytest.fixture
async def monitor(settings: Settings) -> AsyncIterator[Monitor]:
    server, clock = await start_monitor(
        settings,
        monitor_thresholds=(("hold_seconds", 0.0),),
        monitor_max_export_bytes=16 * 1024 * 1024,  # The bulk export below is about 6 MB.
    )
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield Monitor(server, channel, clock)
    await server.stop(0)


# HTTP ------------------------------------------------------------------------------------------


async def test_connections_over_the_cap_get_503_with_retry_after_then_service_resumes(
    monitor: Monitor,
) -> None:
    server: MonitorServer = monitor.server
    port = server.http_port
    per_peer = http.MAX_CONNECTIONS_PER_PEER
    peers = [f"127.0.0.{2 + i // per_peer}" for i in range(http.MAX_CONNECTIONS)]
    idle = [await connect(port, source=peer) for peer in peers]  # Send nothing, hold.
    await eventually(lambda: server.http.open_connections == http.MAX_CONNECTIONS, what="all held")
    status, headers, body = await exchange(port, get("/healthz"))
    assert (status, headers["retry-after"]) == (503, "1")
    assert f"more than {http.MAX_CONNECTIONS} connections" in body.decode()
    assert server.http.refused_connections == 1
    assert server.http.open_connections == http.MAX_CONNECTIONS  # The held ones are kept.
    for _, writer in idle:
        writer.close()
    await eventually(lambda: server.http.open_connections == 0, what="held connections closed")
    assert await exchange(port, get("/healthz")) == (200, plain_headers(), b"ok")
    status, _, metrics = await exchange(port, get("/metrics"))  # Prometheus sees the refusal.
    assert status == 200
    assert 'doppel_monitor_http_refused_total{reason="connections"} 1' in metrics.decode()
    assert 'doppel_monitor_http_refused_total{reason="body_budget"} 0' in metrics.decode()


async def test_idle_sockets_of_one_peer_do_not_lock_the_others_out(monitor: Monitor) -> None:
    """72 idle sockets from one address: 16 are held, the rest refused at once; /metrics and
    OTLP/HTTP keep answering everyone else."""
    server: MonitorServer = monitor.server
    port = server.http_port
    per_peer = http.MAX_CONNECTIONS_PER_PEER
    intruder = "127.0.0.2"
    count = http.MAX_CONNECTIONS + 8
    idle = [await connect(port, source=intruder) for _ in range(count)]
    refused = count - per_peer
    await eventually(
        lambda: server.http.counters.refused_peer_connections == refused, what="the rest refused"
    )
    assert server.http.open_connections == per_peer
    status, headers, body = await read_reply(idle[-1][0])
    assert (status, headers["retry-after"]) == (503, "1")
    assert f"more than {per_peer} connections open from {intruder}" in body.decode()
    status, _, metrics = await exchange(port, get("/metrics"))  # Another peer is served.
    assert status == 200
    assert f'doppel_monitor_http_refused_total{{reason="peer_connections"}} {refused}' in (
        metrics.decode()
    )
    payload = export("other-peer", [span("op")]).SerializeToString()
    status, _, _ = await exchange(port, post("/v1/traces", len(payload)), payload)
    assert status == 200
    assert (await exchange(port, get("/healthz"), source=intruder))[0] == 503
    assert (await monitor.health()).spans_received == 1
    for _, writer in idle:
        writer.close()
    await eventually(lambda: server.http.open_connections == 0, what="idle sockets closed")


async def test_idle_connections_are_closed_after_the_idle_timeout(monitor: Monitor) -> None:
    server: MonitorServer = monitor.server
    server.http.idle_timeout = 0.2
    reader, writer = await connect(server.http_port)  # Sends nothing.
    assert await asyncio.wait_for(reader.read(), 30) == b""  # Closed without an answer.
    writer.close()
    assert server.http.counters.idle_closed == 1
    status, _, metrics = await exchange(server.http_port, get("/metrics"))
    assert status == 200 and 'doppel_monitor_http_refused_total{reason="idle"} 1' in (
        metrics.decode()
    )


def plain_headers() -> dict[str, str]:
    return {
        "content-type": http.TEXT,
        "content-length": "2",
        "cache-control": "no-store",
        "connection": "close",
    }


async def test_a_body_over_the_remaining_budget_gets_429_without_being_read(
    monitor: Monitor,
) -> None:
    server: MonitorServer = monitor.server
    port = server.http_port
    budget = server.http.budget
    largest = server.http.max_body
    holders = http.BODY_BUDGET_BYTES // largest  # 4 bodies of 16 MiB fill it.
    # Heads announcing the largest body allowed, and no body: each reserves 16 MiB.
    held = [await connect(port, post("/v1/traces", largest)) for _ in range(holders)]
    await eventually(lambda: budget.reserved == http.BODY_BUDGET_BYTES, what="budget reserved")
    # One more byte does not fit: refused from its head alone (no body is ever sent, so an
    # answer proves it was not read), while requests without a body go on.
    status, headers, body = await exchange(port, post("/v1/traces", 1))
    assert (status, headers["retry-after"]) == (429, "1")
    assert "retry later" in body.decode()
    assert server.http.refused_bodies == 1
    assert (await exchange(port, get("/healthz")))[0] == 200
    for _, writer in held:
        writer.close()
    await eventually(lambda: budget.reserved == 0, what="budget given back")
    payload = export("http-bounded", [span("op") for _ in range(5)]).SerializeToString()
    status, _, answer = await exchange(port, post("/v1/traces", len(payload)), payload)
    assert status == 200
    assert not trace_service_pb2.ExportTraceServiceResponse.FromString(answer).HasField(
        "partial_success"
    )
    assert (await monitor.health()).spans_received == 5
    assert budget.reserved == 0


async def serve(
    routes: dict[str, tuple[frozenset[str], http.Handler]], **limits: object
) -> HttpServer:
    server = HttpServer(routes, **limits)  # type: ignore[arg-type]
    await server.start("127.0.0.1", 0)
    return server


async def test_gzip_bodies_are_charged_their_decoded_size() -> None:
    async def size(request: Request) -> Response:
        return http.text(200, str(len(request.body)))

    server = await serve({"/echo": (frozenset({"POST"}), size)}, body_budget=1024 * 1024)
    try:
        zipped = gzip.compress(b"\0" * (2 * 1024 * 1024))  # A few KiB on the wire.
        head = post("/echo", len(zipped), "Content-Encoding: gzip")
        status, headers, _ = await exchange(server.port, head, zipped)
        assert (status, headers["retry-after"]) == (429, "1")
        zipped = gzip.compress(b"\0" * (512 * 1024))
        head = post("/echo", len(zipped), "Content-Encoding: gzip")
        assert await exchange(server.port, head, zipped) == (
            200, {**plain_headers(), "content-length": "7"}, b"524288\n",
        )  # fmt: skip
        await eventually(lambda: server.open_connections == 0, what="connections closed")
        assert (server.budget.reserved, server.refused_bodies) == (0, 1)
    finally:
        await server.close()


async def test_a_handler_that_takes_too_long_gets_503_with_retry_after() -> None:
    never = asyncio.Event()

    async def stuck(request: Request) -> Response:
        await never.wait()
        return http.text(200, "too late")

    server = await serve({"/stuck": (frozenset({"GET"}), stuck)}, respond_timeout=0.2)
    try:
        status, headers, body = await exchange(server.port, get("/stuck"))
        assert (status, headers["retry-after"]) == (503, "1")
        assert "no answer within 0.2 s" in body.decode()
        assert server.timed_out == 1
        await eventually(lambda: server.open_connections == 0, what="connection closed")
    finally:
        await server.close()


async def test_a_client_that_does_not_read_its_response_is_cut_off() -> None:
    big = b"x" * (32 * 1024 * 1024)  # Far beyond what the socket buffers hold.

    async def large(request: Request) -> Response:
        return Response(200, "application/octet-stream", big)

    server = await serve({"/large": (frozenset({"GET"}), large)}, respond_timeout=0.3)
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        client.connect(("127.0.0.1", server.port))
        client.sendall(get("/large").encode())
        # The client reads nothing: the server must give up on it and free the connection.
        await eventually(lambda: server.timed_out == 1, what="the send timed out")
        await eventually(lambda: server.open_connections == 0, what="the connection was aborted")
        received = await asyncio.to_thread(drain_socket, client)
        assert received < len(big)  # Cut off, not delivered in full.
    finally:
        client.close()
        await server.close()


def drain_socket(client: socket.socket) -> int:
    client.settimeout(30)
    received = 0
    try:
        while chunk := client.recv(1 << 20):
            received += len(chunk)
    except ConnectionResetError:
        pass
    return received


# Ingestion -------------------------------------------------------------------------------------


async def test_exports_over_the_pending_bytes_bound_are_refused_with_a_retry_hint(
    monitor: Monitor,
) -> None:
    server: MonitorServer = monitor.server
    queue = server.state.queue
    bulk = export("bulk", [span("bulk") for _ in range(100_000)])  # ~0.5 s of applying.
    fat = export("fat", [span("fat")])
    fat.resource_spans[0].scope_spans[0].spans[0].attributes.add(
        key="payload"
    ).value.string_value = "p" * 20_000
    queue.max_pending_bytes = bulk.ByteSize() + 10_000  # Room for the bulk, not for both.
    assert queue.max_pending_spans > 100_000 + 1  # The span bound alone would let fat in.
    await monitor.traces.Export(bulk)
    # While the bulk export is applied (its bytes held until it is done), a fat one is refused:
    # on OTLP/HTTP with 429 and Retry-After...
    body = fat.SerializeToString()
    status, headers, _ = await exchange(server.http_port, post("/v1/traces", len(body)), body)
    assert (status, headers["retry-after"]) == (429, "1")
    # ...and on gRPC with RESOURCE_EXHAUSTED and a RetryInfo of 1 s.
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await monitor.traces.Export(fat)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "MiB of exports pending" in (refused.value.details() or "")
    trailing = dict(refused.value.trailing_metadata() or ())
    retry = RetryInfo.FromString(trailing["google.rpc.retryinfo-bin"])
    assert retry.retry_delay.seconds == 1
    assert (queue.refused_exports, queue.refused_for_bytes) == (2, 2)
    health = await monitor.health()  # Waits until the bulk export is applied.
    assert (health.spans_received, health.spans_dropped, health.spans_pending) == (100_000, 2, 0)
    assert queue.pending_bytes == 0
    await monitor.traces.Export(fat)  # Once the backlog is gone, the same export is taken.
    assert (await monitor.health()).spans_received == 100_001
    await monitor.tick(0.1)
    (loss,) = [a for a in await monitor.alerts() if a.rule == "telemetry_loss"]
    assert (loss.operation, loss.value) == ("overload", 2.0)


# Forwarding ------------------------------------------------------------------------------------


class StalledUpstream(trace_service_pb2_grpc.TraceServiceServicer):
    """An upstream that takes exports and never answers (until released)."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.calls = 0

    async def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: object
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        self.calls += 1
        await self.release.wait()
        return trace_service_pb2.ExportTraceServiceResponse()


async def test_the_forward_queue_drops_and_counts_by_bytes(settings: Settings) -> None:
    upstream = grpc.aio.server()
    stalled = StalledUpstream()
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(stalled, upstream)
    upstream_port = upstream.add_insecure_port("127.0.0.1:0")
    await upstream.start()
    server, clock = await start_monitor(
        settings,
        monitor_forward_endpoint=f"127.0.0.1:{upstream_port}",
        monitor_thresholds=(("hold_seconds", 0.0),),
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            m = Monitor(server, channel, clock)
            forwarder = server.state.forwarder
            assert forwarder is not None
            exports = [export("svc", [span("op") for _ in range(100)]) for _ in range(10)]
            size = exports[0].ByteSize()
            assert all(e.ByteSize() == size for e in exports)
            forwarder.max_bytes = 3 * size  # The export-count bound (1000) is far away.
            for request in exports:
                await m.traces.Export(request)
            await eventually(
                lambda: stalled.calls >= 1, what="the first export reached the upstream"
            )
            # One export in flight (stalled) and two queued fill the bytes; seven dropped.
            counts = forwarder.counts["traces"]
            assert (counts.exports_dropped, counts.spans_dropped) == (7, 700)
            assert counts.bytes_dropped == 7 * size
            assert forwarder.queued_bytes == 3 * size and forwarder.queued == 2
            health = await m.health()
            assert health.spans_received == 1000  # Ingestion took everything.
            assert (health.forward_spans_dropped, health.spans_forwarded) == (700, 0)
            await m.tick(0.1)
            (loss,) = [a for a in await m.alerts() if a.rule == "telemetry_loss"]
            assert (loss.service, loss.operation, loss.value) == (
                "monitor", "forward_dropped", 700.0,
            )  # fmt: skip
            stalled.release.set()
            await eventually(lambda: forwarder.queued_bytes == 0, what="the queue drained")
            assert counts.exports_sent == 3 and counts.spans_sent == 300
    finally:
        stalled.release.set()
        await server.stop(0)
        await upstream.stop(0)


# WatchAlerts -----------------------------------------------------------------------------------


async def test_watch_alerts_beyond_the_cap_is_refused_with_retry_after_ms(
    monitor: Monitor,
) -> None:
    engine = monitor.server.state.engine
    request = monitor_pb2.WatchAlertsRequest(only_new=True)
    streams = [monitor.monitor.WatchAlerts(request) for _ in range(MAX_SUBSCRIBERS)]
    await eventually(
        lambda: engine.subscriber_count == MAX_SUBSCRIBERS, what="every stream subscribed"
    )
    extra = monitor.monitor.WatchAlerts(request)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await asyncio.wait_for(extra.read(), 30)
    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"retry in {WATCH_RETRY_AFTER_MS} ms" in (refused.value.details() or "")
    trailing = dict(refused.value.trailing_metadata() or ())
    assert trailing["retry-after-ms"] == str(WATCH_RETRY_AFTER_MS)
    streams.pop().cancel()  # A slot frees: the next watcher is served.
    await eventually(lambda: engine.subscriber_count == MAX_SUBSCRIBERS - 1, what="a stream left")
    again = monitor.monitor.WatchAlerts(request)
    await eventually(
        lambda: engine.subscriber_count == MAX_SUBSCRIBERS, what="the retry subscribed"
    )
    for stream in [*streams, again]:
        stream.cancel()
    await eventually(lambda: engine.subscriber_count == 0, what="every stream left")
