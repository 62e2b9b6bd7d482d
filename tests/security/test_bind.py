"""`mlgate serve` listens on loopback only unless it is told otherwise."""

from __future__ import annotations

import ipaddress
import socket
from pathlib import Path

from server.settings import GatewaySettings
from server.transport import bind_address
from tests.support.serving import clean_env, serve_process


def _listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets LISTENing on ``port``, read from the kernel's tables."""
    found: set[str] = set()
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            address, port_hex = fields[1].split(":")
            if int(port_hex, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # The kernel prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, width // 2, 4))
            ip = ipaddress.ip_address(words)
            # gRPC binds an IPv4 address on a dual-stack socket, as ::ffff:a.b.c.d.
            mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
            found.add(str(mapped or ip))
    return found


def _connects(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def test_serve_listens_on_loopback_only_by_default(tmp_path: Path) -> None:
    with serve_process(tmp_path, env=clean_env()) as served:
        assert _listening_addresses(served.port) == {"127.0.0.1"}
        assert _connects("127.0.0.1", served.port)


def test_every_interface_is_an_explicit_choice(tmp_path: Path) -> None:
    with serve_process(tmp_path, "--host", "0.0.0.0", env=clean_env()) as served:
        # The IPv4 wildcard, or gRPC's dual-stack wildcard for it.
        assert _listening_addresses(served.port) in ({"0.0.0.0"}, {"::"})


def test_settings_default_to_loopback_and_bracket_ipv6() -> None:
    assert GatewaySettings.from_env({}).host == "127.0.0.1"
    assert GatewaySettings.from_env({"MLGATE_HOST": "0.0.0.0"}).host == "0.0.0.0"
    assert GatewaySettings.from_env({"MLGATE_HOST": "0.0.0.0"}, host="::1").host == "::1"
    assert bind_address("::", 50051) == "[::]:50051"
    assert bind_address("[::1]", 1) == "[::1]:1"
    assert bind_address("127.0.0.1", 1) == "127.0.0.1:1"
