"""Throwaway certificate authorities for TLS tests: a CA, a server certificate and a client one.

Keys are EC P-256 (fast to make); certificates are valid for a day and name `localhost` and
127.0.0.1, so loopback servers verify without overriding the target name.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    """PEM files of one throwaway authority and the certificates it signed."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    # More client certificates by common name: (certificate, key).
    others: dict[str, tuple[Path, Path]] = field(default_factory=dict)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _builder(
    subject: str, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
    )


def _leaf(
    subject: str,
    ca_key: ec.EllipticCurvePrivateKey,
    ca_name: x509.Name,
    usage: x509.ObjectIdentifier,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    alt_names = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    certificate = (
        _builder(subject, ca_name, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(alt_names, critical=False)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return certificate, key


def make_tls_files(
    directory: Path, ca_name: str = "doppel test CA", other_clients: Sequence[str] = ()
) -> TlsFiles:
    """Writes a fresh CA, a server certificate and a client certificate (CN `doppel client`)
    into `directory`, and a client certificate for each name of `other_clients`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name(ca_name)
    ca_cert = (
        _builder(ca_name, ca_subject, ca_key.public_key())
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    server, server_key = _leaf("localhost", ca_key, ca_subject, ExtendedKeyUsageOID.SERVER_AUTH)
    client, client_key = _leaf("doppel client", ca_key, ca_subject, ExtendedKeyUsageOID.CLIENT_AUTH)
    files = TlsFiles(
        ca=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server-key.pem",
        client_cert=directory / "client.pem",
        client_key=directory / "client-key.pem",
    )
    pem = serialization.Encoding.PEM
    files.ca.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server.public_bytes(pem))
    files.server_key.write_bytes(_key_pem(server_key))
    files.client_cert.write_bytes(client.public_bytes(pem))
    files.client_key.write_bytes(_key_pem(client_key))
    for number, name in enumerate(other_clients):
        other, other_key = _leaf(name, ca_key, ca_subject, ExtendedKeyUsageOID.CLIENT_AUTH)
        paths = (directory / f"client-{number}.pem", directory / f"client-{number}-key.pem")
        paths[0].write_bytes(other.public_bytes(pem))
        paths[1].write_bytes(_key_pem(other_key))
        files.others[name] = paths
    return files
