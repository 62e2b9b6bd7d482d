"""Fresh names and ports, so that tests (and test runs side by side) never collide."""

from __future__ import annotations

import socket
import uuid

__all__ = ["free_port", "free_ports", "unique_namespace"]


def unique_namespace(prefix: str = "mlgate-test") -> str:
    """A broker or job-store namespace no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports, all held open together so none is handed out twice."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_port() -> int:
    """A free loopback port."""
    return free_ports(1)[0]
