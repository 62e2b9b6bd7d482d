"""A lean HTTP/1.1 server on the gateway's event loop, for the inference protocol's REST binding.

Built on ``asyncio.Protocol`` and httptools (llhttp, the parser Node.js uses): no framework, so
the gateway stays small and each request costs a parse, one task and one write. Connections
keep alive (HTTP/1.1's default) and may pipeline; each connection answers its requests in
order, one at a time, and stops reading while 16 wait. Every request runs in a task of its own,
so what it sets in context variables (its caller) is its own. Over TLS with the gateway's
certificate when it has one (client certificates asked for as the gRPC port asks).

Bounds, so that no client holds the gateway's memory or its sockets: a body over ``max_body``
bytes is refused 413 from its ``Content-Length`` (or as it streams, chunked) before it is kept;
headers over 64 KiB are 431; a request must arrive whole within 30 s of its first byte (else
408), and a connection idle for 60 s is closed. ``close`` drains: it stops accepting, closes
idle connections, lets requests under way finish (their responses say ``Connection: close``)
for the grace given, then closes the rest.
"""

from __future__ import annotations

import asyncio
import errno
import http
import json
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate

import httptools

from mlgate.tls import TLSFiles, server_context

__all__ = ["Request", "Response", "RestServer", "error_response", "json_response"]

log = logging.getLogger(__name__)

_MAX_HEADERS = 64 * 2**10
_READ_TIMEOUT = 30.0
_IDLE_TIMEOUT = 60.0
_MAX_QUEUED = 16
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}


@dataclass(frozen=True, slots=True)
class Request:
    """One request: its method, path (without the query) and query, headers by lowercase name
    (the last of a repeated one), and body."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, document: object, *headers: tuple[str, str]) -> Response:
    return Response(status, json.dumps(document).encode(), headers)


def error_response(status: int, message: str, *headers: tuple[str, str]) -> Response:
    """The protocol's error object: ``{"error": "..."}``."""
    return json_response(status, {"error": message}, *headers)


Handler = Callable[[Request], Awaitable[Response]]


async def _not_started(request: Request) -> Response:
    return error_response(503, "starting")


class _Stop(Exception):
    """Raised from a parser callback: the connection answers no more requests."""


class _Clock:
    """The ``Date`` header, formatted once a second."""

    second = -1
    text = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second, cls.text = second, formatdate(second, usegmt=True).encode()
        return cls.text


@dataclass
class _Incoming:
    url: bytearray = field(default_factory=bytearray)
    headers: dict[str, str] = field(default_factory=dict)
    header_bytes: int = 0
    body: list[bytes] = field(default_factory=list)
    size: int = 0


class _Connection(asyncio.Protocol):
    def __init__(self, server: RestServer) -> None:
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpRequestParser(self)
        self._incoming: _Incoming | None = None
        self._queue: deque[tuple[Request, bool]] = deque()
        self._task: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._writable = True
        self._closing = False
        #: Refused as too large: the rest of its body is read and dropped, then the connection
        #: closes (so that a client still sending reads the refusal, not a broken pipe).
        self._discarding = False

    # --- asyncio's callbacks ---

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._server.connections.add(self)
        self._arm(_IDLE_TIMEOUT, self._idle)

    def connection_lost(self, exc: Exception | None) -> None:
        self._server.connections.discard(self)
        self._closing = True
        if self._timer is not None:
            self._timer.cancel()
        if self._task is not None:
            self._task.cancel()  # the caller has gone: its request is cancelled
        self._queue.clear()

    def data_received(self, data: bytes) -> None:
        if self._closing:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if not isinstance(exc.__context__, _Stop):
                raise
        except httptools.HttpParserUpgrade:
            self._refuse(400, "this endpoint does not upgrade connections")
        except httptools.HttpParserError as exc:
            self._refuse(400, f"not an HTTP/1.1 request ({exc})")

    def pause_writing(self) -> None:
        self._writable = False

    def resume_writing(self) -> None:
        self._writable = True
        self._next()

    # --- httptools' callbacks ---

    def on_message_begin(self) -> None:
        self._incoming = _Incoming()
        self._arm(_READ_TIMEOUT, self._slow)

    def on_url(self, url: bytes) -> None:
        assert self._incoming is not None
        self._incoming.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        incoming = self._incoming
        assert incoming is not None
        incoming.header_bytes += len(name) + len(value)
        if incoming.header_bytes > _MAX_HEADERS:
            self._refuse(431, "the request's headers are over 64 KiB")
            raise _Stop
        incoming.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        assert self._incoming is not None
        length = self._incoming.headers.get("content-length", "")
        expects = self._incoming.headers.get("expect", "").lower() == "100-continue"
        if length.isdigit() and int(length) > self._server.max_body:
            self._refuse(413, self._server.too_large(int(length)), linger=not expects)
            if expects:  # the client waits for the answer before it sends the body
                raise _Stop
            return
        if expects and self._task is None and not self._queue and self._transport is not None:
            # curl asks before sending a body over 1 KiB; an earlier response still owed would
            # have to go first, so then the client's own timeout sends it.
            self._transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        incoming = self._incoming
        assert incoming is not None
        if self._discarding:
            return
        incoming.size += len(body)
        if incoming.size > self._server.max_body:
            self._refuse(413, self._server.too_large(incoming.size), linger=True)
            return
        incoming.body.append(body)

    def on_message_complete(self) -> None:
        incoming, self._incoming = self._incoming, None
        assert incoming is not None
        self._disarm()
        if self._discarding:
            self._close()
            raise _Stop
        url = httptools.parse_url(bytes(incoming.url))
        request = Request(
            self._parser.get_method().decode("latin-1"),
            (url.path or b"/").decode("latin-1"),
            (url.query or b"").decode("latin-1"),
            incoming.headers,
            b"".join(incoming.body),
        )
        self._queue.append((request, self._parser.should_keep_alive()))
        if len(self._queue) >= _MAX_QUEUED and self._transport is not None:
            self._transport.pause_reading()
        self._next()

    # --- answering ---

    def _next(self) -> None:
        if self._task is not None or not self._queue or not self._writable or self._closing:
            return
        if self._transport is not None and len(self._queue) < _MAX_QUEUED:
            self._transport.resume_reading()
        request, keep_alive = self._queue.popleft()
        self._task = self._loop.create_task(self._answer(request, keep_alive))

    async def _answer(self, request: Request, keep_alive: bool) -> None:
        try:
            response = await self._server.handler(request)
        except Exception:
            log.exception("REST %s %s failed", request.method, request.path)
            response = error_response(500, "internal error; the gateway's log says why")
        self._task = None
        self._write(response, keep_alive=keep_alive and not self._server.draining)
        if self._closing:
            return
        if not self._queue and self._incoming is None:
            self._arm(_IDLE_TIMEOUT, self._idle)
        self._next()

    def _write(self, response: Response, *, keep_alive: bool, close: bool = True) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        head = [
            b"HTTP/1.1 %d %s\r\n" % (response.status, _REASONS.get(response.status, "").encode()),
            b"content-type: application/json\r\ncontent-length: %d\r\ndate: %s\r\n"
            % (len(response.body), _Clock.now()),
        ]
        head.extend(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in response.headers)
        if not keep_alive:
            head.append(b"connection: close\r\n")
        head.append(b"\r\n")
        transport.write(b"".join(head) + response.body)
        if not keep_alive and close:
            self._close()

    def _refuse(self, status: int, message: str, *, linger: bool = False) -> None:
        """Answer the request being read with an error, and close (with ``linger``, once the
        rest of its body has come): what follows it on the connection cannot be told apart
        from it."""
        if self._closing or self._discarding:
            return
        self._queue.clear()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._write(error_response(status, message), keep_alive=False, close=not linger)
        self._discarding = linger

    def _close(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()

    # --- time limits ---

    def _arm(self, seconds: float, then: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self._loop.call_later(seconds, then)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle(self) -> None:
        if self._task is None and not self._queue:
            self._close()

    def _slow(self) -> None:
        if self._discarding:
            self._close()
        else:
            self._refuse(408, f"the request did not arrive whole within {_READ_TIMEOUT:g} s")

    def drain(self) -> None:
        """Close now if nothing is under way; otherwise once the request under way is answered."""
        if self._task is None and not self._queue and self._incoming is None:
            self._close()

    def abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()


class RestServer:
    """The HTTP/1.1 server: ``bind`` (port 0 picks one), ``start`` with the handler that answers
    each request, ``close``. ``too_large(size)`` is the 413's message for a body over
    ``max_body`` bytes."""

    def __init__(self, *, max_body: int, too_large: Callable[[int], str]) -> None:
        self.handler: Handler = _not_started
        self.max_body = max_body
        self.too_large = too_large
        self.connections: set[_Connection] = set()
        self.draining = False
        self.port = 0
        self.scheme = "http"
        self._server: asyncio.Server | None = None

    async def bind(self, host: str, port: int, tls: TLSFiles, variable: str) -> int:
        """Listen on ``host:port`` (TLS with ``tls``'s files when it names them), not yet
        answering; the port bound. A taken port is an ``OSError`` naming ``variable``."""
        context = server_context(tls) if tls.enabled else None
        if context is not None:
            context.set_alpn_protocols(["http/1.1"])
            self.scheme = "https"
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self),
                host.strip("[]") or None,
                port,
                ssl=context,
                ssl_handshake_timeout=10.0 if context is not None else None,
                reuse_address=True,
                start_serving=False,
            )
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(
                    errno.EADDRINUSE,
                    f"port {port} ({variable}) is in use; stop what listens there or choose "
                    f"another port with {variable}",
                ) from None
            raise
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def start(self, handler: Handler) -> None:
        assert self._server is not None, "bind first"
        self.handler = handler
        await self._server.start_serving()

    async def close(self, grace: float) -> None:
        """Drain (see the module's docstring), then release the port."""
        if self._server is None:
            return
        self.draining = True
        self._server.close()
        for connection in list(self.connections):
            connection.drain()
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # connections end on their clients' time: no event to await
        for connection in list(self.connections):
            connection.abort()
        await self._server.wait_closed()
