"""A test PKI made with ``cryptography``: a CA issuing server and client certificates, the
SSLConfig files the servers take, and the clients' SSL contexts. Shared by the TLS tests."""
from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import ssl
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from serving.config_files import ssl_config_text


@dataclasses.dataclass(frozen=True)
class Pair:
    key: str  # PEM
    cert: str  # PEM

    def write(self, folder: Path, stem: str) -> tuple[Path, Path]:
        """(certificate file, key file) as ``<stem>.pem`` and ``<stem>.key``."""
        cert, key = folder / f"{stem}.pem", folder / f"{stem}.key"
        cert.write_text(self.cert)
        key.write_text(self.key)
        return cert, key


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key_pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


class Authority:
    """A self-signed CA that issues server and client certificates."""

    def __init__(self, name: str) -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        self._name = _name(name)
        now = datetime.datetime.now(datetime.timezone.utc)
        self.cert = (x509.CertificateBuilder().subject_name(self._name)
                     .issuer_name(self._name).public_key(self._key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - datetime.timedelta(hours=1))
                     .not_valid_after(now + datetime.timedelta(days=1))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None),
                                    critical=True)
                     .sign(self._key, hashes.SHA256()))
        self.pem = self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def issue(self, name: str, client: bool = False) -> Pair:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (x509.CertificateBuilder().subject_name(_name(name))
                   .issuer_name(self._name).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage(
                       [ExtendedKeyUsageOID.CLIENT_AUTH if client
                        else ExtendedKeyUsageOID.SERVER_AUTH]), critical=False))
        if not client:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(self._key, hashes.SHA256())
        return Pair(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM).decode())


@dataclasses.dataclass(frozen=True)
class Pki:
    ca: Authority
    other_ca: Authority
    server: Pair
    client: Pair  # issued by ca
    stranger: Pair  # a client certificate issued by other_ca


def make_pki() -> Pki:
    ca, other = Authority("test CA"), Authority("another CA")
    return Pki(ca, other, ca.issue("localhost"), ca.issue("client", client=True),
               other.issue("stranger", client=True))


def write_ssl_config(path: Path, pki: Pki, client_verify: bool = False) -> Path:
    """The servers' SSLConfig: the server pair, and the CA of client certificates if asked."""
    path.write_text(ssl_config_text(pki.server.key, pki.server.cert,
                                    pki.ca.pem if client_verify else "", client_verify))
    return path


def https_context(ca_pem: str, client: Optional[Pair] = None, tmp: Optional[Path] = None
                  ) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=ca_pem)
    if client is not None:
        context.load_cert_chain(*client.write(tmp, "client"))
    return context
