"""How the client reaches one gateway or several: the address, the load balancing, the retries.

An address is ``HOST:PORT``; several gateways are several of them, comma-separated
(``gw1:50051,gw2:50051``), or one DNS name with a record per gateway; any gRPC target
(``dns:///gateways:50051``, ``ipv4:10.0.0.1:50051,10.0.0.2:50051``) is taken as it is. A list's
names are resolved once, when the client is made; a DNS name is resolved again by gRPC whenever a
connection is lost, so a fleet whose members change is best given by name.

Every channel balances calls over the gateways it reaches (gRPC's ``round_robin``): a gateway that
goes away takes no new call, and gRPC moves a call that never reached a gateway to another by
itself. A call that did reach one and failed UNAVAILABLE (the gateway died or is stopping) is
tried again, on the next gateway, only where that is safe: reads, the job watch (before its first
event; after it the client resumes from the last event seen), cancelling a job (cancelling an
ended job answers its record) and ModelInfer (which records nothing). Train and Predict are never
tried again by the client: a gateway that died while taking one may have queued the job already,
and a gateway that answered UNAVAILABLE itself did not queue it and says so.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from typing import Any

__all__ = ["RETRIED", "channel_target", "service_config"]

# Job records and listings are bounded, but a large prediction's result event may not be:
# accept the most the gateway may send.
_MAX_MESSAGE = 64 * 1024 * 1024
_SCHEMES = ("dns:", "ipv4:", "ipv6:", "unix:", "unix-abstract:", "vsock:")

#: The methods tried again, on another gateway, when a gateway fails them with UNAVAILABLE.
RETRIED: dict[str, tuple[str, ...]] = {
    "mlgate.v1.JobService": ("GetJob", "ListJobs", "WatchJob", "CancelJob"),
    "mlgate.v1.ModelService": ("GetModel", "ListModels", "ExportModel"),
    "mlgate.v1.DatasetService": ("GetDataset", "ListDatasets"),
    "mlgate.v1.StatusService": ("GetStatus", "ListWorkers"),
    "inference.GRPCInferenceService": (
        "ServerLive",
        "ServerReady",
        "ModelReady",
        "ServerMetadata",
        "ModelMetadata",
        "ModelInfer",
    ),
}


def service_config() -> dict[str, Any]:
    """round_robin over every address, and gRPC's retry policy for the ``RETRIED`` methods:
    up to 5 attempts in about 1.5 s, long enough to find a live gateway and no longer."""
    retry = {
        "maxAttempts": 5,
        "initialBackoff": "0.1s",
        "maxBackoff": "1s",
        "backoffMultiplier": 2,
        "retryableStatusCodes": ["UNAVAILABLE"],
    }
    names = [
        {"service": service, "method": method}
        for service, methods in RETRIED.items()
        for method in methods
    ]
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [{"name": names, "retryPolicy": retry}],
    }


def channel_target(address: str) -> tuple[str, list[tuple[str, Any]]]:
    """The gRPC target for ``address`` and the channel options that go with it.

    Raises ValueError for a list whose entries are not ``HOST:PORT`` or none of which resolves.
    """
    options: list[tuple[str, Any]] = [
        ("grpc.max_receive_message_length", _MAX_MESSAGE),
        # Retry a refused connection within a fraction of a second, not gRPC's 1 s growing to
        # 120 s: a gateway that is starting is found as soon as it listens.
        ("grpc.initial_reconnect_backoff_ms", 200),
        ("grpc.max_reconnect_backoff_ms", 2000),
        ("grpc.service_config", json.dumps(service_config())),
        ("grpc.enable_retries", 1),
    ]
    entries = [entry.strip() for entry in address.split(",") if entry.strip()]
    if len(entries) < 2 or address.startswith(_SCHEMES):
        return address, options
    target = _addresses_target([_host_port(entry) for entry in entries])
    # The name a TLS certificate is checked against, and the :authority every call carries: the
    # first gateway's, as for one address (the list's resolved addresses have no name).
    return target, [*options, ("grpc.default_authority", entries[0])]


def _host_port(entry: str) -> tuple[str, int]:
    host, colon, port = entry.rpartition(":")
    if not colon or not host or not port.isdigit():
        raise ValueError(f"gateway address {entry!r}: give HOST:PORT, e.g. gw1:50051")
    return host.strip("[]"), int(port)


def _addresses_target(hosts: list[tuple[str, int]]) -> str:
    """An ``ipv4:`` (or ``ipv6:``) target listing every address the hosts resolve to."""
    found: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    for host, port in hosts:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise ValueError(f"gateway address {host}:{port}: {exc.strerror}") from None
        for family, _, _, _, sockaddr in infos:
            if family in found:
                ip = str(ipaddress.ip_address(sockaddr[0]))
                text = f"{ip}:{port}" if family == socket.AF_INET else f"[{ip}]:{port}"
                if text not in found[family]:
                    found[family].append(text)
    # One target holds one address family: IPv4 where the hosts have it, as most fleets do.
    family = socket.AF_INET if found[socket.AF_INET] else socket.AF_INET6
    return ("ipv4:" if family == socket.AF_INET else "ipv6:") + ",".join(found[family])
