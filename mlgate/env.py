"""Reading ``MLGATE_*`` variables, for each part's settings (``brokers.settings``,
``server.settings``, ``workers.settings``): a value that cannot work is refused in one line that
names the variable, and settings print with their URLs' secrets redacted.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mlgate.tls import TLSFiles
from mlgate.urls import check_url, redact_url

__all__ = [
    "URL",
    "data_dir",
    "flag",
    "metrics_tls",
    "optional_port",
    "port",
    "positive",
    "redacted_repr",
    "seconds",
    "size",
    "storage_url",
    "url",
]

#: Field metadata of a URL that may carry a password: ``redacted_repr`` shows it redacted.
URL = {"url": True}

_UNITS = {"": 1, "B": 1, "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def port(variable: str, text: str) -> int:
    """``text`` as a port number, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise ValueError(f"{variable} must be a port number from 0 to 65535, not {text!r}")
    return value


def positive(
    env: Mapping[str, str],
    variable: str,
    default: str,
    *,
    zero: bool = False,
    highest: int | None = None,
    why: str = "",
) -> int:
    """A whole number above 0 (or 0 and above, with ``zero``), at most ``highest`` when given
    (``why`` says where that bound comes from)."""
    text = env.get(variable) or default
    lowest = 0 if zero else 1
    try:
        value = int(text)
    except ValueError:
        value = lowest - 1
    if highest is not None and not lowest <= value <= highest:
        raise ValueError(
            f"{variable} must be a whole number from {lowest} to {highest}{why}, not {text!r}"
        )
    if value < lowest:
        raise ValueError(f"{variable} must be a whole number, {lowest} or more, not {text!r}")
    return value


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("", "0", "false", "no", "off")


def flag(env: Mapping[str, str], variable: str) -> bool:
    """On (``1``, ``true``, ``yes``, ``on``) or off (``0``, ``false``, ``no``, ``off``, unset)."""
    text = env.get(variable, "").strip().lower()
    if text not in _TRUE + _FALSE:
        raise ValueError(f"{variable} must be 1 (on) or 0 (off), not {env[variable]!r}")
    return text in _TRUE


def metrics_tls(env: Mapping[str, str]) -> TLSFiles | None:
    """The files ``/metrics`` is served with over TLS: the process's ``MLGATE_TLS_*`` when
    ``MLGATE_METRICS_TLS`` is on; None (plain HTTP) when it is off."""
    if not flag(env, "MLGATE_METRICS_TLS"):
        return None
    files = TLSFiles.from_env(env)
    if not files.enabled:
        raise ValueError(
            "MLGATE_METRICS_TLS=1 serves /metrics with the gateway's certificate: "
            "set MLGATE_TLS_CERT and MLGATE_TLS_KEY"
        )
    return files


def seconds(env: Mapping[str, str], variable: str, default: float, *, zero: bool = False) -> float:
    """A finite number of seconds above 0 (or 0 and above, with ``zero``)."""
    text = env.get(variable)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (value >= 0 if zero else value > 0) or value == float("inf"):
        lowest = "0 or more" if zero else "above 0"
        raise ValueError(f"{variable} must be a number of seconds {lowest}, not {text!r}")
    return value


def size(env: Mapping[str, str], variable: str) -> int:
    """A size such as ``1073741824``, ``512MiB`` or ``2 GiB``, at least 1 MiB; 0 when unset."""
    text = env.get(variable, "").strip()
    if not text:
        return 0
    number = text.rstrip("KMGTiBb ")
    unit = text[len(number) :].strip().upper()
    try:
        value = float(number) * _UNITS[unit]
    except (ValueError, KeyError):
        value = 0
    if value < 2**20:
        raise ValueError(
            f"{variable} must be a size of at least 1 MiB, in bytes or with MiB or GiB "
            f"(for example 2GiB), not {text!r}"
        )
    return int(value)


def url(env: Mapping[str, str], variable: str, schemes: tuple[str, ...]) -> str:
    """The variable's URL, checked (one-line ``ValueError``), or "" when it is unset."""
    text = env.get(variable, "")
    if not text:
        return ""
    scheme = text.split("://", 1)[0]
    # A file:// or sqlite:/// URL names a path, not a host; a PostgreSQL URL may leave the host
    # to libpq (a Unix socket, ``?host=`` or PGHOST).
    pathlike = ("file", "sqlite", "postgresql", "postgres")
    return check_url(variable, text, schemes, host=scheme not in pathlike)


def redacted_repr(settings: Any) -> str:
    """A settings dataclass's repr in which every ``URL`` field has its secrets redacted."""
    shown = []
    for item in dataclasses.fields(settings):
        value = getattr(settings, item.name)
        if item.metadata.get("url") and isinstance(value, str):
            value = redact_url(value)
        shown.append(f"{item.name}={value!r}")
    return f"{type(settings).__name__}({', '.join(shown)})"


def data_dir(env: Mapping[str, str], override: object = None) -> Path:
    """Where a process keeps its data, absolute: ``override`` (a CLI flag), else
    ``MLGATE_DATA_DIR``, else ``$XDG_DATA_HOME/mlgate`` (``~/.local/share/mlgate``)."""
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    chosen = override or env.get("MLGATE_DATA_DIR") or Path(base) / "mlgate"
    return Path(str(chosen)).expanduser().absolute()


def storage_url(env: Mapping[str, str], data: Path) -> str:
    """The object store: ``MLGATE_STORAGE_URL`` (checked), else the data directory's storage."""
    return url(env, "MLGATE_STORAGE_URL", ("file", "s3")) or (data / "storage").as_uri()


def optional_port(env: Mapping[str, str], variable: str) -> int | None:
    """A port the variable names, or None when it is unset (the endpoint is off)."""
    return port(variable, env[variable]) if env.get(variable) else None
