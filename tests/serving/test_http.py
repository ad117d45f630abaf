"""The REST port's HTTP/1.1 layer, on loopback with raw sockets: framing, keep-alive,
pipelining order, chunked bodies, 100-continue, limits and malformed input.

The handler here echoes what it was given, so each test sees exactly what the layer
parsed; the REST API on top is tested in ``test_rest_api.py``.
"""
from __future__ import annotations

import asyncio
import json
import socket
import threading
from typing import Iterator, Optional

import pytest

from serving.http import MAX_HEAD_BYTES, HttpServer

LIMIT = 1000


async def echo(method: str, path: str, body: Optional[bytes]) -> tuple[int, str, bytes]:
    """Echoes the request; ``/slow/<ms>`` answers late, ``/boom`` fails."""
    if path.startswith("/slow/"):
        await asyncio.sleep(int(path.rsplit("/", 1)[1]) / 1000)
    if path == "/boom":
        raise RuntimeError("handler bug")
    if body is None:
        return 413, "application/json", b'{"error":"too large"}'
    document = {"method": method, "path": path, "body": body.decode()}
    return 200, "application/json", json.dumps(document).encode()


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = HttpServer(echo, LIMIT)
    bound = asyncio.run_coroutine_threadsafe(server.listen("127.0.0.1", 0), loop).result(10)
    yield bound
    loop.call_soon_threadsafe(server.stop)
    # let answers to clients that already left (one test does that) run out
    asyncio.run_coroutine_threadsafe(asyncio.sleep(0.3), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


class Client:
    """A raw socket that reads whole responses (status, headers, body) off the stream."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        self.buffer = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self) -> bool:
        chunk = self.sock.recv(65536)
        self.buffer += chunk
        return bool(chunk)

    def response(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._fill(), f"connection closed mid-response: {self.buffer!r}"
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
        length = int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            assert self._fill(), "connection closed mid-body"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed_by_server(self) -> bool:
        return not self.buffer and not self._fill()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def client(port: int) -> Iterator[Client]:
    connection = Client(port)
    yield connection
    connection.close()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)


def test_keep_alive_answers_many_requests_on_one_connection(client: Client) -> None:
    for index in range(3):
        client.send(post(f"/v1/models/m{index}:predict", b'{"instances":[1]}'))
        status, headers, body = client.response()
        assert status == 200 and headers["content-type"] == "application/json"
        assert json.loads(body) == {"method": "POST", "path": f"/v1/models/m{index}:predict",
                                    "body": '{"instances":[1]}'}
        assert "connection" not in headers


def test_pipelined_requests_are_answered_in_order(client: Client) -> None:
    # the first answer is ready last; the client must still read them in request order
    client.send(post("/slow/200", b"first") + post("/slow/0", b"second")
                + b"GET /third HTTP/1.1\r\nHost: x\r\n\r\n")
    bodies = [json.loads(client.response()[2])["body"] for _ in range(3)]
    assert bodies == ["first", "second", ""]


def test_chunked_body_is_reassembled(client: Client) -> None:
    client.send(b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    status, _, body = client.response()
    assert status == 200 and json.loads(body)["body"] == "hello world"


def test_expect_100_continue_gets_an_interim_answer(client: Client) -> None:
    client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                b"Expect: 100-continue\r\n\r\n")
    status, _, _ = client.response()
    assert status == 100
    client.send(b"data")
    status, _, body = client.response()
    assert status == 200 and json.loads(body)["body"] == "data"


def test_query_string_is_not_part_of_the_path(client: Client) -> None:
    client.send(b"GET /v1/models/m?verbose=1 HTTP/1.1\r\nHost: x\r\n\r\n")
    assert json.loads(client.response()[2])["path"] == "/v1/models/m"


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_over_the_limit_is_refused_and_the_connection_lives_on(
        client: Client, declared: bool) -> None:
    big = b"x" * (LIMIT + 1)
    if declared:
        client.send(post("/big", big))
    else:
        client.send(b"POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + f"{len(big):x}\r\n".encode() + big + b"\r\n0\r\n\r\n")
    assert client.response()[0] == 413
    client.send(post("/after", b"ok"))
    status, _, body = client.response()
    assert status == 200 and json.loads(body)["body"] == "ok"


def test_body_at_the_limit_is_accepted(client: Client) -> None:
    client.send(post("/exact", b"y" * LIMIT))
    status, _, body = client.response()
    assert status == 200 and len(json.loads(body)["body"]) == LIMIT


def test_http_1_0_and_connection_close_end_the_connection(port: int) -> None:
    for request in (b"GET /old HTTP/1.0\r\n\r\n",
                    b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"):
        client = Client(port)
        client.send(request)
        status, headers, _ = client.response()
        assert status == 200 and headers["connection"] == "close"
        assert client.closed_by_server()
        client.close()


def test_malformed_request_gets_400_and_a_close(client: Client) -> None:
    client.send(b"NOT HTTP AT ALL\r\n\r\n")
    status, headers, body = client.response()
    assert status == 400 and headers["connection"] == "close"
    assert json.loads(body)["error"].startswith("Malformed HTTP request")
    assert client.closed_by_server()


def test_oversized_head_gets_431(client: Client) -> None:
    client.send(b"GET /h HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES + 1)
                + b"\r\n\r\n")
    status, _, body = client.response()
    assert status == 431 and "larger than" in json.loads(body)["error"]
    assert client.closed_by_server()


def test_handler_fault_is_a_500_and_the_connection_lives_on(client: Client) -> None:
    client.send(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\n")
    status, _, body = client.response()
    assert status == 500 and json.loads(body) == {"error": "Internal error"}
    client.send(b"GET /fine HTTP/1.1\r\nHost: x\r\n\r\n")
    assert client.response()[0] == 200


def test_client_leaving_mid_answer_does_not_break_the_server(port: int) -> None:
    leaving = Client(port)
    leaving.send(post("/slow/100", b"gone"))
    leaving.close()
    staying = Client(port)
    staying.send(post("/slow/0", b"here"))
    assert json.loads(staying.response()[2])["body"] == "here"
    staying.close()
