"""Connection errors that name the problem: a client whose TLS settings do not match the gateway's
is told so at once, with the setting to change, instead of waiting 30 s to hear that no gateway
answers and being told to start one."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlgate_client import TLS, MLGateClient, ServerUnreachable, TLSMismatch
from mlgate_client._diagnosis import diagnose
from tests.support.certs import PKI, issue_pki
from tests.support.fresh import free_port
from tests.support.serving import clean_env, run_mlgate
from tests.support.system import RunningGateway, gateway_settings, running_gateway

# The CLI waits this long for a gateway that does not answer; a mismatch is told well within it.
PROMPTLY = 10.0


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    return issue_pki(tmp_path_factory.mktemp("pki"))


def _gateway(tmp: Path, pki: PKI | None, *, mtls: bool = False) -> RunningGateway:
    tls = {}
    if pki is not None:
        tls = {"tls_cert": str(pki.server.cert), "tls_key": str(pki.server.key)}
        if mtls:
            tls["tls_client_ca"] = str(pki.ca.cert)
    return running_gateway(gateway_settings(tmp / "data", **tls), embedded_workers=False)


@pytest.fixture
def tls_gateway(tmp_path: Path, pki: PKI) -> Iterator[RunningGateway]:
    gateway = _gateway(tmp_path, pki)
    yield gateway
    gateway.stop()


@pytest.fixture
def mtls_gateway(tmp_path: Path, pki: PKI) -> Iterator[RunningGateway]:
    gateway = _gateway(tmp_path, pki, mtls=True)
    yield gateway
    gateway.stop()


@pytest.fixture
def plain_gateway(tmp_path: Path) -> Iterator[RunningGateway]:
    gateway = _gateway(tmp_path, None)
    yield gateway
    gateway.stop()


def _cli(address: str, **env: str) -> tuple[int, list[str], float]:
    """`mlgate datasets list` against ``address``: exit status, stderr's lines, seconds taken."""
    started = time.monotonic()
    done = run_mlgate("--address", address, "datasets", "list", env=clean_env(**env))
    return done.returncode, done.stderr.splitlines(), time.monotonic() - started


def test_a_plaintext_client_of_a_tls_gateway_is_told_to_use_tls_and_trust_its_ca(
    tls_gateway: RunningGateway,
) -> None:
    code, err, took = _cli(tls_gateway.address)
    assert code == 3 and took < PROMPTLY, (took, err)
    assert err == [
        f"error: UNAVAILABLE: the gateway at {tls_gateway.address} serves TLS, and this client "
        "connects in plaintext",
        "hint: connect with --tls (or MLGATE_TLS=1)",
        "hint: set MLGATE_TLS_CA to the CA that signed the gateway's certificate (this machine "
        "does not trust it)",
    ]


def test_a_plaintext_client_of_an_mtls_gateway_is_told_every_setting_missing(
    mtls_gateway: RunningGateway,
) -> None:
    code, err, took = _cli(mtls_gateway.address)
    assert code == 3 and took < PROMPTLY, (took, err)
    assert err[0].endswith("serves TLS, and this client connects in plaintext"), err
    assert err[-1] == (
        "hint: set MLGATE_TLS_CLIENT_CERT and MLGATE_TLS_CLIENT_KEY: the gateway requires a "
        "client certificate, signed by the CA it trusts (its MLGATE_TLS_CLIENT_CA)"
    )


def test_a_tls_client_without_the_required_certificate_is_told_which_settings(
    mtls_gateway: RunningGateway, pki: PKI
) -> None:
    code, err, took = _cli(mtls_gateway.address, MLGATE_TLS_CA=str(pki.ca.cert))
    assert code == 3 and took < PROMPTLY, (took, err)
    assert err == [
        f"error: UNAVAILABLE: the gateway at {mtls_gateway.address} requires a client "
        "certificate, and this client has none",
        "hint: set MLGATE_TLS_CLIENT_CERT and MLGATE_TLS_CLIENT_KEY to a certificate and key "
        "signed by the CA the gateway trusts (its MLGATE_TLS_CLIENT_CA)",
    ]


def test_a_client_certificate_the_gateway_does_not_trust_is_named(
    mtls_gateway: RunningGateway, pki: PKI
) -> None:
    stranger = pki.stranger_client
    code, err, took = _cli(
        mtls_gateway.address,
        MLGATE_TLS_CA=str(pki.ca.cert),
        MLGATE_TLS_CLIENT_CERT=str(stranger.cert),
        MLGATE_TLS_CLIENT_KEY=str(stranger.key),
    )
    assert code == 3 and took < PROMPTLY, (took, err)
    assert err[0] == (
        f"error: UNAVAILABLE: the gateway at {mtls_gateway.address} refused this client's "
        f"certificate (MLGATE_TLS_CLIENT_CERT={stranger.cert}): it is not signed by a CA the "
        "gateway trusts"
    )


def test_a_tls_client_that_does_not_trust_the_gateway_is_told_to_set_its_ca(
    tls_gateway: RunningGateway,
) -> None:
    code, err, took = _cli(tls_gateway.address, MLGATE_TLS="1")
    assert code == 3 and took < PROMPTLY, (took, err)
    assert err[0].startswith(
        "error: UNAVAILABLE: this client does not trust the certificate of the gateway at "
        f"{tls_gateway.address}: "
    ), err
    assert err[1:] == [
        "hint: this client trusts the system's CAs (no MLGATE_TLS_CA): set MLGATE_TLS_CA to the "
        "CA that signed the gateway's certificate"
    ]


def test_a_tls_client_of_a_plaintext_gateway_is_told_to_drop_tls(
    plain_gateway: RunningGateway, pki: PKI
) -> None:
    code, err, took = _cli(plain_gateway.address, MLGATE_TLS_CA=str(pki.ca.cert))
    assert code == 3 and took < PROMPTLY, (took, err)
    assert err[0] == (
        f"error: UNAVAILABLE: the gateway at {plain_gateway.address} serves plaintext, and this "
        "client asks for TLS"
    )


def test_the_python_client_raises_the_mismatch_on_its_first_call(
    mtls_gateway: RunningGateway, pki: PKI
) -> None:
    tls = TLS(str(pki.ca.cert))
    with (
        MLGateClient(mtls_gateway.address, timeout=10, tls=tls) as client,
        pytest.raises(TLSMismatch) as caught,
    ):
        client.list_datasets_page()
    assert "requires a client certificate" in caught.value.message
    assert caught.value.code == "UNAVAILABLE"
    assert caught.value.hints[0].startswith("set MLGATE_TLS_CLIENT_CERT")


def test_nothing_listening_is_still_no_gateway_with_the_hint_to_start_one() -> None:
    address = f"127.0.0.1:{free_port()}"
    code, err, _ = _cli(address, MLGATE_CONNECT_TIMEOUT="1")
    assert code == 3
    assert err[-3].startswith(f"error: UNAVAILABLE: no mlgate gateway answers at {address}"), err
    assert err[-2].startswith("hint: start one with `mlgate serve"), err
    with MLGateClient(address, timeout=5) as client, pytest.raises(ServerUnreachable) as caught:
        client.list_datasets_page()
    assert not isinstance(caught.value, TLSMismatch)


def test_an_address_that_takes_the_connection_and_says_nothing_is_no_mismatch() -> None:
    # A gateway too busy to finish a handshake in time: nothing is known of its TLS, so nothing
    # is said (the client goes on waiting for it), whatever this client's settings.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        address = f"127.0.0.1:{silent.getsockname()[1]}"
        assert diagnose(address, None) is None
        assert diagnose(address, TLS()) is None
