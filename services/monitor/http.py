"""The monitor's HTTP endpoint: a tiny HTTP/1.1 server on asyncio streams (GET and HEAD only).

Routes map a path to a function returning (status, content type, body). Every response closes
the connection; a request head larger than `MAX_HEAD_BYTES` or slower than `READ_TIMEOUT_SECONDS`
is refused. Routes of the monitor:
- `GET /healthz`: 200 `ok` while the process serves (a liveness probe).
- `GET /api/health`: the HealthReport as JSON (proto field names, every field present).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus

from google.protobuf import json_format

from services.monitor.state import MonitorState

log = logging.getLogger(__name__)

MAX_HEAD_BYTES = 16 * 1024
READ_TIMEOUT_SECONDS = 10.0
CLOSE_TIMEOUT_SECONDS = 5.0

Response = tuple[int, str, bytes]
Route = Callable[[], Response]

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


class HttpServer:
    """Serves `routes` on one port until `close`."""

    def __init__(self, routes: Mapping[str, Route]) -> None:
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
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_SECONDS)
            method, path = _request_line(head)
            status, content_type, body = self._respond(method, path)
            _write(writer, status, content_type, b"" if method == "HEAD" else body, len(body))
            await writer.drain()
        except (asyncio.LimitOverrunError, ValueError):
            _write(writer, HTTPStatus.BAD_REQUEST, TEXT, b"bad request\n")
        except (asyncio.IncompleteReadError, TimeoutError, ConnectionError) as exc:
            log.debug("http: %r", exc)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()
            del self._connections[task]

    def _respond(self, method: str, path: str) -> Response:
        route = self._routes.get(path)
        if route is None:
            return HTTPStatus.NOT_FOUND, TEXT, b"not found\n"
        if method not in ("GET", "HEAD"):
            return HTTPStatus.METHOD_NOT_ALLOWED, TEXT, b"method not allowed\n"
        try:
            return route()
        except Exception:
            log.exception("http: %s failed", path)
            return HTTPStatus.INTERNAL_SERVER_ERROR, TEXT, b"internal error\n"


def _request_line(head: bytes) -> tuple[str, str]:
    """(method, path without query) of a request head; ValueError when malformed."""
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    method, target, _version = line.split(" ")
    return method, target.split("?", 1)[0]


def _write(
    writer: asyncio.StreamWriter,
    status: int,
    content_type: str,
    body: bytes,
    length: int | None = None,
) -> None:
    reason = HTTPStatus(status).phrase
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        f"Content-Type: {content_type}\r\n"
        f"Content-Length: {len(body) if length is None else length}\r\n"
        "Cache-Control: no-store\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + body)


def monitor_routes(state: MonitorState) -> dict[str, Route]:
    """The monitor's routes over its state."""

    def healthz() -> Response:
        return HTTPStatus.OK, TEXT, b"ok"

    def api_health() -> Response:
        body = json_format.MessageToJson(
            state.health_report(),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
            unquote_int64_if_possible=True,
        )
        return HTTPStatus.OK, JSON, body.encode()

    return {"/healthz": healthz, "/api/health": api_health}
