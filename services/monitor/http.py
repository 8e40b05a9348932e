"""A tiny HTTP/1.1 server on asyncio streams: GET, HEAD and POST, one request per connection.

Routes map a path to (allowed methods, async handler). A handler gets the parsed `Request` and
returns a `Response`. Limits: a request head of at most `MAX_HEAD_BYTES`, read within
`READ_TIMEOUT_SECONDS`; a body of at most `MAX_BODY_BYTES` (after gzip decoding too), sent with
Content-Length (chunked bodies get 411). Every response closes the connection. The monitor's
routes are in services/monitor/web.py.
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
READ_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0

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
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def text(status: int, message: str) -> Response:
    return Response(status, TEXT, (message + "\n").encode())


class HttpServer:
    """Serves `routes` ({path: (methods, handler)}) on one port until `close`."""

    def __init__(self, routes: Mapping[str, tuple[frozenset[str], Handler]]) -> None:
        self._routes = dict(routes)
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.port = 0

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
        for writer in self._connections.values():
            writer.close()
        if self._connections:
            await asyncio.wait(list(self._connections), timeout=CLOSE_TIMEOUT_SECONDS)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._server.wait_closed(), CLOSE_TIMEOUT_SECONDS)
        self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections[task] = writer
        try:
            request = await asyncio.wait_for(_read_request(reader), READ_TIMEOUT_SECONDS)
            response = await self._respond(request)
            body = b"" if request.method == "HEAD" else response.body
            _write(writer, response, body, len(response.body))
            await writer.drain()
        except HttpError as error:
            _write(writer, text(error.status, str(error)))
        except (asyncio.LimitOverrunError, ValueError):
            _write(writer, text(HTTPStatus.BAD_REQUEST, "bad request"))
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
            log.debug("http: %r", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            del self._connections[task]

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


async def _read_request(reader: asyncio.StreamReader) -> Request:
    head = await reader.readuntil(b"\r\n\r\n")
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
        body = await _read_body(reader, headers)
    return Request(method, path, dict(parse_qsl(query)), headers, body)


async def _read_body(reader: asyncio.StreamReader, headers: Mapping[str, str]) -> bytes:
    if "content-length" not in headers:
        raise HttpError(HTTPStatus.LENGTH_REQUIRED, "Content-Length required")
    length = int(headers["content-length"])
    if not 0 <= length <= MAX_BODY_BYTES:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
    body = await reader.readexactly(length)
    encoding = headers.get("content-encoding", "identity").lower()
    if encoding == "gzip":
        return _gunzip(body)
    if encoding != "identity":
        raise HttpError(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"content-encoding {encoding}")
    return body


def _gunzip(body: bytes) -> bytes:
    decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = decoder.decompress(body, MAX_BODY_BYTES + 1)
    except (zlib.error, gzip.BadGzipFile) as exc:
        raise HttpError(HTTPStatus.BAD_REQUEST, "body is not valid gzip") from exc
    if len(data) > MAX_BODY_BYTES:
        raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {MAX_BODY_BYTES} bytes")
    return data


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
