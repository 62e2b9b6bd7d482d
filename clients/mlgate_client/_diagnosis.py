"""Why a gateway that listens cannot be reached: its TLS and this client's settings disagree.

gRPC gives a channel that cannot finish its handshake no reason: it only keeps trying, so a
plaintext client of a TLS gateway, or a TLS client without the certificate an mTLS gateway asks
for, would wait and then be told that no gateway answers. When a connection does not come up at
once, the client asks the address itself, with a plain socket and Python's ``ssl``: whether
anything listens, whether it speaks TLS, whether this client trusts its certificate, whether it
wants a client certificate or refuses this one. What it finds names the setting to change.
Nothing is sent but handshakes: no call, no token.
"""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass

from mlgate_client._security import TLS

__all__ = ["Mismatch", "diagnose"]

_SCHEMES = ("dns:///", "dns:", "ipv4:", "ipv6:")
_CONNECT_TIMEOUT = 2.0
# After a TLS 1.3 handshake the server checks the client's certificate: its refusal comes next
# (an alert, or the connection closed), where a gateway that accepts it sends its HTTP/2 settings.
_REFUSAL_WAIT = 1.0
_REFUSES_CERTIFICATE = ("UNKNOWN_CA", "BAD_CERTIFICATE", "CERTIFICATE_UNKNOWN", "DECRYPT_ERROR")


@dataclass(frozen=True)
class Mismatch:
    """What is wrong, and the settings that would put it right."""

    message: str
    hints: tuple[str, ...]


@dataclass(frozen=True)
class _Handshake:
    """How one TLS handshake went: ``speaks_tls`` false when the other end answered in anything
    but TLS; ``refused`` when it ended the connection at or right after the handshake, as a
    server does with a client certificate it wants and did not get or does not trust (``alert``:
    the TLS alert it said so with, if any); ``unverified``: why its certificate is not trusted."""

    speaks_tls: bool
    refused: bool = False
    alert: str = ""
    unverified: str = ""


def diagnose(address: str, tls: TLS | None) -> Mismatch | None:
    """The mismatch between this client's TLS settings and the gateway at ``address``; None when
    nothing listens there (no gateway: a different story) or none is found."""
    for host, port in _endpoints(address):
        try:
            found = _diagnose(host, port, tls)
        except (OSError, ValueError):
            continue  # not reachable now, or a settings file that cannot be read: told elsewhere
        if found is not None:
            return found
    return None


def _endpoints(address: str) -> list[tuple[str, int]]:
    for scheme in _SCHEMES:
        if address.startswith(scheme):
            address = address.removeprefix(scheme)
            break
    found = []
    for entry in address.split(","):
        host, colon, port = entry.strip().rpartition(":")
        if colon and host and port.isdigit():
            found.append((host.strip("[]"), int(port)))
    return found


def _diagnose(host: str, port: int, tls: TLS | None) -> Mismatch | None:
    where = f"{host}:{port}"
    probe = _handshake(host, port, _unverified())
    if probe is None:
        return None  # nothing listens
    if tls is None:
        if not probe.speaks_tls:
            return None
        return _plaintext_client(where, host, port, probe)
    if not probe.speaks_tls:
        return Mismatch(
            f"the gateway at {where} serves plaintext, and this client asks for TLS",
            (
                "drop --tls, MLGATE_TLS and MLGATE_TLS_CA, MLGATE_TLS_CLIENT_CERT, "
                "MLGATE_TLS_CLIENT_KEY for this gateway",
                "or serve TLS: start the gateway with MLGATE_TLS_CERT and MLGATE_TLS_KEY",
            ),
        )
    verified = _handshake(host, port, _context(tls), check=True)
    if verified is None:
        return None
    if verified.unverified:
        return _untrusted(where, tls, verified.unverified)
    if verified.refused and not tls.client_cert:
        return Mismatch(
            f"the gateway at {where} requires a client certificate, and this client has none",
            (
                "set MLGATE_TLS_CLIENT_CERT and MLGATE_TLS_CLIENT_KEY to a certificate and key "
                "signed by the CA the gateway trusts (its MLGATE_TLS_CLIENT_CA)",
            ),
        )
    if verified.refused:
        return Mismatch(
            f"the gateway at {where} refused this client's certificate "
            f"(MLGATE_TLS_CLIENT_CERT={tls.client_cert}): {_alert_text(verified.alert)}",
            (
                "use a certificate signed by the CA the gateway trusts (its "
                "MLGATE_TLS_CLIENT_CA), made for client authentication, and not expired",
            ),
        )
    return None


def _plaintext_client(where: str, host: str, port: int, probe: _Handshake) -> Mismatch:
    hints = ["connect with --tls (or MLGATE_TLS=1)"]
    trusted = _handshake(host, port, _context(TLS()), check=True)
    if trusted is None or trusted.unverified:
        hints.append(
            "set MLGATE_TLS_CA to the CA that signed the gateway's certificate (this machine "
            "does not trust it)"
        )
    if probe.refused:
        hints.append(
            "set MLGATE_TLS_CLIENT_CERT and MLGATE_TLS_CLIENT_KEY: the gateway requires a "
            "client certificate, signed by the CA it trusts (its MLGATE_TLS_CLIENT_CA)"
        )
    return Mismatch(
        f"the gateway at {where} serves TLS, and this client connects in plaintext", tuple(hints)
    )


def _untrusted(where: str, tls: TLS, reason: str) -> Mismatch:
    if "hostname mismatch" in reason.lower() or "ip address mismatch" in reason.lower():
        return Mismatch(
            f"the gateway's certificate at {where} is not for that name ({reason})",
            ("connect by a name or address its certificate holds (--address / MLGATE_ADDRESS)",),
        )
    trusted = (
        f"MLGATE_TLS_CA={tls.ca_file}" if tls.ca_file else "the system's CAs (no MLGATE_TLS_CA)"
    )
    return Mismatch(
        f"this client does not trust the certificate of the gateway at {where}: {reason}",
        (
            f"this client trusts {trusted}: set MLGATE_TLS_CA to the CA that signed the "
            "gateway's certificate",
        ),
    )


def _names(alert: str, kinds: tuple[str, ...]) -> bool:
    return any(kind in alert.upper() for kind in kinds)


def _alert_text(alert: str) -> str:
    if _names(alert, ("CERTIFICATE_EXPIRED",)):
        return "it has expired"
    if not alert or _names(alert, _REFUSES_CERTIFICATE):
        return "it is not signed by a CA the gateway trusts"
    return alert.lower().replace("_", " ")


def _unverified() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["h2"])
    return context


def _context(tls: TLS) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=tls.ca_file)
    if tls.client_cert and tls.client_key:
        context.load_cert_chain(tls.client_cert, tls.client_key)
    context.set_alpn_protocols(["h2"])
    return context


def _handshake(
    host: str, port: int, context: ssl.SSLContext, *, check: bool = False
) -> _Handshake | None:
    """A TLS handshake with ``host:port``, then a moment for what the server says next (how TLS
    1.3 refuses a client certificate); None when nothing listens."""
    try:
        raw = socket.create_connection((host, port), timeout=_CONNECT_TIMEOUT)
    except OSError:
        return None
    with raw:
        try:
            wrapped = context.wrap_socket(raw, server_hostname=host if check else None)
        except ssl.SSLCertVerificationError as exc:
            return _Handshake(True, unverified=exc.verify_message or str(exc))
        except TimeoutError:
            return None  # a gateway too busy to answer says nothing about its TLS
        except ssl.SSLError as exc:
            alert = exc.reason or ""
            # An alert is TLS speaking; anything else (an HTTP/2 frame) is not TLS at all.
            speaks_tls = "ALERT" in alert.upper()
            return _Handshake(speaks_tls, refused=speaks_tls, alert=alert)
        except OSError:
            return _Handshake(False)  # closed or reset on the first bytes: no TLS there
        with wrapped:
            wrapped.settimeout(_REFUSAL_WAIT)
            try:
                said = wrapped.recv(1)
            except ssl.SSLError as exc:
                return _Handshake(True, refused=True, alert=exc.reason or "")
            except TimeoutError:
                return _Handshake(True)  # nothing said within the wait: no refusal
            except OSError:
                said = b""
        return _Handshake(True, refused=not said)
