"""TLS for both ports, from TF Serving's ``SSLConfig`` text proto.

``--ssl_config_file`` is tensorflow_model_server's flag (gRPC over TLS); the embedded
server takes ``--rest_ssl_config_file`` in the same format for HTTPS on the REST port
(the real server's REST port has no TLS). The file holds the PEM texts themselves, as TF
Serving reads them, not paths::

    server_key: "-----BEGIN PRIVATE KEY-----\\n...\\n-----END PRIVATE KEY-----\\n"
    server_cert: "-----BEGIN CERTIFICATE-----\\n...\\n-----END CERTIFICATE-----\\n"
    custom_ca: "-----BEGIN CERTIFICATE-----\\n..."   # the CA of client certificates
    client_verify: true                               # a valid client certificate required

Everything is checked at start-up with Python's ``ssl`` (the same OpenSSL rules the REST
port uses): an empty, unreadable or mismatched key or certificate is one ServingError
(INVALID_ARGUMENT) naming the flag, the file and what is wrong, before any port opens.
"""
from __future__ import annotations

import dataclasses
import os
import ssl
import tempfile
from typing import Optional

from serving import config_files
from serving.errors import invalid_argument


@dataclasses.dataclass(frozen=True)
class TlsConfig:
    """A checked SSLConfig: PEM texts, and whether client certificates are required."""

    server_key: str
    server_cert: str
    custom_ca: str
    client_verify: bool


def _no_password() -> bytes:
    raise ValueError("encrypted")


def _load_pair(context: ssl.SSLContext, cert: str, key: str) -> None:
    """``load_cert_chain`` from PEM texts (it takes files only): a private temporary
    directory, removed at once."""
    with tempfile.TemporaryDirectory(prefix="serving-tls-") as folder:
        cert_file, key_file = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        for path, text in ((cert_file, cert), (key_file, key)):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
        context.load_cert_chain(cert_file, key_file, password=_no_password)


def _context(config: TlsConfig, where: str) -> ssl.SSLContext:
    def fail(what: str, err: Optional[BaseException] = None):
        reason = getattr(err, "reason", None)  # OpenSSL's, e.g. NO_START_LINE; else none
        return invalid_argument(f"{where}: {what}" + (f" ({reason})" if reason else ""))

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:  # the certificate alone first, so a bad one is not reported as a bad key
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=config.server_cert)
    except (ssl.SSLError, ValueError) as err:
        raise fail("server_cert is not a PEM certificate", err) from None
    try:
        _load_pair(context, config.server_cert, config.server_key)
    except ssl.SSLError as err:
        if getattr(err, "reason", "") == "KEY_VALUES_MISMATCH":
            raise fail("server_key does not match server_cert") from None
        raise fail("server_key is not an unencrypted PEM private key", err) from None
    except ValueError:
        raise fail("server_key is encrypted: give it without a passphrase") from None
    if config.custom_ca:
        try:
            context.load_verify_locations(cadata=config.custom_ca)
        except (ssl.SSLError, ValueError) as err:
            raise fail("custom_ca is not a PEM certificate", err) from None
    if config.client_verify:
        context.verify_mode = ssl.CERT_REQUIRED
    context.set_alpn_protocols(["http/1.1"])
    return context


def read(path: str, flag: str) -> TlsConfig:
    """Reads and checks an SSLConfig file given as ``--flag``.

    Raises:
        ServingError: INVALID_ARGUMENT, one line: which flag and file, what is wrong.
    """
    where = f"--{flag}={path}"
    try:
        text = open(path).read()
    except OSError as err:
        raise invalid_argument(f"{where}: cannot read it: {err.strerror}") from None
    message = config_files.parse_ssl_config(text, where)
    config = TlsConfig(message.server_key, message.server_cert, message.custom_ca,
                       message.client_verify)
    for field in ("server_key", "server_cert"):
        if not getattr(config, field).strip():
            raise invalid_argument(f"{where}: {field} is empty (it holds the PEM text itself)")
    if config.client_verify and not config.custom_ca.strip():
        raise invalid_argument(f"{where}: client_verify needs custom_ca, the CA that signs "
                               "the client certificates")
    _context(config, where)  # raises on a bad or mismatched key or certificate
    return config


def rest_context(config: TlsConfig) -> ssl.SSLContext:
    """The REST port's server-side context (client certificates required if asked).

    Raises:
        ServingError: INVALID_ARGUMENT when server_cert is not a PEM certificate,
            server_key is not an unencrypted PEM key or does not match it, or custom_ca is
            not a PEM certificate (what `read` checks; a config from `read` passes).
    """
    return _context(config, "TLS")


def grpc_credentials(config: TlsConfig):
    """gRPC server credentials as tensorflow_model_server builds them from the file."""
    import grpc

    return grpc.ssl_server_credentials(
        [(config.server_key.encode(), config.server_cert.encode())],
        root_certificates=config.custom_ca.encode() or None,
        require_client_auth=config.client_verify)


# OpenSSL's reason for a failed handshake, as the client sees it -> what to change.
_CLIENT_HINTS = (
    ("CERTIFICATE_VERIFY_FAILED", "the server's certificate is not signed by a CA the "
                                  "commands trust: set serving.tls.ca_cert to that CA"),
    ("CERTIFICATE_REQUIRED", "the server requires a client certificate: set "
                             "serving.tls.client_cert and client_key"),
    ("HANDSHAKE_FAILURE", "the server refused the handshake (a client certificate it "
                          "requires or does not trust?): check serving.tls.client_cert"),
    ("UNKNOWN_CA", "the server does not trust the client certificate's CA: use one signed "
                   "by the SSLConfig's custom_ca"),
    ("WRONG_VERSION_NUMBER", "the port does not speak TLS: unset "
                             "serving.tls.rest_ssl_config_file, or check the port"),
)


def client_failure(error: BaseException) -> Optional[str]:
    """What a client's failed TLS handshake means and what to change, or None when
    `error` (an httpx error, say) was not caused by TLS.

    Under TLS 1.3 a server checks the client's certificate after the handshake, so a
    missing or untrusted one reaches the client as a connection closed without an answer.
    """
    if _closed_after_handshake(error):
        return ("TLS: the server closed the connection without an answer: it may require a "
                "client certificate (serving.tls.client_cert and client_key) signed by its "
                "custom_ca")
    seen: set[int] = set()
    cause: Optional[BaseException] = error
    while cause is not None and id(cause) not in seen:
        if isinstance(cause, ssl.SSLError):
            reason = cause.reason or str(cause)
            hint = next((text for key, text in _CLIENT_HINTS if key in str(reason)), None)
            return f"TLS failed ({reason})" + (f": {hint}" if hint else "")
        seen.add(id(cause))
        cause = cause.__cause__ or cause.__context__
    return None


def _closed_after_handshake(error: BaseException) -> bool:
    import httpx

    if not isinstance(error, httpx.RemoteProtocolError):
        return False
    try:
        return error.request.url.scheme == "https"
    except RuntimeError:  # an error raised without its request
        return False
