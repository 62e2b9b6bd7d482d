"""Page sizes and in-memory pagination for the list RPCs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from mlgate.errors import InvalidArgument
from server.jobstore.base import decode_page_token, encode_page_token

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "page_size", "paginate"]

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

T = TypeVar("T")


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


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
