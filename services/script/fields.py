"""What every request validator shares: the errors it raises and the text checks.

A leaf (it imports nothing of the service), so requests.py, casting.py and outline_input.py can all
use it without importing each other.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence


class InvalidRequest(ValueError):
    """A field breaks a documented limit (gRPC INVALID_ARGUMENT); the message names the field."""


class UnknownShow(LookupError):
    """The show is not in the catalog (gRPC NOT_FOUND)."""


def check_text(field: str, value: str, limit: int, required: bool = True) -> str:
    """`value` stripped; InvalidRequest when blank (if required), longer than `limit`
    characters, or holding control characters other than newline and tab."""
    text = value.strip()
    if required and not text:
        raise InvalidRequest(f"{field} is required")
    if len(value) > limit:
        raise InvalidRequest(f"{field} must be at most {limit} characters (got {len(value)})")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in text):
        raise InvalidRequest(f"{field} must not contain control characters")
    return text


def check_texts(field: str, values: Sequence[str], count: int, limit: int) -> list[str]:
    """A repeated text field: at most `count` items, each non-blank and within `limit`."""
    if len(values) > count:
        raise InvalidRequest(f"{field} has {len(values)} items; at most {count}")
    return [check_text(f"{field}[{i}]", value, limit) for i, value in enumerate(values)]
