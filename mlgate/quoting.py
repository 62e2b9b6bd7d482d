"""Bounded quoting of user input and stored names in error messages.

A status message travels in a gRPC header that clients refuse past 16 KB, and a person reads it:
a message quotes a short prefix of a value and the first few names of a list, and says how much
it left out. (The gateway also caps whole messages, as a last resort.)
"""

from __future__ import annotations

import json
from collections.abc import Iterable

__all__ = ["MAX_NAMES", "MAX_QUOTE", "listing", "quote", "quote_value", "shorten"]

MAX_QUOTE = 60
MAX_NAMES = 8


def shorten(text: str, limit: int = MAX_QUOTE) -> str:
    """``text``, or its first ``limit`` characters and how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


def quote(value: object, limit: int = MAX_QUOTE) -> str:
    """The value's repr, shortened: for values a person sent, which may be of any size."""
    return shorten(repr(value), limit)


def quote_value(value: object, limit: int = MAX_QUOTE) -> str:
    """A value a request sent as JSON, in JSON's words where Python's differ (``null``, ``true``,
    ``[1, null]``); strings and numbers as ``quote`` shows them."""
    if value is None or isinstance(value, bool | list | dict):
        try:
            return shorten(json.dumps(value), limit)
        except (TypeError, ValueError):
            pass  # not JSON after all
    return quote(value, limit)


def listing(names: Iterable[object], limit: int = MAX_NAMES) -> str:
    """The first ``limit`` names, comma-separated, each shortened, then how many more there are."""
    items = list(names)
    shown = ", ".join(shorten(str(name)) for name in items[:limit])
    if len(items) > limit:
        shown += f", … and {len(items) - limit} more"
    return shown
