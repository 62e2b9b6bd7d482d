"""URLs of the services mlgate talks to: checked once at start, redacted wherever they are shown.

A URL may carry secrets in its user-info (``amqp://user:password@host``) and in its query
(``redis://host/0?password=…``, a signed S3 endpoint's ``X-Amz-Signature=…``); an unescaped ``#``
in a password silently moves the rest of it into the fragment. ``redact_url`` hides all three,
and ``check_url`` refuses a malformed URL with one line naming the variable, never its text.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

__all__ = ["check_url", "redact_url"]

_HIDDEN = "***"
# Query parameters whose values are secrets (password, pwd, token, secret, api_key, signature…).
_SECRET_PARAM = re.compile(r"pass|pwd|secret|token|key|auth|cred|sig", re.I)
_ESCAPE_HINT = "percent-encode reserved characters in it (# as %23, / as %2F, @ as %40, : as %3A)"


def redact_url(url: str) -> str:
    """The URL with its password, secret-looking query values and any fragment replaced by
    ``***``, for logs, reprs and messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user, has_password, _ = userinfo.partition(":")
        netloc = f"{user}:{_HIDDEN}@{host}" if has_password else f"{user}@{host}"
    elif not _port_ok(netloc):
        # "user:pa#ss@host" splits as netloc "user:pa": what looks like a port is a password,
        # and what follows it may be the rest of one.
        return f"{parts.scheme}://{_HIDDEN}"
    query = urlencode(
        [
            (name, _HIDDEN if _SECRET_PARAM.search(name) else value)
            for name, value in parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*",
    )
    fragment = _HIDDEN if parts.fragment else ""
    if not netloc and url.startswith(f"{parts.scheme}://"):
        # An empty authority, as written: urlunsplit would drop it for a scheme it does not know
        # to have one (sqlite:///var/lib/jobs.db read back as sqlite:/var/lib/jobs.db).
        tail = (f"?{query}" if query else "") + (f"#{fragment}" if fragment else "")
        return f"{parts.scheme}://{parts.path}{tail}"
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def _port_ok(netloc: str) -> bool:
    host_port = netloc.rsplit("]", 1)[-1]
    return ":" not in host_port or host_port.rsplit(":", 1)[1].isdigit()


def check_url(variable: str, url: str, schemes: tuple[str, ...], *, host: bool = True) -> str:
    """``url`` if it is well formed with one of ``schemes``; otherwise ``ValueError`` in one line
    that names ``variable`` and says what to fix, without repeating any of the URL."""
    allowed = " or ".join(f"{s}://" for s in schemes)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError(f"{variable} is not a valid URL; {_ESCAPE_HINT}") from None
    if parts.scheme not in schemes or not url.startswith(f"{parts.scheme}://"):
        raise ValueError(f"{variable} must be a URL starting with {allowed}")
    if "#" in url:
        raise ValueError(
            f"{variable} contains a '#', which ends a URL early; "
            "if it is part of a password, write it as %23"
        )
    try:
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError:
        raise ValueError(f"{variable} has a port that is not a number; {_ESCAPE_HINT}") from None
    if host and not parts.hostname:
        raise ValueError(f"{variable} names no host; it looks like {schemes[0]}://host:port/…")
    return url
