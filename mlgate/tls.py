"""The TLS files a process serves with (``MLGATE_TLS_*``): the gateway's gRPC port and, with
``MLGATE_METRICS_TLS=1``, the ``/metrics`` endpoints of the gateway and the workers.

Everything that would make a server start and then fail every handshake is refused at start-up,
in one line naming the variable: a file that cannot be read or holds no PEM, an encrypted key, a
key that is not its certificate's, and a certificate past its end date or before its start date.
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PEMFiles", "TLSFiles", "checked_pem", "server_context"]

_CERTIFICATE = (b"-----BEGIN CERTIFICATE-----", "certificate")
_PRIVATE_KEY = (b"PRIVATE KEY-----", "private key")


@dataclass(frozen=True)
class TLSFiles:
    """PEM paths: a certificate and key make the gateway serve TLS only; a client CA makes it
    require client certificates that CA signed (mTLS). All empty: plaintext."""

    cert: str = ""
    key: str = ""
    client_ca: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> TLSFiles:
        """``MLGATE_TLS_CERT``, ``MLGATE_TLS_KEY`` and ``MLGATE_TLS_CLIENT_CA``, checked."""
        files = cls(
            env.get("MLGATE_TLS_CERT", ""),
            env.get("MLGATE_TLS_KEY", ""),
            env.get("MLGATE_TLS_CLIENT_CA", ""),
        )
        files.check()
        return files

    @property
    def enabled(self) -> bool:
        return bool(self.cert)

    def check(self) -> None:
        """``ValueError`` for files that cannot work together."""
        if bool(self.cert) != bool(self.key):
            raise ValueError("MLGATE_TLS_CERT and MLGATE_TLS_KEY go together: set both or neither")
        if self.client_ca and not self.cert:
            raise ValueError(
                "MLGATE_TLS_CLIENT_CA needs MLGATE_TLS_CERT and MLGATE_TLS_KEY: "
                "client certificates are only asked for over TLS"
            )


@dataclass(frozen=True)
class PEMFiles:
    """The checked contents of ``TLSFiles``."""

    cert: bytes
    key: bytes
    client_ca: bytes | None


def _read_pem(variable: str, path: str, kind: tuple[bytes, str]) -> bytes:
    """The file's bytes; ``ValueError`` naming the variable when it is missing or not PEM."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ValueError(f"{variable}: cannot read {path} ({exc.strerror})") from None
    marker, what = kind
    if marker not in data:
        raise ValueError(f"{variable}: {path} holds no PEM {what}")
    return data


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password.
    return b""


def _load_pair(context: ssl.SSLContext, tls: TLSFiles, key: bytes) -> None:
    if b"ENCRYPTED" in key:
        raise ValueError(
            f"MLGATE_TLS_KEY: {tls.key} is encrypted; mlgate reads an unencrypted key "
            "(protect the file with its permissions instead)"
        )
    try:
        context.load_cert_chain(tls.cert, tls.key, password=_no_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"MLGATE_TLS_KEY: {tls.key} is not the private key of the certificate in "
                f"{tls.cert} (MLGATE_TLS_CERT): the two do not match"
            ) from None
        raise ValueError(
            f"MLGATE_TLS_CERT, MLGATE_TLS_KEY: cannot use {tls.cert} with {tls.key} "
            f"({exc.reason or exc})"
        ) from None


def _check_dates(path: str, pem: bytes, now: datetime.datetime) -> None:
    # Imported here: only a process that serves TLS needs it.
    from cryptography import x509

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise ValueError(f"MLGATE_TLS_CERT: {path} holds no readable certificate ({exc})") from None
    ends, starts = certificate.not_valid_after_utc, certificate.not_valid_before_utc
    if now > ends:
        raise ValueError(
            f"MLGATE_TLS_CERT: the certificate in {path} expired on "
            f"{ends:%Y-%m-%d %H:%M:%S} UTC; renew it (clients refuse an expired certificate)"
        )
    if now < starts:
        raise ValueError(
            f"MLGATE_TLS_CERT: the certificate in {path} is not valid before "
            f"{starts:%Y-%m-%d %H:%M:%S} UTC; check this machine's clock, or the certificate"
        )


def checked_pem(tls: TLSFiles, *, now: datetime.datetime | None = None) -> PEMFiles:
    """The files' contents once each is readable PEM, the key is the certificate's and the
    certificate is valid ``now``; ``ValueError`` naming the variable otherwise."""
    tls.check()
    cert = _read_pem("MLGATE_TLS_CERT", tls.cert, _CERTIFICATE)
    key = _read_pem("MLGATE_TLS_KEY", tls.key, _PRIVATE_KEY)
    client_ca = (
        _read_pem("MLGATE_TLS_CLIENT_CA", tls.client_ca, _CERTIFICATE) if tls.client_ca else None
    )
    _check_dates(tls.cert, cert, now or datetime.datetime.now(datetime.UTC))
    _load_pair(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER), tls, key)
    return PEMFiles(cert, key, client_ca)


def server_context(tls: TLSFiles) -> ssl.SSLContext:
    """A server-side context for these files (checked as ``checked_pem`` checks them): TLS 1.2
    or later, asking for a client certificate signed by the client CA when there is one."""
    pem = checked_pem(tls)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_pair(context, tls, pem.key)
    if pem.client_ca is not None:
        try:
            context.load_verify_locations(cafile=tls.client_ca)
        except ssl.SSLError as exc:
            raise ValueError(
                f"MLGATE_TLS_CLIENT_CA: {tls.client_ca} holds no usable CA certificate "
                f"({exc.reason or exc})"
            ) from None
        context.verify_mode = ssl.CERT_REQUIRED
    return context
