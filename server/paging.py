"""Page sizes, page tokens and in-memory pagination for the list RPCs.

A page token is an opaque keyset cursor: the last item's (creation time in ns, id). Tokens come
back from clients, so one is checked in full here before any store sees it: a forged token is an
INVALID_ARGUMENT, never a number too large for SQLite or a huge string to parse.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from typing import TypeVar

from mlgate.errors import InvalidField

__all__ = [
    "DEFAULT_PAGE_SIZE",
    "MAX_PAGE_SIZE",
    "decode_page_token",
    "encode_page_token",
    "page_size",
    "paginate",
]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000
# Far above any token this server issues (about 80 characters), far below anything costly.
_MAX_TOKEN_CHARS = 256
_MAX_ID_CHARS = 128
_MAX_NS = 2**63 - 1

T = TypeVar("T")


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidField("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_page_token(create_ns: int, item_id: str) -> str:
    raw = json.dumps([create_ns, item_id]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_page_token(token: str) -> tuple[int, str]:
    """The cursor a token this server issued holds; raises InvalidField for anything else."""
    forged = InvalidField(
        "page_token", "is not a token this server issued; send the next_page_token of a reply"
    )
    if len(token) > _MAX_TOKEN_CHARS:
        raise forged
    try:
        padded = token + "=" * (-len(token) % 4)
        cursor = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, binascii.Error):  # UnicodeError and JSONDecodeError are ValueErrors
        raise forged from None
    match cursor:
        case [int() as create_ns, str() as item_id] if (
            0 <= create_ns <= _MAX_NS and 0 < len(item_id) <= _MAX_ID_CHARS
        ):
            return create_ns, item_id
    raise forged


def paginate(
    items: Sequence[T], key: Callable[[T], tuple[int, str]], requested: int, token: str
) -> tuple[list[T], str]:
    """A page of ``items`` (sorted by ``key`` descending) after the token's position."""
    size = page_size(requested)
    start = 0
    if token:
        cursor = decode_page_token(token)
        start = next((i for i, item in enumerate(items) if key(item) < cursor), len(items))
    page = list(items[start : start + size])
    more = start + size < len(items)
    return page, encode_page_token(*key(page[-1])) if more and page else ""
