"""Opaque page tokens for keyset pagination.

A token holds the sort key of the last row served, (created_at, id), and a fingerprint of the
query it belongs to. The next page continues strictly after that key, so rows inserted meanwhile
(newer, so before the cursor) neither repeat nor push anything out of later pages; a token used
with other filters is refused rather than silently skipping rows.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

from services.script.library.errors import InvalidArgument

MAX_PAGE_SIZE = 100
MAX_TOKEN_CHARS = 512
_VERSION = 1


@dataclass(frozen=True)
class Cursor:
    created_at: datetime
    id: str


def check_page_size(page_size: int) -> int:
    """0 means the default (20); 1..100 otherwise."""
    if page_size == 0:
        return 20
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidArgument(f"page_size must be between 1 and {MAX_PAGE_SIZE}: {page_size}")
    return page_size


def fingerprint(*filters: object) -> str:
    encoded = json.dumps(filters, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(encoded.encode()).hexdigest()[:16]


def encode(cursor: Cursor, query: str) -> str:
    payload = {"v": _VERSION, "c": cursor.created_at.isoformat(), "i": cursor.id, "q": query}
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(token: str, query: str) -> Cursor | None:
    """The cursor of `token` (None for the first page); InvalidArgument for a token that is
    malformed or was made for another query."""
    if not token:
        return None
    if len(token) > MAX_TOKEN_CHARS:
        raise InvalidArgument(f"page_token is longer than {MAX_TOKEN_CHARS} characters")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        payload = json.loads(raw)
        cursor = Cursor(datetime.fromisoformat(payload["c"]), str(payload["i"]))
        version, made_for = payload["v"], payload["q"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise InvalidArgument("page_token is not one this service issued") from None
    if version != _VERSION or cursor.created_at.tzinfo is None:
        raise InvalidArgument("page_token is not one this service issued")
    if made_for != query:
        raise InvalidArgument("page_token was issued for a listing with other filters")
    return cursor
