"""Accepted bearer tokens: who each one is and which role it has.

`DOPPEL_AUTH_TOKENS` (comma separated) and `DOPPEL_AUTH_TOKENS_FILE` (one a line, `#` comments)
hold entries of the form

    role:name:token     e.g. writer:ci:3q2...   (the name is the caller's identity)
    role:token          the identity is the token's fingerprint, `token-<12 hex digits>`
    token               a bare token (the old syntax) is a `reader`: fail safe, not open

Roles: reader, writer, service, admin (shared/roles.py). A token holds only letters, digits and
`-._~+/=` (RFC 6750's token68, so never `:` or `,`); a name 1-64 of letters, digits and `._@-`.
Several tokens may share a name (rotation: old and new token side by side). Errors name the
source and the entry's number, never its text. The identity is what logs, spans and metrics
carry; the fingerprint is a truncated SHA-256, so it does not give back a long random token.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import ConfigError, Settings
from shared.roles import ROLE_NAMES, Role

TOKEN_PATTERN = re.compile(r"[A-Za-z0-9._~+/=-]+")
NAME_PATTERN = re.compile(r"[A-Za-z0-9._@-]{1,64}")
BARE_TOKEN_ROLE = Role.READER
FINGERPRINT_PREFIX = "token-"
GENERATED_TOKEN_BYTES = 32


@dataclass(frozen=True)
class TokenEntry:
    """One accepted token; `secret` is never shown (repr) or logged."""

    secret: bytes = field(repr=False)
    name: str
    role: Role
    bare: bool = False  # Written without a role (counted in a warning at start).


def fingerprint(token: str) -> str:
    """A short, stable, non-reversible name for a token: safe to log."""
    digest = hashlib.sha256(b"doppelganger bearer token\0" + token.encode()).hexdigest()
    return FINGERPRINT_PREFIX + digest[:12]


def generate_token() -> str:
    """A new random token (256 bits, URL-safe base64)."""
    return secrets.token_urlsafe(GENERATED_TOKEN_BYTES)


def parse_entry(text: str, where: str) -> TokenEntry:
    """One `role:name:token`, `role:token` or bare `token`; ConfigError naming `where` only."""
    if ":" not in text:
        role, name, token, bare = BARE_TOKEN_ROLE, "", text, True
    else:
        parts = text.split(":", 2)
        try:
            role = Role.parse(parts[0])
        except ValueError:
            raise ConfigError(
                f"{where}: unknown role before the first ':' (expected {', '.join(ROLE_NAMES)})"
            ) from None
        name, token = ("", parts[1]) if len(parts) == 2 else (parts[1], parts[2])
        bare = False
    if not TOKEN_PATTERN.fullmatch(token):
        raise ConfigError(f"{where}: a token is 1 or more of letters, digits and -._~+/=")
    if name and not NAME_PATTERN.fullmatch(name):
        raise ConfigError(f"{where}: a name is 1-64 of letters, digits and ._@-")
    return TokenEntry(token.encode(), name or fingerprint(token), role, bare)


def parse_entries(items: Iterable[tuple[str, str]]) -> tuple[TokenEntry, ...]:
    """Entries from (where, text) pairs; the same token twice is a ConfigError."""
    entries: list[TokenEntry] = []
    seen: dict[bytes, str] = {}
    for where, text in items:
        entry = parse_entry(text, where)
        if entry.secret in seen:
            raise ConfigError(f"{where}: the same token as {seen[entry.secret]}")
        seen[entry.secret] = where
        entries.append(entry)
    return tuple(entries)


def _configured(settings: Settings) -> list[tuple[str, str]]:
    items = [
        (f"DOPPEL_AUTH_TOKENS entry {number}", text.strip())
        for number, text in enumerate(settings.auth_tokens.split(","), start=1)
        if text.strip()
    ]
    if settings.auth_tokens_file:
        path = settings.auth_tokens_file
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            message = f"DOPPEL_AUTH_TOKENS_FILE: cannot read {path}: {type(exc).__name__}"
            raise ConfigError(message) from None
        items += [
            (f"DOPPEL_AUTH_TOKENS_FILE {path} line {number}", line.strip())
            for number, line in enumerate(lines, start=1)
            if line.strip() and not line.lstrip().startswith("#")
        ]
    return items


def token_entries(settings: Settings) -> tuple[TokenEntry, ...]:
    """Every accepted token of `settings` (the file is read now); ConfigError when one is bad."""
    return parse_entries(_configured(settings))


def find(entries: Sequence[TokenEntry], presented: str) -> TokenEntry | None:
    """The entry whose token is `presented`, compared in constant time with every entry (no
    early exit on a match)."""
    if not presented:
        return None
    candidate = presented.encode()
    found = None
    for entry in entries:
        if hmac.compare_digest(candidate, entry.secret):
            found = entry
    return found
