"""HTTP/1.1 for the REST API: an asyncio protocol over the ``httptools`` parser.

The REST API needs one thing from HTTP: (method, path, body) in, (status, type, body) out,
on keep-alive connections. tornado's HTTP layer did that in pure Python and cost about
half of each request's time on the event loop, which bounded throughput and the p99 under
load (bench/serving; see docs/performance.md); ``httptools`` (llhttp, the parser behind
uvicorn) parses in C, and this module only frames requests and answers.

What it does for clients: keep-alive (HTTP/1.1 default, ``Connection: close`` honoured,
HTTP/1.0 closed after the answer), pipelined requests answered in order, chunked request
bodies, ``Expect: 100-continue`` (curl sends it for bodies over 1 KiB). Limits: a body
over ``max_body_bytes`` is read and dropped, and the handler gets ``None`` to answer 413 on
a connection that stays usable; request heads over ``MAX_HEAD_BYTES`` get 431 and a close;
unparsable requests get 400 and a close.

Protection for a port that faces a network (each 0 = off):
- read timeout: a request's head and body must arrive within ``read_timeout`` of its first
  byte (the first request's: of the accept); else 408 and a close. The deadline is for the
  whole request, so a client trickling a byte a second is cut off too;
- idle timeout: a kept-alive connection with no request in progress or in flight is closed
  silently after ``idle_timeout``; a slow model call is never cut by it;
- connection bound: at ``max_connections`` open connections, a new one takes the place of
  the connection that has waited longest without a complete request head (an idle
  kept-alive one, or one trickling its head, as a slow-loris client does), which is closed
  (408 when part of a request had arrived); only when every open connection has a request
  in progress does the newcomer get 503 and a close. So a flood of half-open connections
  cannot lock normal clients out until the read timeout clears it; a request under way is
  never cut for a newcomer.
Each kind of refusal is logged at its first occurrence, then as a count at most every
``log_every`` seconds, never once per connection.

Requests in flight across all connections (arrived whole, handler not finished) are kept
in an ``in_flight`` counter that the server's user may share: the REST API's data plane
runs a model call on the event loop when its request is the only one (``serving.dataplane``).
A request is counted when the parser completes it, before its task first runs, so a burst
of requests read in one go is counted whole before the first of them reaches the model.
"""
from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import ssl
import time
import types
from http import HTTPStatus
from typing import Awaitable, Callable, Optional, Protocol

import httptools

log = logging.getLogger("serving.protocol.http")

# (method, path without query, body or None when over the limit) -> (status, type, body);
# with ``request_headers`` the handler also gets {lower-case name: value} of those headers,
# and it may answer (status, type, body, extra response headers as (name, value) pairs).
Handler = Callable[..., Awaitable[tuple]]

MAX_HEAD_BYTES = 64 * 1024  # request line + headers; llhttp itself has no limit
MAX_PIPELINED = 64  # requests in flight on one connection before reading pauses
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_JSON = "application/json"
_NEVER = float("inf")  # a connection's deadline when no timeout applies
_REFUSED_LINGER_S = 1.0  # a refused connection is kept this long for its 503 to be read
_FD_MARGIN = 256  # file descriptors beyond the connection bound (models, gRPC, logs)


@dataclasses.dataclass(frozen=True)
class Limits:
    """The REST port's limits; a timeout or bound of 0 is off."""

    max_body_bytes: int
    read_timeout: float = 30.0  # seconds for a request's head and body to arrive
    idle_timeout: float = 60.0  # seconds a kept-alive connection may wait for a request
    max_connections: int = 1024  # open connections; more are answered 503
    log_every: float = 60.0  # seconds between two log lines of the same refusal


class RefusalLog:
    """Logs one kind of refusal once, then how many more, at most every ``every`` seconds."""

    def __init__(self, what: str, every: float) -> None:
        self.what = what
        self.every = every
        self.total = 0
        self._pending = 0
        self._last = 0.0
        self._report: Optional[asyncio.TimerHandle] = None

    def note(self, detail: str = "") -> None:
        """Counts one refusal: the first is logged at once, later ones in a summary line,
        so a flood of refusals cannot flood the log."""
        self.total += 1
        now = time.monotonic()
        if self.total == 1:
            self._last = now
            log.warning("%s%s (logged once; further ones are counted every %g s)",
                        self.what, detail, self.every)
            return
        self._pending += 1
        if self._report is None:
            self._report = asyncio.get_running_loop().call_later(
                max(0.0, self._last + self.every - now), self._flush)

    def _flush(self) -> None:
        self._report = None
        if self._pending:
            now = time.monotonic()
            log.warning("%s: %d more in the last %.0f s (%d in all)", self.what,
                        self._pending, now - self._last, self.total)
            self._pending = 0
            self._last = now

    def close(self) -> None:
        """Logs what is still counted and stops the pending summary (server shutdown)."""
        if self._report is not None:
            self._report.cancel()
            self._report = None
        self._flush()


class Counter(Protocol):
    """Requests in flight, shared with the handler's side (``serving.dataplane.InFlight``)."""

    count: int


class _Shared:
    """What the connections of one server share: the handler, limits, counts and logs."""

    def __init__(self, handler: "Handler", limits: Limits,
                 request_headers: tuple[str, ...] = (),
                 in_flight: Optional[Counter] = None) -> None:
        self.handler = handler
        self.limits = limits
        self.in_flight: Counter = (in_flight if in_flight is not None
                                   else types.SimpleNamespace(count=0))
        self.wanted_headers = frozenset(name.lower().encode("latin-1")
                                        for name in request_headers)
        self.open = 0  # admitted connections still open
        # Admitted connections without a complete request head and with nothing in flight,
        # oldest first: the ones a newcomer at the bound may take the place of.
        self.waiting: dict["_Connection", None] = {}
        self.lingering = 0  # refused connections waiting for their 503 to be read
        self.timed_out = RefusalLog(
            "REST: a request did not arrive within the read timeout of "
            f"{limits.read_timeout:g} s (--rest_read_timeout_seconds): answered 408 and "
            "closed", limits.log_every)
        self.refused = RefusalLog(
            f"REST: {limits.max_connections} connections are open "
            "(--rest_max_connections): a new one was answered 503 and closed",
            limits.log_every)
        self.evicted = RefusalLog(
            f"REST: {limits.max_connections} connections are open "
            "(--rest_max_connections): the one waiting longest for a request head was "
            "closed to admit a new one", limits.log_every)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def response_bytes(status: int, content_type: str, body: bytes, close: bool,
                   headers: tuple = ()) -> bytes:
    """One whole HTTP/1.1 response, head and body, ready for a single write."""
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = (f"HTTP/1.1 {status} {_reason(status)}\r\n"
            f"Content-Type: {content_type}\r\n"
            f"Content-Length: {len(body)}\r\n" + extra
            + ("Connection: close\r\n" if close else "") + "\r\n")
    return head.encode("latin-1") + body


def _error_json(message: str) -> bytes:
    return json.dumps({"error": message}).encode()


class _Connection(asyncio.Protocol):
    """One client connection: parses requests, runs the handler, writes answers in order."""

    def __init__(self, shared: _Shared) -> None:
        self._shared = shared
        self._handler = shared.handler
        self._wanted = shared.wanted_headers
        self._limit = shared.limits.max_body_bytes
        self._parser = httptools.HttpRequestParser(self)
        self._transport: Optional[asyncio.Transport] = None
        self._previous: Optional[asyncio.Future] = None  # the last answer queued to be written
        self._in_flight = 0
        self._paused = False
        self._admitted = False  # counted in the server's open connections
        self._refused = False  # over the bound: answered 503, input ignored
        self._done = False  # timed out: input ignored, closing after the answers due
        self._in_message = False  # part of a request has arrived, not all of it
        # One deadline at a time (loop time; _NEVER: none), the read or the idle one, and
        # one timer that fires at or before it (see `_arm`).
        self._deadline = _NEVER
        self._reading_timer = False  # the deadline is the read timeout (else the idle one)
        self._timer: Optional[asyncio.TimerHandle] = None
        self._timer_at = _NEVER
        self._reset()

    def _reset(self) -> None:
        self._url = b""
        self._head_bytes = 0
        self._chunks: list[bytes] = []
        self._body_bytes = 0
        self._expect_continue = False
        self._headers: Optional[dict[str, str]] = {} if self._wanted else None

    # --- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._transport = transport
        shared = self._shared
        bound = shared.limits.max_connections
        if bound and shared.open >= bound:
            if not shared.waiting:
                self._refuse(transport)
                return
            next(iter(shared.waiting))._evict()
        shared.open += 1
        self._admitted = True
        self._wait()
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._arm_read()  # the first request is due within the read timeout of the accept

    def data_received(self, data: bytes) -> None:
        if self._refused or self._done:
            return  # a refused or timed-out connection's input is dropped
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "Protocol upgrades are not supported")
        except httptools.HttpParserError as err:
            if not (self._transport and self._transport.is_closing()):
                self._fail(400, f"Malformed HTTP request: {err}")

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self._transport = None
        self._clear_deadline()
        if self._timer is not None:  # the loop must not keep a closed connection alive
            self._timer.cancel()
            self._timer = None
        self._shared.waiting.pop(self, None)
        if self._admitted:
            self._admitted = False
            self._shared.open -= 1
        if self._refused:
            self._refused = False
            self._shared.lingering -= 1

    def eof_received(self) -> Optional[bool]:
        return None  # the client is done sending: close (a refused one has read its 503)

    # --- httptools callbacks ------------------------------------------------------------------

    def on_message_begin(self) -> None:
        self._reset()
        self._in_message = True
        if not self._reading_timer:  # (the first request's deadline runs from the accept)
            self._arm_read()

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
        elif lowered in self._wanted:
            self._headers[lowered.decode("latin-1")] = value.decode("latin-1").strip()

    def on_headers_complete(self) -> None:
        self._shared.waiting.pop(self, None)  # a request is under way: never evicted
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
        headers = self._headers
        self._reset()
        self._in_message = False
        self._clear_deadline()  # in flight now: neither timeout applies until it is answered
        self._in_flight += 1
        self._shared.in_flight.count += 1
        if self._in_flight >= MAX_PIPELINED and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        previous = self._previous
        answer = asyncio.ensure_future(self._answer(method, path, body, headers, keep_alive,
                                                    previous))
        self._previous = answer

    # --- answers ----------------------------------------------------------------------------

    def _count_head(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > MAX_HEAD_BYTES:
            self._fail(431, f"Request header fields larger than {MAX_HEAD_BYTES} bytes")
            raise httptools.HttpParserCallbackError("head too large")

    async def _answer(self, method: str, path: str, body: Optional[bytes],
                      headers: Optional[dict[str, str]], keep_alive: bool,
                      previous: Optional[asyncio.Future]) -> None:
        extra: tuple = ()
        try:
            if headers is None:
                answer = await self._handler(method, path, body)
            else:
                answer = await self._handler(method, path, body, headers)
            if len(answer) == 4:
                status, content_type, payload, extra = answer
            else:
                status, content_type, payload = answer
        except Exception:  # the handler answers its own errors; this is a server fault
            log.exception("HTTP handler failed for %s %s", method, path)
            status, content_type, payload = 500, _JSON, _error_json("Internal error")
        finally:
            self._shared.in_flight.count -= 1
        if previous is not None and not previous.done():
            await asyncio.shield(previous)  # answers leave in the order requests came
        self._in_flight -= 1
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(response_bytes(status, content_type, payload, close=not keep_alive,
                                       headers=extra))
        if not keep_alive:
            transport.close()
            return
        if self._paused and self._in_flight < MAX_PIPELINED // 2:
            self._paused = False
            transport.resume_reading()
        if self._in_flight == 0 and not self._in_message and not self._done:
            self._wait()
            self._arm_idle()

    # --- timeouts and refusals ---------------------------------------------------------------

    def _clear_deadline(self) -> None:
        """No timeout applies now (a request in flight); a pending timer is left to fire
        and find no deadline due (`_expired`)."""
        self._deadline = _NEVER
        self._reading_timer = False

    def _arm_read(self) -> None:
        self._arm(self._shared.limits.read_timeout, reading=True)

    def _arm_idle(self) -> None:
        self._arm(self._shared.limits.idle_timeout, reading=False)

    def _arm(self, seconds: float, reading: bool) -> None:
        """Sets the connection's deadline ``seconds`` from now (none when 0), replacing the
        other one.

        A keep-alive connection moves its deadline twice per request; an event-loop timer
        scheduled and cancelled each time cost about 6 µs of the event loop's 140 µs per
        request (docs/performance.md). So the timer is only rescheduled when the new
        deadline is earlier than it; otherwise it fires early, finds the deadline later,
        and waits again (`_expired`): a busy connection's timer fires about once per
        timeout, never late.
        """
        if seconds <= 0:
            self._clear_deadline()
            return
        loop = asyncio.get_running_loop()
        self._deadline = loop.time() + seconds
        self._reading_timer = reading
        if self._deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._schedule(loop)

    def _schedule(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer_at = self._deadline
        self._timer = loop.call_at(self._deadline, self._expired)

    def _expired(self) -> None:
        """The timer fired: the deadline's timeout if it is due, else wait for it."""
        self._timer, self._timer_at = None, _NEVER
        if self._deadline == _NEVER:
            return
        loop = asyncio.get_running_loop()
        if loop.time() < self._deadline:
            self._schedule(loop)
            return
        reading = self._reading_timer
        self._clear_deadline()
        if reading:
            self._read_timed_out()
        else:
            self._idle_timed_out()

    def _read_timed_out(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._paused:  # we stopped reading (pipelined answers due): not the client's fault
            self._arm_read()
            return
        self._done = True
        transport.pause_reading()
        self._shared.timed_out.note()
        message = (f"The request did not arrive within {self._shared.limits.read_timeout:g} s "
                   "(--rest_read_timeout_seconds)")
        previous = self._previous
        if previous is None or previous.done():
            self._fail(408, message)
        else:  # answers to earlier pipelined requests leave first
            asyncio.ensure_future(self._fail_after(previous, 408, message))

    async def _fail_after(self, previous: asyncio.Future, status: int, message: str) -> None:
        await asyncio.shield(previous)
        self._fail(status, message)

    def _idle_timed_out(self) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing() and self._in_flight == 0 \
                and not self._in_message:
            log.debug("REST: closing a connection idle for %g s",
                      self._shared.limits.idle_timeout)
            transport.close()

    def _wait(self) -> None:
        """Now waiting for a request head (newest last among the evictable ones)."""
        self._shared.waiting.pop(self, None)
        self._shared.waiting[self] = None

    def _evict(self) -> None:
        """Closed for a newcomer at the bound: 408 if part of a request had arrived, else
        silently, as an idle kept-alive connection is closed; its place is free at once."""
        shared = self._shared
        shared.waiting.pop(self, None)
        shared.evicted.note()
        if self._admitted:
            self._admitted = False
            shared.open -= 1
        self._done = True
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._in_message:
            self._fail(408, "The request head did not arrive before the server needed the "
                            "connection for another client (--rest_max_connections)")
        else:
            transport.close()

    def _refuse(self, transport: asyncio.Transport) -> None:
        """Over the bound: 503, then the connection is half-closed and dropped once the
        client has read the answer (its EOF) or after a second, whichever comes first.
        Closing at once could reset the connection before the client reads the 503."""
        shared = self._shared
        self._refused = True
        shared.lingering += 1
        shared.refused.note()
        transport.write(response_bytes(503, _JSON, _error_json(
            f"The server has {shared.limits.max_connections} connections open "
            "(--rest_max_connections); try again later"), close=True))
        if shared.lingering > shared.limits.max_connections or not transport.can_write_eof():
            transport.close()  # a flood: do not hold a descriptor for each refused one
            return
        transport.write_eof()
        self._timer = asyncio.get_running_loop().call_later(_REFUSED_LINGER_S,
                                                            transport.close)

    def _fail(self, status: int, message: str) -> None:
        """Answers a request that cannot be parsed, and closes: the stream is out of step."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.write(response_bytes(status, _JSON, _error_json(message), close=True))
        transport.close()


def _ensure_descriptors(max_connections: int) -> None:
    """Raises the process's soft open-file limit (up to the hard one) so the connection
    bound, not a failing accept(), is what refuses connections."""
    try:
        import resource
    except ImportError:  # not on POSIX
        return
    wanted = max_connections + _FD_MARGIN
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= wanted:
        return
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if target > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    if target < wanted:
        log.warning("REST: the open-file limit (%d) is below --rest_max_connections (%d) "
                    "plus %d: connections beyond it fail to be accepted instead of getting "
                    "503", target, max_connections, _FD_MARGIN)


class HttpServer:
    """Listens on (host, port) and answers every request with ``handler``.

    ``limits`` is a ``Limits``, or just the largest body (the other limits at defaults);
    ``in_flight``, a counter this server keeps its requests in flight in (its own if None).
    """

    def __init__(self, handler: Handler, limits: "Limits | int",
                 request_headers: tuple[str, ...] = (),
                 in_flight: Optional[Counter] = None) -> None:
        if isinstance(limits, int):
            limits = Limits(max_body_bytes=limits)
        self.limits = limits
        self._handler = handler
        self._request_headers = request_headers
        self._in_flight = in_flight
        self._shared: Optional[_Shared] = None
        self._server: Optional[asyncio.base_events.Server] = None

    @property
    def open_connections(self) -> int:
        """Admitted connections still open."""
        return self._shared.open if self._shared is not None else 0

    async def listen(self, host: str, port: int,
                     ssl_context: Optional[ssl.SSLContext] = None,
                     reuse_port: bool = False) -> int:
        """Starts listening (HTTPS with ``ssl_context``); returns the bound port (useful
        with port 0). Over TLS the read timeout bounds the handshake too, and a connection
        is counted against the bound once its handshake is done. ``reuse_port``: other
        processes may listen on the same port (SO_REUSEPORT; the kernel spreads new
        connections over them), as the server's REST workers do."""
        loop = asyncio.get_running_loop()
        if self.limits.max_connections:
            _ensure_descriptors(self.limits.max_connections)
        shared = self._shared = _Shared(self._handler, self.limits, self._request_headers,
                                        self._in_flight)
        tls: dict = {}
        if ssl_context is not None:
            tls = {"ssl": ssl_context}
            if self.limits.read_timeout > 0:
                tls["ssl_handshake_timeout"] = self.limits.read_timeout
        self._server = await loop.create_server(
            lambda: _Connection(shared), host, port, reuse_address=True, reuse_port=reuse_port,
            backlog=1024, **tls)
        return self._server.sockets[0].getsockname()[1]

    def stop(self) -> None:
        """Stops accepting; connections in progress finish their answers."""
        if self._server is not None:
            self._server.close()
        if self._shared is not None:
            self._shared.timed_out.close()
            self._shared.refused.close()
            self._shared.evicted.close()
