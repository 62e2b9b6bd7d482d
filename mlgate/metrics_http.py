"""The Prometheus endpoint's HTTP server: ``/metrics`` and nothing else.

prometheus_client's own server answers every path with the metrics; this one answers
``/metrics`` and 404 elsewhere, listens where the operator chose (``MLGATE_METRICS_HOST``,
loopback by default) and, with ``MLGATE_METRICS_TLS=1``, speaks TLS with the process's
certificate (``mlgate.tls``), asking for a client certificate when the gateway does. A request
has a thread of its own and a few seconds for its handshake and request, so a client that
connects and says nothing delays no one.
"""

from __future__ import annotations

import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import REGISTRY, make_wsgi_app
from prometheus_client.registry import Collector

from mlgate.tls import TLSFiles, server_context

__all__ = ["METRICS_PATH", "MetricsServer"]

log = logging.getLogger(__name__)

METRICS_PATH = "/metrics"
# Seconds a connection may take for its TLS handshake and for each read or write.
_TIMEOUT = 10.0

StartResponse = Callable[..., Any]


def _only_metrics(
    registry: Collector,
) -> Callable[[dict[str, Any], StartResponse], Iterable[bytes]]:
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != METRICS_PATH:
            start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"Not found: this endpoint serves /metrics only\n"]
        answer: Iterable[bytes] = metrics(environ, start_response)
        return answer

    return app


class _Handler(WSGIRequestHandler):
    timeout = _TIMEOUT

    def setup(self) -> None:
        super().setup()  # sets the timeout
        if isinstance(self.connection, ssl.SSLSocket):
            # Here, on the request's thread, not in accept(): a slow handshake blocks no one.
            self.connection.do_handshake()

    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not logged: one every few seconds from every Prometheus."""


class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A failed handshake (a plain HTTP client on the TLS port) or a client gone: not ours to
        # print a traceback for.
        log.debug("metrics request from %s failed", client_address, exc_info=True)


class MetricsServer:
    """``/metrics`` served on ``host:port`` (port 0 picks a free one) from a thread of its own,
    over TLS with ``tls``'s files when given; ``close`` stops it."""

    def __init__(
        self, port: int, host: str, *, tls: TLSFiles | None = None, registry: Collector = REGISTRY
    ) -> None:
        # Checked before binding: a bad file fails start-up, not each scrape.
        context = server_context(tls) if tls is not None else None
        # The gRPC spelling of "every interface" ([::]) is not an address sockets take.
        address = host.strip("[]") or "::"
        family, _, _, _, sockaddr = socket.getaddrinfo(
            address, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]

        class Server(_Server):
            address_family = family

        self._server = Server((str(sockaddr[0]), int(sockaddr[1])), _Handler)
        self._server.set_app(_only_metrics(registry))
        if context is not None:
            self._server.socket = context.wrap_socket(
                self._server.socket, server_side=True, do_handshake_on_connect=False
            )
        #: The address bound, as the socket reports it (host, port).
        self.address = (str(self._server.server_address[0]), int(self._server.server_address[1]))
        self.port = self.address[1]
        self.scheme = "https" if context is not None else "http"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()
        log.info("metrics on %s://%s:%d%s", self.scheme, host, self.port, METRICS_PATH)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(_TIMEOUT)
