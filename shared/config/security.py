"""Settings of who may call what: TLS files, bearer tokens, roles of client certificates."""

from __future__ import annotations

from dataclasses import dataclass

from shared.config.setting import FLAG, TEXT, choice, setting
from shared.config.values import CLIENT_ROLES, ROLE


@dataclass(frozen=True)
class SecuritySettings:
    """Security: TLS, tokens, roles"""

    tls_cert: str = setting(
        "DOPPEL_TLS_CERT", "", TEXT, "Server certificate chain (PEM file); with the key: TLS."
    )
    tls_key: str = setting("DOPPEL_TLS_KEY", "", TEXT, "Server private key (PEM file).")
    tls_ca: str = setting(
        "DOPPEL_TLS_CA", "", TEXT,
        "CA (PEM file) clients trust, and servers check client certificates against; set: TLS.",
    )  # fmt: skip
    tls_client_auth: str = setting(
        "DOPPEL_TLS_CLIENT_AUTH", "none", choice("none", "require"),
        "`require`: mutual TLS, servers refuse clients without a certificate from the CA.",
    )  # fmt: skip
    tls_client_cert: str = setting(
        "DOPPEL_TLS_CLIENT_CERT", "", TEXT, "Client certificate (mutual TLS)."
    )
    tls_client_key: str = setting(
        "DOPPEL_TLS_CLIENT_KEY", "", TEXT, "Client private key (mutual TLS)."
    )
    auth_tokens: str = setting(
        "DOPPEL_AUTH_TOKENS", "", TEXT,
        "Accepted bearer tokens, comma separated, each role:name:token ([Security](#security)); "
        "a bare token is a reader.",
        secret=True,
    )  # fmt: skip
    auth_tokens_file: str = setting(
        "DOPPEL_AUTH_TOKENS_FILE", "", TEXT,
        "File of accepted bearer tokens, role:name:token one a line (added to DOPPEL_AUTH_TOKENS).",
    )  # fmt: skip
    auth_token: str = setting(
        "DOPPEL_AUTH_TOKEN", "", TEXT,
        "Bearer token clients (CLI, script service calling scene and cache) send (never logged).",
        secret=True,
    )  # fmt: skip
    faults_enabled: bool = setting(
        "DOPPEL_FAULTS_ENABLED", False, FLAG,
        "true: every server registers FaultService (admin role); off: not registered at all.",
    )  # fmt: skip
    allow_open: bool = setting(
        "DOPPEL_ALLOW_OPEN", False, FLAG,
        "true: a server with no tokens and no mutual TLS may bind a non-loopback DOPPEL_HOST "
        "(anyone who reaches it may call everything); off: it refuses to start.",
    )  # fmt: skip
    tls_client_roles: tuple[tuple[str, str], ...] = setting(
        "DOPPEL_TLS_CLIENT_ROLES", (), CLIENT_ROLES,
        "Mutual TLS without tokens: certificate-name=role,... (a CN or SAN of the client's "
        "certificate).",
    )  # fmt: skip
    tls_client_default_role: str = setting(
        "DOPPEL_TLS_CLIENT_DEFAULT_ROLE", "writer", ROLE,
        "Mutual TLS without tokens: the role of a verified client certificate not listed above.",
    )  # fmt: skip
