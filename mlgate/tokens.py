"""Bearer tokens and their roles: the tokens file both the gateway and ``mlgate token`` speak.

The file (``MLGATE_AUTH_TOKENS_FILE``) has one line per token and holds no secret::

    # <sha256 hex of the token> <role>[+all] [name]
    9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08 predict alice
    60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752 read+all auditor

Roles, each including the ones before it: ``read``, ``predict``, ``train``, ``admin``. A job
records the name of the token that submitted it; callers see other callers' job inputs and
results only with ``+all`` (or as ``admin``). Without a name, a token is called ``token-`` and the
first 8 hex digits of its hash. Blank lines and ``#`` comments are ignored; several lines may share
a name (a token being rotated), never a hash.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Caller", "Role", "TokenFile", "digest", "new_token", "parse_tokens", "tokens_line"]

log = logging.getLogger(__name__)

_HEX = re.compile(r"[0-9a-f]{64}")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")
_ALL = "+all"
TOKEN_PREFIX = "mlg_"


class Role(enum.IntEnum):
    """What a token may do; each role includes the ones before it."""

    READ = 1
    PREDICT = 2
    TRAIN = 3
    ADMIN = 4

    def __str__(self) -> str:
        return self.name.lower()

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(
                f"unknown role {name!r}; roles are {', '.join(str(r) for r in cls)}"
            ) from None


@dataclass(frozen=True)
class Caller:
    """Who a known token belongs to, and what it may do."""

    name: str
    role: Role
    #: Sees every caller's job inputs and results, not only its own (``+all``, or admin).
    sees_all_jobs: bool = False

    def may(self, role: Role) -> bool:
        return self.role >= role


@dataclass(frozen=True)
class _Entry:
    digest: bytes
    caller: Caller


def digest(token: str) -> str:
    """The sha256 hex of a token: what the tokens file holds in its place."""
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    """A fresh random token (256 bits)."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def tokens_line(token: str, role: Role, name: str, *, sees_all_jobs: bool = False) -> str:
    """The tokens-file line for ``token``."""
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"token name {name!r}: use up to 64 letters, digits and _ . @ - (no spaces)"
        )
    return f"{digest(token)} {role}{_ALL if sees_all_jobs else ''} {name}"


def parse_tokens(text: str) -> tuple[_Entry, ...]:
    """The entries of a tokens file; ``ValueError`` naming the line of the first bad one."""
    entries: list[_Entry] = []
    seen: set[str] = set()
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        where = f"line {number}"
        if len(fields) not in (2, 3):
            raise ValueError(f"{where}: expected '<sha256 hex> <role> [name]'")
        hashed, role_text = fields[0].lower(), fields[1]
        if not _HEX.fullmatch(hashed):
            raise ValueError(f"{where}: the first field must be a token's sha256 (64 hex digits)")
        if hashed in seen:
            raise ValueError(f"{where}: the same token hash appears twice")
        seen.add(hashed)
        sees_all = role_text.endswith(_ALL)
        try:
            role = Role.named(role_text.removesuffix(_ALL))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        name = fields[2] if len(fields) == 3 else f"token-{hashed[:8]}"
        if not _NAME.fullmatch(name):
            raise ValueError(f"{where}: names are letters, digits and _ . @ - (up to 64)")
        caller = Caller(name, role, sees_all or role is Role.ADMIN)
        entries.append(_Entry(hashed.encode(), caller))
    return tuple(entries)


class TokenFile:
    """The tokens file, read again whenever it changes (checked by one ``stat`` per lookup).

    A file that becomes unreadable or malformed keeps the previous tokens in force, with an
    error in the log: a typo never opens the gateway.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._stamp: tuple[int, int, int] | None = None
        # The version of the file last refused, so that it is read (and reported) once.
        self._refused: tuple[int, int, int] | None = None
        self._entries: tuple[_Entry, ...] = ()
        self._load(first=True)

    def __len__(self) -> int:
        return len(self._entries)

    def _load(self, first: bool = False) -> None:
        try:
            info = self.path.stat()
        except OSError as exc:
            self._refuse((0, 0, 0), exc.strerror or "cannot read it", first)
            return
        stamp = (info.st_mtime_ns, info.st_size, info.st_ino)
        if stamp in (self._stamp, self._refused):
            return
        try:
            entries = parse_tokens(self.path.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            self._refuse(stamp, getattr(exc, "strerror", None) or "cannot read it", first)
            return
        except ValueError as exc:
            self._refuse(stamp, str(exc), first)
            return
        self._stamp, self._refused, self._entries = stamp, None, entries
        if not first:
            log.info("tokens file %s reloaded: %d tokens", self.path, len(entries))

    def _refuse(self, stamp: tuple[int, int, int], reason: str, first: bool) -> None:
        message = f"MLGATE_AUTH_TOKENS_FILE: cannot use {self.path}: {reason}"
        if first:
            raise ValueError(message)
        if stamp != self._refused:
            log.error("%s; the previous tokens stay in force", message)
            self._refused = stamp

    def lookup(self, token: str) -> Caller | None:
        """The caller a token belongs to, or None. Every entry is compared, in constant time,
        so how long it takes says nothing about which entry, if any, matched."""
        self._load()
        wanted = digest(token).encode()
        found: Caller | None = None
        for entry in self._entries:
            if hmac.compare_digest(entry.digest, wanted):
                found = entry.caller
        return found
