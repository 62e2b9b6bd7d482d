"""Start-up refuses what would only fail later, in one line naming the variable: a TLS key that is
not its certificate's, a certificate out of its dates, and a train concurrency of 0 (jobs RUNNING
for ever) or past what the machine can run (a fork per fit, without bound)."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

from mlgate.tls import TLSFiles, checked_pem
from server.transport import server_credentials
from tests.support.certs import Authority
from tests.support.serving import clean_env, run_mlgate
from workers.parallelism import most_fits
from workers.settings import WorkerSettings


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Authority:
    return Authority(tmp_path_factory.mktemp("pki"))


def _serve_refused(tmp_path: Path, **env: str) -> str:
    """``mlgate serve``'s one-line refusal, once it has exited 2 without serving."""
    done = run_mlgate(
        "serve", "--port", "0", "--data-dir", str(tmp_path / "data"), env=clean_env(**env)
    )
    assert done.returncode == 2, done.stdout + done.stderr
    (line,) = done.stderr.strip().splitlines()
    return line


def test_a_key_that_is_not_the_certificates_is_named_not_a_failed_bind(
    tmp_path: Path, ca: Authority
) -> None:
    server, other = ca.issue("server", server=True), ca.issue("other", server=True)
    line = _serve_refused(tmp_path, MLGATE_TLS_CERT=str(server.cert), MLGATE_TLS_KEY=str(other.key))
    assert line == (
        f"mlgate: error: MLGATE_TLS_KEY: {other.key} is not the private key of the certificate "
        f"in {server.cert} (MLGATE_TLS_CERT): the two do not match"
    )
    assert "bind" not in line
    # The right pair still serves.
    assert server_credentials(TLSFiles(str(server.cert), str(server.key))) is not None


def test_an_expired_certificate_is_refused_naming_its_date(tmp_path: Path, ca: Authority) -> None:
    expired = ca.issue("expired", server=True, days=(-30, -2))
    ended = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=2)).date()
    line = _serve_refused(
        tmp_path, MLGATE_TLS_CERT=str(expired.cert), MLGATE_TLS_KEY=str(expired.key)
    )
    assert line.startswith(
        f"mlgate: error: MLGATE_TLS_CERT: the certificate in {expired.cert} expired on {ended} "
    ), line
    assert "renew it" in line


def test_a_certificate_not_valid_yet_is_refused_naming_its_date(ca: Authority) -> None:
    pair = ca.issue("server", server=True)
    files = TLSFiles(str(pair.cert), str(pair.key))
    last_year = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=365)
    with pytest.raises(ValueError, match=r"^MLGATE_TLS_CERT: .* is not valid before 20\d\d-"):
        checked_pem(files, now=last_year)


def test_an_encrypted_key_is_refused_without_prompting(tmp_path: Path, ca: Authority) -> None:
    from cryptography.hazmat.primitives import serialization

    pair = ca.issue("server", server=True)
    key = serialization.load_pem_private_key(pair.key.read_bytes(), password=None)
    locked = tmp_path / "locked.key"
    locked.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    with pytest.raises(ValueError, match=r"^MLGATE_TLS_KEY: .*locked\.key is encrypted"):
        checked_pem(TLSFiles(str(pair.cert), str(locked)))


@pytest.mark.parametrize("value", ["0", "-1", "10000", str(most_fits() + 1), "two"])
def test_train_concurrency_out_of_bounds_is_refused_naming_the_variable(value: str) -> None:
    expected = (
        f"MLGATE_TRAIN_CONCURRENCY must be a whole number from 1 to {most_fits()} "
        f"(4 fits per core this process may use), not {value!r}"
    )
    with pytest.raises(ValueError) as caught:
        WorkerSettings.from_env({"MLGATE_TRAIN_CONCURRENCY": value})
    assert str(caught.value) == expected


def test_train_concurrency_within_bounds_is_taken() -> None:
    assert WorkerSettings.from_env({}).train_concurrency == 1
    assert WorkerSettings.from_env({"MLGATE_TRAIN_CONCURRENCY": "1"}).train_concurrency == 1
    most = str(most_fits())
    assert WorkerSettings.from_env({"MLGATE_TRAIN_CONCURRENCY": most}).train_concurrency == int(
        most
    )


def test_serve_refuses_a_train_concurrency_of_zero_before_serving(tmp_path: Path) -> None:
    line = _serve_refused(tmp_path, MLGATE_TRAIN_CONCURRENCY="0")
    assert line.startswith("mlgate: error: MLGATE_TRAIN_CONCURRENCY must be a whole number from 1")
