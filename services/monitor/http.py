"""A tiny HTTP/1.1 server on asyncio streams (GET, HEAD, POST; one request per connection).

Written for the monitor instead of taking a framework so that every resource is bounded by a
module constant: connections (per peer too), head and body sizes, a body budget across
connections, gzip decoded in chunks, and timeouts for idle, read and respond; a refusal is
answered (503, 411, 413 or 429) and the connection closed gracefully. The limits and what each
refusal looks like: docs/monitor.md, HTTP limits. Routes: services/monitor/web.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qsl

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024
MAX_CONNECTIONS = 64
MAX_CONNECTIONS_PER_PEER = 16
BODY_BUDGET_BYTES = 64 * 1024 * 1024
GUNZIP_CHUNK_BYTES = 256 * 1024
IDLE_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 10.0
RESPOND_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0
LINGER_SECONDS = 2.0
LINGER_BYTES = MAX_BODY_BYTES
RETRY_AFTER_SECONDS = 1

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: Mapping[str, str] = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # Lowercase names.
    body: bytes = b""


@dataclass(frozen=True)
class Response:
    status: int
    content_type: str
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Awaitable[Response]]


class HttpError(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})


def text(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, TEXT, (message + "\n").encode(), dict(headers or {}))


def _retry_later(status: int, message: str) -> Response:
    return text(status, message, {"Retry-After": str(RETRY_AFTER_SECONDS)})


class BodyBudget:
    """Bytes of request bodies all connections may hold at once."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.reserved = 0

    def take(self, size: int) -> bool:
        if self.reserved + size > self.limit:
            return False
        self.reserved += size
        return True

    def give_back(self, size: int) -> None:
        self.reserved -= size


class _Reservation:
    """What one connection holds of the budget; all of it is given back when it ends."""

    def __init__(self, budget: BodyBudget) -> None:
        self._budget = budget
        self.held = 0

    def take(self, size: int) -> None:
        if not self._budget.take(size):
            raise HttpError(
                HTTPStatus.TOO_MANY_REQUESTS,
                f"too many request bodies in flight (over {self._budget.limit} bytes); retry later",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        self.held += size

    def give_back(self, size: int) -> None:
        size = min(size, self.held)
        self._budget.give_back(size)
        self.held -= size


@dataclass
class HttpCounters:
    """Refusals since start: connections over the cap or the per-peer cap, idle connections
    closed, bodies over the budget (429) or the size limit (413), responses not made (503) or
    not taken (aborted) within the respond timeout. The monitor's state holds them, so
    `/metrics` shows them."""

    refused_connections: int = 0
    refused_peer_connections: int = 0
    idle_closed: int = 0
    refused_bodies: int = 0
    too_large: int = 0
    timed_out: int = 0


def _peer(writer: asyncio.StreamWriter) -> str:
    """The client's address (without its port): what the per-peer cap counts by."""
    name = writer.get_extra_info("peername")
    return str(name[0]) if isinstance(name, tuple) and name else ""


class HttpServer:
    """Serves `routes` ({path: (methods, handler)}) on one port until `close`."""

    def __init__(
        self,
        routes: Mapping[str, tuple[frozenset[str], Handler]],
        *,
        max_connections: int = MAX_CONNECTIONS,
        max_per_peer: int = MAX_CONNECTIONS_PER_PEER,
        max_body: int = MAX_BODY_BYTES,
        body_budget: int = BODY_BUDGET_BYTES,
        idle_timeout: float = IDLE_TIMEOUT_SECONDS,
        respond_timeout: float = RESPOND_TIMEOUT_SECONDS,
        counters: HttpCounters | None = None,
    ) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._refusing: dict[asyncio.Task[None], asyncio.StreamWriter] = {}  # Over the cap.
        self._per_peer: dict[str, int] = {}
        self.max_connections = max_connections
        self.max_per_peer = max_per_peer
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.budget = BodyBudget(body_budget)
        self.respond_timeout = respond_timeout
        self.port = 0
        self.counters = HttpCounters() if counters is None else counters

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    @property
    def refused_connections(self) -> int:
        return self.counters.refused_connections

    @property
    def refused_bodies(self) -> int:
        return self.counters.refused_bodies

    @property
    def timed_out(self) -> int:
        return self.counters.timed_out

    async def start(self, host: str, port: int) -> None:
        try:
            self._server = await asyncio.start_server(
                self._handle, host, port, limit=MAX_HEAD_BYTES
            )
        except OSError as exc:
            raise OSError(f"monitor: cannot bind HTTP {host}:{port}: {exc}") from exc
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        """Stops listening and ends open connections (a waiting read sees end of stream)."""
        if self._server is None:
            return
        self._server.close()
        tasks = {**self._connections, **self._refusing}
        for writer in tasks.values():
            writer.close()
        if tasks:
            await asyncio.wait(list(tasks), timeout=CLOSE_TIMEOUT_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_SECONDS)
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        peer = _peer(writer)
        busy = ""
        if len(self._connections) >= self.max_connections:
            self.counters.refused_connections += 1
            busy = f"more than {self.max_connections} connections open; retry later"
        elif self._per_peer.get(peer, 0) >= self.max_per_peer:
            self.counters.refused_peer_connections += 1
            busy = f"more than {self.max_per_peer} connections open from {peer}; retry later"
        if busy:
            self._refusing[task] = writer
            try:
                _write(writer, _retry_later(HTTPStatus.SERVICE_UNAVAILABLE, busy))
                await _linger(reader, writer)
                await _close(writer, abort=False)
            finally:
                del self._refusing[task]
            return
        self._connections[task] = writer
        self._per_peer[peer] = self._per_peer.get(peer, 0) + 1
        reservation = _Reservation(self.budget)
        abort = refused = False
        try:
            request = await asyncio.wait_for(
                self._read_request(reader, reservation), READ_TIMEOUT_SECONDS
            )
            abort = await self._answer(request, writer)
            del request  # Its body is no longer reserved: do not hold it while closing.
        except HttpError as error:
            if error.status == HTTPStatus.TOO_MANY_REQUESTS:
                self.counters.refused_bodies += 1
            elif error.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
                self.counters.too_large += 1
            reservation.give_back(reservation.held)
            _write(writer, text(error.status, str(error), error.headers))
            refused = True
        except (asyncio.LimitOverrunError, ValueError):
            _write(writer, text(HTTPStatus.BAD_REQUEST, "bad request"))
            refused = True
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
            log.debug("http: %r", exc)
        finally:
            reservation.give_back(reservation.held)
            if refused:
                await _linger(reader, writer)
            await _close(writer, abort=abort)
            del self._connections[task]
            self._per_peer[peer] -= 1
            if not self._per_peer[peer]:
                del self._per_peer[peer]

    async def _read_request(
        self, reader: asyncio.StreamReader, reservation: _Reservation
    ) -> Request:
        """The request; its head must come within the idle timeout (else the connection is
        closed, counted)."""
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_timeout)
        except TimeoutError:
            self.counters.idle_closed += 1
            raise
        return await _parse_request(head, reader, reservation, self.max_body)

    async def _answer(self, request: Request, writer: asyncio.StreamWriter) -> bool:
        """Runs the route and sends its response within the respond timeout; True when the
        connection must be aborted (the client did not take the response in time)."""
        written = False
        try:
            async with asyncio.timeout(self.respond_timeout):
                response = await self._respond(request)
                body = b"" if request.method == "HEAD" else response.body
                _write(writer, response, body, len(response.body))
                written = True
                await writer.drain()
        except TimeoutError:
            self.counters.timed_out += 1
            if written:
                log.debug("http: %s: the client did not read the response in time", request.path)
                return True
            busy = f"no answer within {self.respond_timeout:g} s; retry later"
            _write(writer, _retry_later(HTTPStatus.SERVICE_UNAVAILABLE, busy))
        return False

    async def _respond(self, request: Request) -> Response:
        route = self._routes.get(request.path)
        if route is None:
            return text(HTTPStatus.NOT_FOUND, "not found")
        methods, handler = route
        if request.method not in methods and not (request.method == "HEAD" and "GET" in methods):
            return Response(
                HTTPStatus.METHOD_NOT_ALLOWED,
                TEXT,
                b"method not allowed\n",
                {"Allow": ", ".join(sorted(methods))},
            )
        try:
            return await handler(request)
        except HttpError:
            raise
        except Exception:
            log.exception("http: %s failed", request.path)
            return text(HTTPStatus.INTERNAL_SERVER_ERROR, "internal error")


async def _linger(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """After a refusal: sends what was written and a FIN, then reads and drops what the client
    still sends, until it closes, `LINGER_BYTES` or `LINGER_SECONDS`. Closing with unread data
    would send a reset, and the client would lose the refusal it has not read yet."""
    with contextlib.suppress(TimeoutError, ConnectionError, OSError, RuntimeError):
        async with asyncio.timeout(LINGER_SECONDS):
            if writer.can_write_eof():
                writer.write_eof()
            left = LINGER_BYTES
            while left > 0 and (chunk := await reader.read(min(left, 64 * 1024))):
                left -= len(chunk)


async def _close(writer: asyncio.StreamWriter, *, abort: bool) -> None:
    """Closes the connection: at once (dropping unsent data) when `abort`, else after what was
    written is sent, for at most CLOSE_TIMEOUT_SECONDS."""
    if abort:
        writer.transport.abort()
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT_SECONDS)
    except TimeoutError:
        writer.transport.abort()
    except ConnectionError:
        pass


async def _parse_request(
    head: bytes, reader: asyncio.StreamReader, reservation: _Reservation, max_body: int
) -> Request:
    lines = head.decode("latin-1").split("\r\n")
    method, target, _version = lines[0].split(" ")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    path, _, query = target.partition("?")
    body = b""
    if method == "POST":
        body = await _read_body(reader, headers, reservation, max_body)
    return Request(method, path, dict(parse_qsl(query)), headers, body)


def _too_large(max_body: int) -> HttpError:
    return HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {max_body} bytes")


async def _read_body(
    reader: asyncio.StreamReader,
    headers: Mapping[str, str],
    reservation: _Reservation,
    max_body: int,
) -> bytes:
    if "content-length" not in headers:
        raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
    length = int(headers["content-length"])
    if not 0 <= length <= max_body:
        raise _too_large(max_body)
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding not in ("gzip", "identity"):
        raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content-encoding {encoding}")
    reservation.take(length)  # Before reading: over the budget, the body is never read.
    body = await reader.readexactly(length)
    if encoding == "identity":
        return body
    data = _gunzip(body, reservation, max_body)
    reservation.give_back(length)  # The compressed body is dropped on return.
    return data


def _gunzip(body: bytes, reservation: _Reservation, max_body: int) -> bytes:
    """Decodes a gzip body (every member of it) chunk by chunk, reserving each chunk from the
    budget before it is made and stopping one chunk past `max_body`: a small body that would
    decode to gigabytes costs at most `max_body` plus a chunk."""
    decoded = bytearray()
    pending = body
    try:
        while pending:
            decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
            while not decoder.eof:
                reservation.take(GUNZIP_CHUNK_BYTES)
                chunk = decoder.decompress(pending, GUNZIP_CHUNK_BYTES)
                reservation.give_back(GUNZIP_CHUNK_BYTES - len(chunk))
                decoded += chunk
                if len(decoded) > max_body:
                    raise _too_large(max_body)
                pending = decoder.unconsumed_tail
                if not chunk and not pending:
                    raise HttpError(HTTPStatus.BAD_REQUEST, "gzip body is truncated")
            pending = decoder.unused_data  # A further gzip member, if any.
    except (zlib.error, gzip.BadGzipFile) as exc:
        decoded.clear()
        raise HttpError(HTTPStatus.BAD_REQUEST, "body is not valid gzip") from exc
    except BaseException:
        # The traceback keeps this frame alive until the cycle collector runs (wait_for's task
        # holds the exception): let it keep the frame, not megabytes of decoded body.
        decoded.clear()
        raise
    # The copy is momentary: decoding never awaits, so no other request runs meanwhile and at
    # most one such copy exists at a time; the reservation covers the body from here on.
    return bytes(decoded)


def _write(
    writer: asyncio.StreamWriter, response: Response, body: bytes | None = None, length: int = -1
) -> None:
    body = response.body if body is None else body
    reason = HTTPStatus(response.status).phrase
    extra = "".join(f"{name}: {value}\r\n" for name, value in response.headers.items())
    head = (
        f"HTTP/1.1 {response.status} {reason}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(body) if length < 0 else length}\r\n"
        f"{extra}"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)
