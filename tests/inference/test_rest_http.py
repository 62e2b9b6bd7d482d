"""HTTP/1.1 as clients use it, on the REST binding's own server (server/rest.py): keep-alive and
pipelining answered in order, Expect: 100-continue, malformed and oversized requests refused
with a status, KServe's and MLServer's example requests as written, a port in use named, and
connections closed at once by a stopping gateway."""

from __future__ import annotations

import asyncio
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from mlgate.tls import TLSFiles
from mlgate.v1 import jobs_pb2
from server.rest import RestServer
from tests.support.background import BackgroundGateway
from tests.support.gateway_calls import trained_model
from tests.support.rest_client import RestClient
from tests.support.system import gateway_settings, running_gateway

MAX_BYTES = 2**20


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackgroundGateway]:
    """A gateway with REST, taking requests up to 1 MiB."""
    data: Path = tmp_path_factory.mktemp("rest-http") / "data"
    running = running_gateway(gateway_settings(data, http_port=0, infer_max_bytes=MAX_BYTES))
    yield running
    running.stop()


@pytest.fixture
def port(gateway: BackgroundGateway) -> int:
    """Its REST port."""
    assert gateway.gateway.http_port is not None
    return gateway.gateway.http_port


def _raw(port: int, data: bytes, *, expect_continue: bool = False) -> bytes:
    """What the server sends back for ``data`` on one connection, until it closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        if expect_continue:
            head, body = data.split(b"\r\n\r\n", 1)
            sock.sendall(head + b"\r\n\r\n")
            assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
            data = body
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def _request(method: bytes, path: bytes, body: bytes = b"", *headers: bytes) -> bytes:
    lines = [b"%s %s HTTP/1.1" % (method, path), b"Host: x", *headers]
    if body:
        lines += [b"Content-Type: application/json", b"Content-Length: %d" % len(body)]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def _responses(got: bytes) -> list[tuple[bytes, bytes, bytes]]:
    """(status line, headers, body) of each response in ``got``, in order."""
    found = []
    while got:
        head, rest = got.split(b"\r\n\r\n", 1)
        status, headers = head.split(b"\r\n", 1)
        length = int(
            next(h for h in headers.split(b"\r\n") if h.startswith(b"content-length")).split(b": ")[
                1
            ]
        )
        found.append((status, headers, rest[:length]))
        got = rest[length:]
    return found


def test_pipelined_requests_are_answered_in_order_then_closed(port: int) -> None:
    got = _raw(
        port,
        _request(b"GET", b"/v2/health/live")
        + _request(b"POST", b"/v2/models/nope/infer", b'{"inputs": []}')
        + _request(b"GET", b"/v2", b"", b"Connection: close"),
    )
    responses = _responses(got)
    assert [status for status, _, _ in responses] == [
        b"HTTP/1.1 200 OK",
        b"HTTP/1.1 404 Not Found",
        b"HTTP/1.1 200 OK",
    ]
    assert json.loads(responses[0][2]) == {"live": True}
    assert json.loads(responses[1][2]) == {"error": "no model is named 'nope'"}
    assert json.loads(responses[2][2])["name"] == "mlgate"
    assert b"connection: close" in responses[2][1] and b"connection: close" not in responses[0][1]


def test_expect_100_continue_and_malformed_requests(port: int) -> None:
    asked = _request(
        b"POST",
        b"/v2/models/nope/infer",
        b'{"inputs": []}',
        b"Expect: 100-continue",
        b"Connection: close",
    )
    got = _raw(port, asked, expect_continue=True)
    assert got.startswith(b"HTTP/1.1 404 Not Found\r\n") and b"no model is named" in got
    malformed = _raw(port, b"NOT HTTP AT ALL\r\n\r\n")
    assert malformed.startswith(b"HTTP/1.1 400 Bad Request\r\n") and b"not an HTTP/1.1" in malformed
    # Asked first (as curl asks for a body over 1 KiB), refused before the body is sent.
    huge = _raw(
        port,
        b"POST /v2/models/diabetes-rf/infer HTTP/1.1\r\nContent-Length: %d\r\n"
        b"Expect: 100-continue\r\n\r\n" % (MAX_BYTES + 1),
    )
    assert huge.startswith(b"HTTP/1.1 413 ") and b"MLGATE_INFER_MAX_BYTES" in huge


# KServe's v2 example request (iris-input-v2.json) and MLServer's (an input's content type as a
# parameter), as their documentation writes them.
_KSERVE_IRIS = b"""{
  "inputs": [
    {
      "name": "input-0",
      "shape": [2, 4],
      "datatype": "FP32",
      "data": [[6.8, 2.8, 4.8, 1.4], [6.0, 3.4, 4.5, 1.6]]
    }
  ]
}"""
_MLSERVER = {
    "inputs": [
        {
            "name": "predict",
            "shape": [1, 4],
            "datatype": "FP32",
            "data": [[5.1, 3.5, 1.4, 0.2]],
            "parameters": {"content_type": "np"},
        }
    ]
}


def test_kserve_and_mlserver_examples_as_written(gateway: BackgroundGateway, port: int) -> None:
    with grpc.insecure_channel(gateway.address) as channel:
        iris = trained_model(channel, jobs_pb2.TrainRequest(dataset_id="iris", target="target"))
    with RestClient(port) as client:
        kserve = client.post(f"/v2/models/{iris}/infer", _KSERVE_IRIS)
        assert kserve.status == 200, kserve.body
        assert kserve.body["outputs"][0] == {
            "name": "predict",
            "datatype": "INT64",
            "shape": [2],
            "data": [1, 1],
        }
        mlserver = client.post(f"/v2/models/{iris}/infer", _MLSERVER)
        assert mlserver.status == 200 and mlserver.body["outputs"][0]["data"] == [0], mlserver.body


def test_a_port_in_use_names_the_variable(port: int) -> None:
    async def bind() -> None:
        await RestServer(max_body=1, too_large=str).bind(
            "127.0.0.1", port, TLSFiles(), "MLGATE_HTTP_PORT"
        )

    with pytest.raises(OSError, match=r"port \d+ \(MLGATE_HTTP_PORT\) is in use; .* with "):
        asyncio.run(bind())


def test_a_stopping_gateway_closes_idle_connections_at_once(tmp_path: Path) -> None:
    gateway = running_gateway(gateway_settings(tmp_path / "data", http_port=0))
    port = gateway.gateway.http_port
    assert port is not None
    with RestClient(port) as client:
        assert client.get("/v2/health/live").status == 200
        started = time.monotonic()
        gateway.stop(grace=30.0)
        assert time.monotonic() - started < 20.0, "waited out the grace for an idle connection"
        assert client.connection.sock is not None
        assert client.connection.sock.recv(1) == b""  # closed by the gateway
