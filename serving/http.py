"""HTTP/1.1 for the REST API: an asyncio protocol over the ``httptools`` parser.

The REST API needs one thing from HTTP: (method, path, body) in, (status, type, body) out,
on keep-alive connections. tornado's HTTP layer did that in pure Python and cost about
half of each request's time on the event loop, which bounded throughput and the p99 under
load; ``httptools`` (llhttp, the parser behind uvicorn) parses in C, and this module only
frames requests and answers.

What it does for clients: keep-alive (HTTP/1.1 default, ``Connection: close`` honoured,
HTTP/1.0 closed after the answer), pipelined requests answered in order, chunked request
bodies, ``Expect: 100-continue`` (curl sends it for bodies over 1 KiB). Limits: a body
over ``max_body_bytes`` is read and dropped, and the handler gets ``None`` to answer 413 on
a connection that stays usable; request heads over ``MAX_HEAD_BYTES`` get 431 and a close;
unparsable requests get 400 and a close.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
from http import HTTPStatus
from typing import Awaitable, Callable, Optional

import httptools

log = logging.getLogger("serving.http")

# (method, path without query, body or None when over the limit) -> (status, type, body)
Handler = Callable[[str, str, Optional[bytes]], Awaitable[tuple[int, str, bytes]]]

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; llhttp itself has no limit
MAX_PIPELINED = 64  # requests in flight on one connection before reading pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON = "application/json"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_bytes(status: int, content_type: str, body: bytes, close: bool) -> bytes:
    head = (f"HTTP/1.1 {status} {_reason(status)}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode("latin-1") + body


def _error_json(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the handler, writes answers in order."""

    def __init__(self, handler: Handler, max_body_bytes: int) -> None:
        self._handler = handler
        self._limit = max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._transport: Optional[asyncio.Transport] = None
        self._previous: Optional[asyncio.Future] = None  # the last answer queued to be written
        self._in_flight = 0
        self._paused = False
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._head_bytes = 0
        self._chunks: list[bytes] = []
        self._body_bytes = 0
        self._expect_continue = False

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported")
        except httptools.HttpParserError as err:
            if not (self._transport and self._transport.is_closing()):
                self._fail(400, f"Malformed HTTP request: {err}")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._transport = None

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._count_head(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value))
        lowered = name.lower()
        if lowered == b"content-length" and value.strip().isdigit() \
                and int(value) > self._limit:
            self._body_bytes = int(value)  # already over: nothing of it will be kept
        elif lowered == b"expect" and value.strip().lower() == b"100-continue":
            self._expect_continue = True

    def on_headers_complete(self) -> None:
        if self._expect_continue and self._transport is not None:
            self._transport.write(_CONTINUE)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        if self._body_bytes <= self._limit:
            self._chunks.append(body)
        else:
            self._chunks.clear()

    def on_message_complete(self) -> None:
        method = self._parser.get_method().decode("ascii", "replace")
        path = self._url.split(b"?", 1)[0].decode("utf-8", "replace")
        body = b"".join(self._chunks) if self._body_bytes <= self._limit else None
        keep_alive = self._parser.should_keep_alive()
        self._reset()
        self._in_flight += 1
        if self._in_flight >= MAX_PIPELINED and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        previous = self._previous
        answer = asyncio.ensure_future(self._answer(method, path, body, keep_alive, previous))
        self._previous = answer

    # --- answers ----------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._fail(431, f"Request header fields larger than {MAX_HEAD_BYTES} bytes")
            raise httptools.HttpParserCallbackError("head too large")

    async def _answer(self, method: str, path: str, body: Optional[bytes], keep_alive: bool,
                      previous: Optional[asyncio.Future]) -> None:
        try:
            status, content_type, payload = await self._handler(method, path, body)
        except Exception:  # the handler answers its own errors; this is a server fault
            log.exception("HTTP handler failed for %s %s", method, path)
            status, content_type, payload = 500, _JSON, _error_json("Internal error")
        if previous is not None and not previous.done():
            await asyncio.shield(previous)  # answers leave in the order requests came
        self._in_flight -= 1
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(response_bytes(status, content_type, payload, close=not keep_alive))
        if not keep_alive:
            transport.close()
        elif self._paused and self._in_flight < MAX_PIPELINED // 2:
            self._paused = False
            transport.resume_reading()

    def _fail(self, status: int, message: str) -> None:
        """Answers a request that cannot be parsed, and closes: the stream is out of step."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(response_bytes(status, _JSON, _error_json(message), close=True))
        transport.close()


class HttpServer:
    """Listens on (host, port) and answers every request with ``handler``."""

    def __init__(self, handler: Handler, max_body_bytes: int) -> None:
        self._handler = handler
        self._limit = max_body_bytes
        self._server: Optional[asyncio.base_events.Server] = None

    async def listen(self, host: str, port: int) -> int:
        """Starts listening; returns the bound port (useful with port 0)."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: _Connection(self._handler, self._limit), host, port, reuse_address=True,
            backlog=1024)
        return self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stops accepting; connections in progress finish their answers."""
        if self._server is not None:
            self._server.close()
