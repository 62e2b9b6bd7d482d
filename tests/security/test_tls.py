"""TLS and mTLS with certificates the tests make: the right certificates work; plaintext, an
unknown CA and a missing client certificate are refused; the client and the CLI connect."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from brokers import BrokerSettings, BrokerUnavailable, open_broker
from brokers.rabbitmq import _parameters as rabbitmq_parameters
from mlgate_client import TLS, MLGateClient, MLGateError, Unavailable
from server.jobstore import open_job_store
from server.settings import GatewaySettings, TLSFiles
from server.transport import server_credentials
from storage.errors import StorageMisconfigured, StorageUnavailable
from storage.s3 import S3ObjectStore
from tests.support.certs import PKI, Pair, issue_pki
from tests.support.fresh import free_port, unique_namespace
from tests.support.redis import PrivateRedis
from tests.support.serving import clean_env, run_mlgate
from tests.support.system import RunningGateway, gateway_settings, running_gateway


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return issue_pki(tmp_path_factory.mktemp("pki"))


def _serve(tmp_path: Path, pki: PKI, *, mtls: bool) -> RunningGateway:
    settings = gateway_settings(
        tmp_path / "data",
        tls_cert=str(pki.server.cert),
        tls_key=str(pki.server.key),
        tls_client_ca=str(pki.ca.cert) if mtls else "",
    )
    return running_gateway(settings, embedded_workers=False)


@pytest.fixture
def tls_gateway(tmp_path: Path, pki: PKI) -> Iterator[RunningGateway]:
    gateway = _serve(tmp_path, pki, mtls=False)
    yield gateway
    gateway.stop()


@pytest.fixture
def mtls_gateway(tmp_path: Path, pki: PKI) -> Iterator[RunningGateway]:
    gateway = _serve(tmp_path, pki, mtls=True)
    yield gateway
    gateway.stop()


def _datasets(address: str, tls: TLS | bool) -> set[str]:
    with MLGateClient(address, timeout=10, tls=tls) as client:
        return {d.id for d in client.list_datasets()}


def test_tls_with_the_right_ca_works(tls_gateway: RunningGateway, pki: PKI) -> None:
    assert "diabetes" in _datasets(tls_gateway.address, TLS(str(pki.ca.cert)))
    port = tls_gateway.gateway.port
    assert "diabetes" in _datasets(f"localhost:{port}", TLS(str(pki.ca.cert)))
    # A list of gateways is checked against the first one's name, which the certificate holds.
    assert "diabetes" in _datasets(f"localhost:{port},127.0.0.1:{port}", TLS(str(pki.ca.cert)))


@pytest.mark.parametrize("how", ["plaintext", "unknown CA", "system roots"])
def test_tls_refuses_plaintext_and_untrusted_certificates(
    tls_gateway: RunningGateway, pki: PKI, how: str
) -> None:
    choices: dict[str, TLS | bool] = {
        "plaintext": False,
        "unknown CA": TLS(str(pki.stranger.cert)),
        "system roots": True,
    }
    tls = choices[how]
    with pytest.raises(Unavailable):
        _datasets(tls_gateway.address, tls)


def test_mtls_wants_a_client_certificate_from_its_ca(
    mtls_gateway: RunningGateway, pki: PKI
) -> None:
    ca = str(pki.ca.cert)
    right = TLS(ca, str(pki.client.cert), str(pki.client.key))
    assert "diabetes" in _datasets(mtls_gateway.address, right)
    strangers = TLS(ca, str(pki.stranger_client.cert), str(pki.stranger_client.key))
    for refused in (TLS(ca), strangers, False):
        with pytest.raises(MLGateError) as caught:
            _datasets(mtls_gateway.address, refused)
        assert caught.value.code == "UNAVAILABLE"


def test_the_cli_connects_with_tls_and_mtls_settings(
    mtls_gateway: RunningGateway, pki: PKI
) -> None:
    env = clean_env(
        MLGATE_ADDRESS=mtls_gateway.address,
        MLGATE_TLS_CA=str(pki.ca.cert),
        MLGATE_TLS_CLIENT_CERT=str(pki.client.cert),
        MLGATE_TLS_CLIENT_KEY=str(pki.client.key),
    )
    done = run_mlgate("--tls", "datasets", "list", env=env)
    assert done.returncode == 0, done.stderr
    assert "diabetes" in done.stdout
    # The CA file alone implies TLS; without the client certificate the gateway refuses.
    del env["MLGATE_TLS_CLIENT_CERT"], env["MLGATE_TLS_CLIENT_KEY"]
    done = run_mlgate("--timeout", "10", "datasets", "list", env=env)
    assert done.returncode == 3, done.stdout + done.stderr
    assert "UNAVAILABLE" in done.stderr


def test_the_client_reads_its_tls_settings_from_the_environment(
    tls_gateway: RunningGateway, pki: PKI
) -> None:
    env = {"MLGATE_ADDRESS": tls_gateway.address, "MLGATE_TLS_CA": str(pki.ca.cert)}
    with MLGateClient.from_env(env, timeout=10) as client:
        assert "iris" in {d.id for d in client.list_datasets()}


def test_bad_tls_settings_are_one_line_naming_the_variable(tmp_path: Path, pki: PKI) -> None:
    with pytest.raises(ValueError, match="MLGATE_TLS_KEY"):
        GatewaySettings.from_env({"MLGATE_TLS_CERT": str(pki.server.cert)})
    with pytest.raises(ValueError, match="MLGATE_TLS_CLIENT_CA needs"):
        GatewaySettings.from_env({"MLGATE_TLS_CLIENT_CA": str(pki.ca.cert)})
    missing = TLSFiles.from_env(
        {"MLGATE_TLS_CERT": str(tmp_path / "nope.pem"), "MLGATE_TLS_KEY": str(pki.server.key)}
    )
    with pytest.raises(ValueError, match=r"^MLGATE_TLS_CERT: cannot read .*nope\.pem"):
        server_credentials(missing)
    swapped = TLSFiles.from_env(
        {"MLGATE_TLS_CERT": str(pki.server.key), "MLGATE_TLS_KEY": str(pki.server.cert)}
    )
    with pytest.raises(ValueError, match=r"MLGATE_TLS_CERT: .* holds no PEM certificate"):
        server_credentials(swapped)
    done = run_mlgate(
        "serve",
        "--data-dir",
        str(tmp_path / "data"),
        env=clean_env(MLGATE_TLS_CERT=str(tmp_path / "nope.pem"), MLGATE_TLS_KEY="k.pem"),
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"mlgate: error: MLGATE_TLS_CERT: cannot read {tmp_path / 'nope.pem'} "
        "(No such file or directory)"
    ]


def test_redis_broker_and_job_store_over_tls_trust_the_broker_ca(tmp_path: Path, pki: PKI) -> None:
    tls_port = free_port()
    server = PrivateRedis(
        tmp_path / "redis",
        "--tls-port", str(tls_port),
        "--tls-cert-file", str(pki.server.cert),
        "--tls-key-file", str(pki.server.key),
        "--tls-ca-cert-file", str(pki.ca.cert),
        "--tls-auth-clients", "no",
    )  # fmt: skip
    url = f"rediss://localhost:{tls_port}/0"
    env = {"MLGATE_BROKER": "redis", "MLGATE_BROKER_URL": url, "MLGATE_STORE_URL": url}
    with server:
        trusted = GatewaySettings.from_env({**env, "MLGATE_BROKER_CA": str(pki.ca.cert)})
        broker = open_broker(trusted.broker.with_(namespace=unique_namespace()))
        try:
            broker.start()
            assert broker.healthy()
        finally:
            broker.close()
        store = open_job_store(trusted.store_url, ca_file=trusted.broker.ca_file)
        store.ping()
        store.close()
        # Without the CA the server's certificate is not trusted.
        untrusted = BrokerSettings.from_env(env).with_(namespace=unique_namespace())
        refused = open_broker(untrusted)
        try:
            with pytest.raises(BrokerUnavailable):
                refused.start()
        finally:
            refused.close()
        with pytest.raises(ConnectionError):
            open_job_store(url).ping()


def test_amqps_trusts_the_broker_ca(pki: PKI) -> None:
    parameters = rabbitmq_parameters(
        "amqps://u:p@localhost/%2F", "ns", "publisher", str(pki.ca.cert)
    )
    options = parameters.ssl_options
    assert options is not None and options.server_hostname == "localhost"
    subjects = [dict(n[0] for n in c["subject"]) for c in options.context.get_ca_certs()]
    assert subjects == [{"commonName": "mlgate test CA"}]
    assert rabbitmq_parameters("amqp://u:p@localhost/%2F", "ns", "x", "ca.pem").ssl_options is None


def test_an_https_s3_endpoint_trusts_mlgate_s3_ca(
    pki: PKI, monkeypatch: pytest.MonkeyPatch
) -> None:
    with _https_server(pki.server) as port:
        endpoint = f"https://localhost:{port}"
        monkeypatch.setenv("MLGATE_S3_ENDPOINT_URL", endpoint)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
        monkeypatch.delenv("AWS_CA_BUNDLE", raising=False)
        monkeypatch.setenv("MLGATE_S3_CA", str(pki.ca.cert))
        # The handshake works: the server's answer (no such bucket) comes through.
        with pytest.raises(StorageMisconfigured):
            S3ObjectStore.from_url("s3://bucket/prefix").check()
        monkeypatch.delenv("MLGATE_S3_CA")
        with pytest.raises(StorageUnavailable, match="SSL"):
            S3ObjectStore.from_url("s3://bucket/prefix").check()


@contextmanager
def _https_server(pair: Pair) -> Iterator[int]:
    """An HTTPS server that answers every request 404, as S3 does for a missing bucket."""

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pair.cert, pair.key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
