"""The Prometheus endpoint serves /metrics and nothing else, on loopback unless told otherwise,
and over TLS with the gateway's certificate when MLGATE_METRICS_TLS=1 (asking for a client
certificate when the gateway does), on the gateway and on a worker alike."""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from mlgate.metrics_http import MetricsServer
from mlgate.tls import TLSFiles
from server.settings import GatewaySettings
from tests.support.certs import Authority, Pair
from tests.support.fresh import free_port
from tests.support.serving import MLGATE, clean_env
from tests.support.system import gateway_settings, running_gateway
from workers.settings import WorkerSettings


@dataclass(frozen=True)
class PKI:
    ca: Authority
    server: Pair
    client: Pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    ca = Authority(tmp_path_factory.mktemp("pki"))
    return PKI(ca, ca.issue("server", server=True), ca.issue("client", server=False))


def _get(url: str, context: ssl.SSLContext | None = None) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as refused:
        return refused.code, refused.read().decode()


def _trusting(pki: PKI, client: Pair | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if client is not None:
        context.load_cert_chain(client.cert, client.key)
    return context


@pytest.fixture
def plain() -> Iterator[MetricsServer]:
    server = MetricsServer(0, "127.0.0.1")
    yield server
    server.close()


def test_only_metrics_is_served(plain: MetricsServer) -> None:
    base = f"http://127.0.0.1:{plain.port}"
    status, body = _get(f"{base}/metrics")
    assert status == 200 and "mlgate_jobs_submitted_total" in body
    status, body = _get(f"{base}/metrics?name[]=mlgate_streams_open")
    assert status == 200 and "mlgate_streams_open" in body
    for path in ("/", "/favicon.ico", "/metrics/", "/metrics/x", "/admin", "/..%2fetc"):
        status, body = _get(f"{base}{path}")
        assert (status, body) == (404, "Not found: this endpoint serves /metrics only\n"), path


def test_it_listens_on_loopback_unless_told_otherwise() -> None:
    assert GatewaySettings.from_env({"MLGATE_HOST": "0.0.0.0"}).metrics_host == "127.0.0.1"
    assert WorkerSettings.from_env({"MLGATE_HOST": "0.0.0.0"}).metrics_host == "127.0.0.1"
    chosen = {"MLGATE_METRICS_HOST": "0.0.0.0"}
    assert GatewaySettings.from_env(chosen).metrics_host == "0.0.0.0"
    assert WorkerSettings.from_env(chosen).metrics_host == "0.0.0.0"
    for host in ("127.0.0.1", "0.0.0.0"):
        server = MetricsServer(0, host)
        try:
            assert server.address[0] == host
        finally:
            server.close()


def test_metrics_tls_takes_the_gateways_files_and_needs_them(pki: PKI) -> None:
    files = {"MLGATE_TLS_CERT": str(pki.server.cert), "MLGATE_TLS_KEY": str(pki.server.key)}
    assert GatewaySettings.from_env(files).metrics_tls is None
    on = GatewaySettings.from_env({**files, "MLGATE_METRICS_TLS": "1"})
    assert on.metrics_tls == on.tls == TLSFiles(str(pki.server.cert), str(pki.server.key))
    assert WorkerSettings.from_env({**files, "MLGATE_METRICS_TLS": "true"}).metrics_tls == on.tls
    with pytest.raises(ValueError, match=r"^MLGATE_METRICS_TLS=1 serves /metrics with the gateway"):
        GatewaySettings.from_env({"MLGATE_METRICS_TLS": "1"})
    with pytest.raises(ValueError, match=r"^MLGATE_METRICS_TLS must be 1 \(on\) or 0 \(off\)"):
        WorkerSettings.from_env({"MLGATE_METRICS_TLS": "maybe"})


def test_a_tls_gateway_serves_metrics_over_tls_only(tmp_path: Path, pki: PKI) -> None:
    tls = TLSFiles(str(pki.server.cert), str(pki.server.key))
    settings = gateway_settings(
        tmp_path / "data",
        tls_cert=tls.cert,
        tls_key=tls.key,
        metrics_port=0,
        metrics_tls=tls,
    )
    gateway = running_gateway(settings, embedded_workers=False)
    try:
        port = gateway.gateway.metrics_port
        status, body = _get(f"https://localhost:{port}/metrics", _trusting(pki))
        assert status == 200 and "mlgate_workers" in body
        assert _get(f"https://localhost:{port}/", _trusting(pki))[0] == 404
        # Plain HTTP gets no answer; an untrusting client refuses the certificate.
        with pytest.raises((http.client.HTTPException, ConnectionError, urllib.error.URLError)):
            _get(f"http://127.0.0.1:{port}/metrics")
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):
            _get(f"https://localhost:{port}/metrics", ssl.create_default_context())
    finally:
        gateway.stop()


def test_with_a_client_ca_a_scraper_needs_a_client_certificate(pki: PKI) -> None:
    server = MetricsServer(
        0,
        "127.0.0.1",
        tls=TLSFiles(str(pki.server.cert), str(pki.server.key), str(pki.ca.cert)),
    )
    url = f"https://localhost:{server.port}/metrics"
    try:
        assert _get(url, _trusting(pki, pki.client))[0] == 200
        # Refused in the handshake, or (TLS 1.3) at the first read after it.
        with pytest.raises(
            (urllib.error.URLError, ssl.SSLError, ConnectionError, http.client.HTTPException)
        ):
            _get(url, _trusting(pki))
    finally:
        server.close()


def test_a_client_that_says_nothing_delays_no_scrape(pki: PKI) -> None:
    server = MetricsServer(0, "127.0.0.1", tls=TLSFiles(str(pki.server.cert), str(pki.server.key)))
    try:
        with socket.create_connection(("127.0.0.1", server.port)):
            # Connected, no handshake: the next scrape is answered all the same.
            started = time.monotonic()
            status, _ = _get(f"https://localhost:{server.port}/metrics", _trusting(pki))
            assert status == 200
            assert time.monotonic() - started < 5
    finally:
        server.close()


def test_a_worker_serves_metrics_over_tls_too(tmp_path: Path, pki: PKI) -> None:
    port = free_port()
    env = clean_env(
        MLGATE_DATA_DIR=str(tmp_path / "data"),
        MLGATE_WORKER_METRICS_PORT=str(port),
        MLGATE_METRICS_TLS="1",
        MLGATE_TLS_CERT=str(pki.server.cert),
        MLGATE_TLS_KEY=str(pki.server.key),
    )
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        worker = subprocess.Popen(
            [str(MLGATE), "worker"], stdout=out, stderr=subprocess.STDOUT, env=env
        )
    try:
        deadline = time.monotonic() + 60
        while "mlgate worker running" not in log.read_text():
            assert worker.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)  # its log is the only signal a separate process gives
        assert f"metrics on https://127.0.0.1:{port}/metrics" in log.read_text()
        status, body = _get(f"https://localhost:{port}/metrics", _trusting(pki))
        assert status == 200 and "mlgate_model_cache_bytes" in body
        assert _get(f"https://localhost:{port}/jobs", _trusting(pki))[0] == 404
    finally:
        worker.terminate()
        worker.wait(60)
