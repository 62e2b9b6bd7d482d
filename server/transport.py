"""How the gateway listens: its bind address, and plaintext, TLS or mTLS from PEM files."""

from __future__ import annotations

import errno
import ipaddress
import logging
import socket

import grpc

from mlgate.tls import TLSFiles, checked_pem

__all__ = ["SERVER_OPTIONS", "PortInUse", "bind_address", "listen", "server_credentials"]

log = logging.getLogger(__name__)

# gRPC sets SO_REUSEPORT by default: a second server on a taken port would start, and the kernel
# would split connections between the two. Off, the second one fails to bind.
SERVER_OPTIONS = (("grpc.so_reuseport", 0),)


class PortInUse(OSError):
    """Another process listens on the gateway's port."""

    def __init__(self, port: int) -> None:
        super().__init__(
            errno.EADDRINUSE,
            f"port {port} is in use; stop what listens there or choose another port with --port",
        )
        self.port = port

    def __str__(self) -> str:
        return str(self.strerror)


def bind_address(host: str, port: int) -> str:
    """``host:port`` as gRPC wants it, with an IPv6 literal in brackets."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def server_credentials(tls: TLSFiles) -> grpc.ServerCredentials | None:
    """TLS credentials from ``MLGATE_TLS_CERT`` and ``MLGATE_TLS_KEY``, requiring client
    certificates signed by ``MLGATE_TLS_CLIENT_CA`` when it is set; None for plaintext. Files
    that would fail every handshake are refused here (``mlgate.tls.checked_pem``)."""
    tls.check()
    if not tls.enabled:
        return None
    pem = checked_pem(tls)
    return grpc.ssl_server_credentials(
        [(pem.key, pem.cert)],
        root_certificates=pem.client_ca,
        require_client_auth=pem.client_ca is not None,
    )


def listen(server: grpc.aio.Server, host: str, port: int, tls: TLSFiles) -> int:
    """Bind a server created with SERVER_OPTIONS to ``host`` and ``port`` (TLS only, when
    ``tls`` names files); returns the port bound. Raises PortInUse when another process
    holds it."""
    address = bind_address(host, port)
    credentials = server_credentials(tls)
    # A plain socket asks first: gRPC's own failure also writes a C-level error line to stderr.
    if port and _in_use(host.strip("[]"), port):
        raise PortInUse(port)
    try:
        if credentials is None:
            bound = server.add_insecure_port(address)
        else:
            bound = server.add_secure_port(address, credentials)
    except RuntimeError as exc:  # taken since the check, or an address gRPC cannot bind
        raise OSError(f"cannot listen on {address}: {exc}") from None
    if bound == 0:
        raise OSError(f"cannot listen on {address}: is the port in use?")
    mode = "mTLS" if tls.client_ca else "TLS" if credentials else "plaintext"
    log.info("listening on %s (%s)", bind_address(host, bound), mode)
    if credentials is None and not is_loopback(host):
        log.warning(
            "serving plaintext on %s, beyond this machine: anyone on the network can read "
            "the calls; set MLGATE_TLS_CERT and MLGATE_TLS_KEY",
            host,
        )
    return bound


def _in_use(host: str, port: int) -> bool:
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror:
        return False  # gRPC reports an unresolvable host itself
    for family, kind, proto, _, address in addresses:
        with socket.socket(family, kind, proto) as probe:
            # As gRPC binds: a port whose last connections are in TIME_WAIT is free.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    return True
    return False
