"""OTLP/HTTP bodies: binary protobuf or JSON, as the OTLP specification and the Collector take them.

- The Content-Type must be `application/x-protobuf` or `application/json` (parameters such as
  `charset` are ignored). Anything else, a missing Content-Type included, gets 415 Unsupported
  Media Type, as from the OpenTelemetry Collector: a body is never guessed at.
- JSON is the OTLP JSON encoding: lowerCamelCase (or the proto's own) field names, enums as
  numbers or names, 64-bit integers as strings or numbers, trace and span ids as hex (not the
  base64 proto JSON would use); unknown fields are ignored, as the specification asks. At most
  `MAX_JSON_BYTES`: JSON parsing runs on the event loop and builds Python objects many times the
  size of the text, so a JSON export is held to a smaller size than a protobuf one.
- The response is in the request's encoding.
"""

from __future__ import annotations

import base64
import json
from http import HTTPStatus
from typing import Any, TypeVar

from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

from services.monitor.http import HttpError, Request, Response

PROTOBUF = "application/x-protobuf"
JSON = "application/json"
MEDIA_TYPES = (PROTOBUF, JSON)
MAX_JSON_BYTES = 1024 * 1024
ID_FIELDS = frozenset(
    {"traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id"}
)

M = TypeVar("M", bound=Message)


def media_type(request: Request) -> str:
    """The body's media type, or 415 unless it is one OTLP/HTTP defines."""
    given = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if given not in MEDIA_TYPES:
        shown = given or "no Content-Type"
        raise HttpError(
            HTTPStatus.UNSUPPORTED_MEDIA_TYPE, f"send {PROTOBUF} or {JSON}, not {shown}"
        )
    return given


def decode(request: Request, message_type: type[M]) -> tuple[M, str]:
    """The export in the body, and its media type (the response's)."""
    media = media_type(request)
    if media == PROTOBUF:
        try:
            return message_type.FromString(request.body), media
        except DecodeError as exc:
            raise HttpError(HTTPStatus.BAD_REQUEST, "body is not a valid OTLP protobuf") from exc
    if len(request.body) > MAX_JSON_BYTES:
        raise HttpError(
            HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
            f"JSON body over {MAX_JSON_BYTES} bytes; send {PROTOBUF} for larger exports",
        )
    try:
        tree = _ids_as_base64(json.loads(request.body))
        message = message_type()
        json_format.ParseDict(tree, message, ignore_unknown_fields=True)
    except (ValueError, TypeError, RecursionError, json_format.ParseError) as exc:
        reason = f"body is not valid OTLP JSON: {exc}"[:300]
        raise HttpError(HTTPStatus.BAD_REQUEST, reason) from exc
    return message, media


def encode(status: int, message: Message, media: str) -> Response:
    if media == JSON:
        return Response(status, JSON, json_format.MessageToJson(message, indent=None).encode())
    return Response(status, PROTOBUF, message.SerializeToString())


def _ids_as_base64(node: Any) -> Any:
    """The JSON tree with hex trace and span ids turned into the base64 proto JSON expects."""
    if isinstance(node, list):
        return [_ids_as_base64(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {}
    for key, value in node.items():
        if key in ID_FIELDS and isinstance(value, str):
            try:
                value = base64.b64encode(bytes.fromhex(value)).decode()
            except ValueError as exc:
                raise ValueError(f"{key} must be hex, got {value[:40]!r}") from exc
        else:
            value = _ids_as_base64(value)
        converted[key] = value
    return converted
